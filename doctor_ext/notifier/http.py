"""Delivery of alarm notifications to consumers by HTTP POST.

Consumers (VNF managers) receive exactly what Aodh's REST notifier posts:
a JSON body ``{"alarm_name", "alarm_id", "severity", "previous", "current",
"reason", "reason_data"}`` with the headers ``content-type:
application/json`` and ``x-openstack-request-id: req-<uuid>``. Unlike Aodh's
notifier (a new ``requests`` session per POST, no timeout, no backoff), this
one is built for the fault-management hot path and for action URLs chosen
by tenants:

* keep-alive connections (:mod:`~doctor_ext.notifier.client`), connect and
  read timeouts, no redirect followed;
* bounded retries with exponential backoff and jitter for connection
  errors, timeouts and 5xx answers (any other answer is final);
* the egress policy (:mod:`~doctor_ext.notifier.egress`): no POST to
  loopback, link-local or the agent's own endpoints unless allowed;
* bounded, fair lanes (:mod:`~doctor_ext.notifier.lanes`): a capped pool
  of delivery threads, per-consumer and per-project queue bounds;
* action URLs of other schemes handed to Aodh's notifier plugins
  (:mod:`~doctor_ext.notifier.targets`).

:meth:`HttpNotifier.submit` never raises: the returned future resolves to
a :class:`Delivery`, failed (with an error naming the masked URL) when the
URL is bad, refused, dropped at a queue bound or not delivered after its
retries. Credentials never reach the logs: see :func:`mask_url`.
"""

import collections
import concurrent.futures
import http.client
import ssl
import threading
import time
import uuid

from oslo_config import cfg
from oslo_log import log

from doctor_ext.notifier import client
from doctor_ext.notifier import egress
from doctor_ext.notifier import lanes as lanes_mod
from doctor_ext.notifier import masking
from doctor_ext.notifier import models
from doctor_ext.notifier import targets as targets_mod
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
# (alarm, action URL) pairs whose refusal by the egress policy was logged
# at ERROR; later refusals of the same action are logged at DEBUG.
MAX_REFUSALS_REMEMBERED = 10000

# The notifier's public names, from the modules that define them.
Notification = models.Notification
Delivery = models.Delivery
mask_url = masking.mask_url
load_aodh_conf = targets_mod.load_aodh_conf
SSL_VERIFY_PARAM = targets_mod.SSL_VERIFY_PARAM


def list_opts():
    """Every option of the notifier (group ``doctor_notifier``)."""
    return (OPTS + lanes_mod.OPTS + egress.OPTS + targets_mod.OPTS)


def register_opts(conf):
    """Register the notifier's options in ``conf`` (idempotent)."""
    conf.register_opts(list_opts(), group=GROUP)


class HttpNotifier:
    """Deliver :class:`Notification` objects to their action URLs.

    ``conf``: an oslo.config ``ConfigOpts`` (the notifier's options are
    registered in it, group ``doctor_notifier``; the egress policy also
    reads the agent's own endpoints from it); None for the defaults.
    ``aodh_conf``: Aodh's ``ConfigOpts``, needed only for action URLs that
    are delegated to Aodh's notifier plugins (schemes other than http and
    https); by default read from ``aodh_config_file`` on first use.

    ``counters``: deliveries by outcome (delivered, failed, refused,
    dropped) since the notifier started.
    """

    def __init__(self, conf=None, aodh_conf=None):
        if conf is None:
            conf = cfg.ConfigOpts()
            conf([], default_config_files=[], default_config_dirs=[])
        register_opts(conf)
        opts = conf[GROUP]
        self.conf = conf
        self._connect_timeout = opts.connect_timeout
        self._read_timeout = opts.read_timeout
        self._max_retries = opts.max_retries
        self._backoff = opts.retry_backoff
        self._backoff_max = opts.retry_backoff_max
        self.egress = egress.EgressPolicy(conf)
        self._targets = targets_mod.Targets(conf, aodh_conf,
                                            check=self._refused_host)
        self._lanes = lanes_mod.Lanes(conf, self._deliver, self._dropped)
        self._lock = threading.Lock()
        self._pending = set()
        self._refusals = collections.OrderedDict()
        self.counters = collections.Counter()
        self._stopped = threading.Event()

    @property
    def aodh_conf(self):
        return self._targets.aodh_conf

    # -- public API --------------------------------------------------------

    def submit(self, notification):
        """Queue ``notification``; return a Future of its :class:`Delivery`.

        Never raises: a bad or refused action URL, or a stopped notifier,
        resolves the future at once to a failed Delivery whose error
        names the URL.
        """
        future = concurrent.futures.Future()
        submitted_at = time.monotonic()
        url = getattr(notification, 'action', None)
        alarm_id = getattr(notification, 'alarm_id', None)
        if self._stopped.is_set():
            return self._failed(future, alarm_id, mask_url(url),
                                'the notifier is stopped', submitted_at)
        try:
            target = self._targets.get(url)
        except targets_mod.BadTarget as exc:
            return self._failed(future, alarm_id, mask_url(url), str(exc),
                                submitted_at)
        if target.refused is not None:
            return self._failed(future, alarm_id, target.masked,
                                'cannot notify %r: %s' % (
                                    target.masked, target.refused),
                                submitted_at, models.REFUSED)
        item = (notification, future, target, submitted_at)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        project = getattr(notification, 'project_id', None)
        if not self._lanes.put(project, target.consumer, item):
            self._fail(item, 'the notifier is stopped')
        return future

    def flush(self, timeout=None):
        """Wait until everything submitted so far is delivered or failed.

        Returns True if it all finished within ``timeout`` seconds.
        """
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return True
        _done, not_done = concurrent.futures.wait(pending, timeout)
        return not not_done

    def stats(self):
        """Counters and the lanes' current size (threads, consumers...)."""
        stats = dict(self._lanes.stats())
        with self._lock:
            stats.update(self.counters)
        return stats

    def stop(self, timeout=5.0):
        """Stop delivering; call :meth:`flush` first to drain the queues.

        Queued notifications and retries waiting for their backoff fail at
        once; POSTs in flight are cut (their sockets are shut down); later
        submits fail. Waits up to ``timeout`` seconds for the threads.
        """
        self._stopped.set()
        for item in self._lanes.stop():
            self._fail(item, 'the notifier stopped before delivering to %s'
                       % item[2].masked)
        self._lanes.join(time.monotonic() + (timeout or 0.0))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # -- outcomes ----------------------------------------------------------

    def _refused_host(self, host):
        ip = egress.literal(host)
        return None if ip is None else self.egress.refusal(host, ip)

    def _done(self, future):
        with self._lock:
            self._pending.discard(future)

    def _failed(self, future, alarm_id, masked, error, submitted_at,
                outcome=None):
        future.set_running_or_notify_cancel()
        delivery = Delivery(False, error=error, url=masked, alarm_id=alarm_id,
                            submitted_at=submitted_at, outcome=outcome)
        self._resolve(future, delivery)
        return future

    def _fail(self, item, error, outcome=None):
        notification, future, target, submitted_at = item
        if not future.set_running_or_notify_cancel():
            return
        self._resolve(future, Delivery(
            False, error=error, url=target.masked,
            alarm_id=notification.alarm_id, submitted_at=submitted_at,
            outcome=outcome))

    def _dropped(self, item, reason):
        self._fail(item, 'cannot notify %r: %s' % (item[2].masked, reason),
                   models.DROPPED)

    def _resolve(self, future, delivery):
        with self._lock:
            self.counters[delivery.outcome] += 1
            count = self.counters[delivery.outcome]
        future.set_result(delivery)
        self._log(delivery, count)

    def _log(self, delivery, count):
        if delivery.ok:
            if delivery.attempts > 1:
                LOG.info('Notified alarm %(alarm_id)s at %(url)s after '
                         '%(attempts)d attempts (%(ms).1f ms)',
                         self._log_args(delivery))
            elif LOG.isEnabledFor(log.DEBUG):
                LOG.debug('Notified alarm %(alarm_id)s at %(url)s: '
                          '%(status)s (%(ms).1f ms)', self._log_args(delivery))
        elif delivery.outcome == models.REFUSED:
            if self._first_refusal(delivery.alarm_id, delivery.url):
                LOG.error('Cannot notify alarm %(alarm_id)s: %(error)s '
                          '(logged once per alarm and URL)',
                          self._log_args(delivery))
            else:
                LOG.debug('Cannot notify alarm %(alarm_id)s: %(error)s',
                          self._log_args(delivery))
        elif delivery.outcome == models.DROPPED:
            args = self._log_args(delivery)
            args['count'] = count
            LOG.error('Cannot notify alarm %(alarm_id)s: %(error)s '
                      '(%(count)d dropped since start)', args)
        elif delivery.attempts:
            LOG.error('Failed to notify alarm %(alarm_id)s at %(url)s after '
                      '%(attempts)d attempt(s) (%(ms).1f ms): %(error)s',
                      self._log_args(delivery))
        else:
            LOG.error('Cannot notify alarm %(alarm_id)s: %(error)s',
                      self._log_args(delivery))

    def _first_refusal(self, alarm_id, url):
        key = (alarm_id, url)
        with self._lock:
            if key in self._refusals:
                return False
            self._refusals[key] = True
            if len(self._refusals) > MAX_REFUSALS_REMEMBERED:
                self._refusals.popitem(last=False)
            return True

    @staticmethod
    def _log_args(delivery):
        return {'alarm_id': delivery.alarm_id, 'url': delivery.url,
                'attempts': delivery.attempts, 'status': delivery.status,
                'error': delivery.error,
                'ms': (delivery.finished_at - delivery.submitted_at) * 1000}

    # -- delivery (in a delivery thread of the lanes) ------------------------

    def _deliver(self, item, pool):
        """Deliver one item; a callable that resolves its future."""
        notification, future, target, submitted_at = item
        if not future.set_running_or_notify_cancel():
            return None
        try:
            if target.plugin is not None:
                delivery = self._call_plugin(notification, target)
            else:
                delivery = self._post(notification, target, pool)
        except Exception as exc:
            LOG.exception('Unexpected error notifying alarm %(alarm_id)s at '
                          '%(url)s', {'alarm_id': notification.alarm_id,
                                      'url': target.masked})
            delivery = Delivery(False, error='cannot notify %r: %s'
                                % (target.masked, models.describe(exc)),
                                url=target.masked,
                                alarm_id=notification.alarm_id)
        delivery.submitted_at = submitted_at
        return lambda: self._resolve(future, delivery)

    def _call_plugin(self, notification, target):
        n = notification
        sent_at = time.monotonic()
        try:
            target.plugin.notify(target.action, n.alarm_id, n.alarm_name,
                                 n.severity, n.previous, n.current, n.reason,
                                 n.reason_data)
        except Exception as exc:
            return Delivery(False, attempts=1, sent_at=sent_at,
                            error='Aodh notifier plugin %r failed for %r: %s'
                            % (target.scheme, target.masked,
                               models.describe(exc)),
                            url=target.masked, alarm_id=n.alarm_id)
        return Delivery(True, attempts=1, sent_at=sent_at, url=target.masked,
                        alarm_id=n.alarm_id)

    def _post(self, notification, target, pool):
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
