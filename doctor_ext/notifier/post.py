"""One notification POSTed to its consumer, with its retries.

Over a kept keep-alive connection of the consumer (lent by the lanes'
pool) or a new one (:mod:`.client`), within the connect and read
timeouts; connection errors, timeouts and 5xx answers are retried after a
jittered exponential backoff (:func:`doctor_ext.retry.backoff`), any other
answer is final. The egress policy checks every address connected to.
"""

import http.client
import ssl
import time
import uuid

from oslo_config import cfg
from oslo_log import log

from doctor_ext.notifier import client
from doctor_ext.notifier import egress
from doctor_ext.notifier import models
from doctor_ext import retry as retry_mod

LOG = log.getLogger(__name__)

GROUP = 'doctor_notifier'

OPTS = [
    cfg.FloatOpt('connect_timeout', default=1.0, min=0.001,
                 help='Seconds to wait for a TCP (and TLS) connection to a '
                      'consumer.'),
    cfg.FloatOpt('read_timeout', default=5.0, min=0.001,
                 help='Seconds to wait for a consumer to answer a POST '
                      '(between any two bytes of the exchange).'),
    cfg.IntOpt('max_retries', default=3, min=0,
               help='Retries of one notification after a connection error, '
                    'a timeout or a 5xx answer. Any other answer is final '
                    '(a redirect too: it is never followed).'),
    cfg.FloatOpt('retry_backoff', default=0.1, min=0.0,
                 help='Delay before the first retry, in seconds; it doubles '
                      'with every further retry (with jitter: the actual '
                      'delay is drawn between half and all of it). The '
                      'notification keeps its delivery thread meanwhile.'),
    cfg.FloatOpt('retry_backoff_max', default=2.0, min=0.0,
                 help='Upper bound of the delay between two retries, in '
                      'seconds.'),
]

USER_AGENT = 'doctor-ext-notifier'
Delivery = models.Delivery


class Poster:
    """POSTs notifications (the options are registered by the notifier).

    ``stopped``: an Event set when the notifier stops (a retry waiting for
    its backoff then gives up at once).
    """

    def __init__(self, conf, egress_policy, stopped):
        opts = conf[GROUP]
        self._connect_timeout = opts.connect_timeout
        self._read_timeout = opts.read_timeout
        self._max_retries = opts.max_retries
        self._backoff = opts.retry_backoff
        self._backoff_max = opts.retry_backoff_max
        self.egress = egress_policy
        self._stopped = stopped

    def post(self, notification, target, pool):
        """POST ``notification`` to ``target``: its :class:`Delivery`."""
        body = notification.body()
        request_id = 'req-' + str(uuid.uuid4())
        head = ('POST %s HTTP/1.1\r\nHost: %s\r\n'
                'content-type: application/json\r\n'
                'content-length: %d\r\nx-openstack-request-id: %s\r\n'
                'user-agent: %s\r\n%s\r\n' % (
                    target.request_path, target.host_header, len(body),
                    request_id, USER_AGENT,
                    'authorization: %s\r\n' % target.auth
                    if target.auth else ''))
        data = head.encode('latin-1') + body
        sent_at = time.monotonic()
        attempts = 0
        status = None
        while True:
            attempts += 1
            retry = True
            try:
                status, reason = self._exchange(target, data, pool)
            except egress.EgressRefused as exc:
                return Delivery(False, None, attempts - 1,
                                error='cannot notify %r: %s' % (
                                    target.masked, exc),
                                sent_at=sent_at, url=target.masked,
                                alarm_id=notification.alarm_id,
                                request_id=request_id,
                                outcome=models.REFUSED)
            except ssl.SSLCertVerificationError as exc:
                error, retry = models.describe(exc), False
            except (OSError, http.client.HTTPException) as exc:
                if self._stopped.is_set():
                    error, retry = 'the notifier stopped', False
                else:
                    error = models.describe(exc)
            else:
                if 200 <= status < 300:
                    return Delivery(True, status, attempts, sent_at=sent_at,
                                    url=target.masked,
                                    alarm_id=notification.alarm_id,
                                    request_id=request_id)
                error = 'HTTP %d %s' % (status, reason)
                if 300 <= status < 400:
                    error += ' (redirects are not followed)'
                retry = status >= 500
            if not retry or attempts > self._max_retries:
                break
            delay = self._delay(attempts)
            LOG.warning('Notifying alarm %(alarm_id)s at %(url)s failed '
                        '(attempt %(attempt)d of %(total)d): %(error)s; '
                        'retrying in %(delay).3f s',
                        {'alarm_id': notification.alarm_id,
                         'url': target.masked, 'attempt': attempts,
                         'total': self._max_retries + 1, 'error': error,
                         'delay': delay})
            if self._stopped.wait(delay):
                error += '; then the notifier stopped'
                break
        return Delivery(False, status, attempts,
                        error='POST %s: %s' % (target.masked, error),
                        sent_at=sent_at, url=target.masked,
                        alarm_id=notification.alarm_id,
                        request_id=request_id)

    def _delay(self, retry):
        """Backoff before retry number ``retry`` (1, 2, ...), jittered."""
        return retry_mod.backoff(retry, self._backoff, self._backoff_max,
                                 jitter=True)

    def _exchange(self, target, data, pool):
        """One POST on a kept or new connection: (status, reason)."""
        context = target.ssl_context
        conn = pool.take(lambda c: c.ssl_context is context)
        if conn is None:
            conn = client.Connection(target.host, target.port, context,
                                     self._connect_timeout,
                                     self._read_timeout,
                                     resolve=self.egress.addresses)
            pool.lend(conn)
        try:
            if conn.sock is not None:
                try:
                    return self._request(conn, data)
                except client.STALE_ERRORS:
                    # The consumer closed the idle keep-alive connection:
                    # reconnect at once, once, without counting an attempt.
                    conn.close()
            return self._request(conn, data)
        finally:
            pool.give_back(conn)

    def _request(self, conn, data):
        try:
            if conn.sock is None:
                try:
                    conn.connect()
                except TimeoutError:
                    raise TimeoutError('no connection within connect_timeout '
                                       '(%s s)' % self._connect_timeout)
            try:
                return conn.exchange(data)
            except TimeoutError:
                raise TimeoutError('no answer within read_timeout (%s s)'
                                   % self._read_timeout)
        except BaseException:
            conn.close()
            raise
