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
  errors, timeouts and 5xx answers (any other answer is final): the POST
  and its retries are in :mod:`~doctor_ext.notifier.post`;
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
import threading
import time

from oslo_config import cfg
from oslo_log import log

from doctor_ext.notifier import egress
from doctor_ext.notifier import lanes as lanes_mod
from doctor_ext.notifier import masking
from doctor_ext.notifier import models
from doctor_ext.notifier import post
from doctor_ext.notifier import targets as targets_mod

LOG = log.getLogger(__name__)

GROUP = 'doctor_notifier'

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
    return (post.OPTS + lanes_mod.OPTS + egress.OPTS + targets_mod.OPTS)


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
        self.conf = conf
        self.egress = egress.EgressPolicy(conf)
        self._targets = targets_mod.Targets(conf, aodh_conf,
                                            check=self._refused_host)
        self._lanes = lanes_mod.Lanes(conf, self._deliver, self._dropped)
        self._lock = threading.Lock()
        self._pending = set()
        self._refusals = collections.OrderedDict()
        self.counters = collections.Counter()
        self._stopped = threading.Event()
        self.poster = post.Poster(conf, self.egress, self._stopped)

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
                delivery = self.poster.post(notification, target, pool)
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
