"""Keeps the alarm index equal to Aodh's event alarms.

* At start, a background thread loads every enabled event alarm, retrying
  with capped backoff until the database answers (start-up never blocks on
  it, and says so in the log).
* Aodh's API emits ``alarm.creation``, ``alarm.rule_change``,
  ``alarm.state_transition`` and ``alarm.deletion`` notifications: a listener
  on the ``aodh`` exchange reloads the one alarm named, so a new or changed
  alarm counts within milliseconds (Aodh's own evaluator hides it for up to
  ``event_alarm_cache_ttl`` = 60 s).
* A periodic full resync catches anything missed (a notification lost while
  the listener reconnected, an alarm written to the database directly).
"""

import gc
import socket
import threading

from oslo_config import cfg
from oslo_log import log
import oslo_messaging

from doctor_ext import broker
from doctor_ext.evaluator import rules
from doctor_ext.evaluator import store as store_mod
from doctor_ext.evaluator import subscription

LOG = log.getLogger(__name__)

GROUP = 'doctor_evaluator'
OPTS = [
    cfg.FloatOpt('resync_interval', default=300.0, min=0,
                 help='Seconds between full reloads of the event alarms '
                      'from the Aodh database (0 disables them).'),
    cfg.FloatOpt('load_retry_max', default=10.0, min=0.1,
                 help='Longest wait, in seconds, between attempts to load '
                      'the alarms while the Aodh database is unreachable.'),
    cfg.BoolOpt('listen_alarm_changes', default=True,
                help='Follow alarm creation, change and deletion through '
                     'the notifications of aodh-api (needs '
                     '[oslo_messaging_notifications] driver = messagingv2 '
                     'in aodh.conf).'),
    cfg.StrOpt('aodh_exchange', default='aodh',
               help='Exchange on which aodh-api sends its notifications.'),
    cfg.StrOpt('aodh_topic', default='notifications',
               help='Topic on which aodh-api sends its notifications.'),
    cfg.BoolOpt('gc_freeze', default=True,
                help='After the first load of the alarms, move every '
                     'object of the process to the permanent generation '
                     '(gc.freeze()), so that a full garbage collection '
                     'does not walk the alarm index (a 100-180 ms pause on '
                     'one notification was seen without it).'),
    cfg.StrOpt('alarm_changes_pool',
               help='Only for a bus that is not RabbitMQ: the queue '
                    '(oslo.messaging pool) this process reads alarm '
                    'changes from; every agent process needs its own. On '
                    'RabbitMQ each process gets a queue of its own '
                    'automatically (doctor-ext-alarms.<host>.<pid>.<random>, '
                    'exclusive, deleted with the process), and this option '
                    'is ignored. Default: doctor-ext-alarms.<hostname>.'),
]

ALARM_EVENTS = ('alarm.creation', 'alarm.rule_change',
                'alarm.state_transition', 'alarm.deletion')


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def compile_all(rows):
    """Compile alarm rows, logging and skipping the ones that are invalid."""
    compiled = []
    for row in rows:
        try:
            compiled.append(rules.compile_alarm(row))
        except rules.InvalidAlarm as e:
            LOG.error('Ignoring alarm that cannot be evaluated: %s', e)
    return compiled


class _AlarmChangeEndpoint:
    filter_rule = oslo_messaging.NotificationFilter(
        event_type=r'^alarm\.(creation|rule_change|state_transition|'
                   r'deletion)$')

    def __init__(self, sync):
        self._sync = sync

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._sync.changed({'event_type': event_type, 'payload': payload})


class AlarmSync:
    def __init__(self, conf, index, store, transport=None):
        register_opts(conf)
        self._all_conf = conf
        self._conf = conf[GROUP]
        self._index = index
        self._store = store
        self._transport = transport
        self._listener = None
        self._stop = threading.Event()
        self.loaded = threading.Event()
        self._thread = None

    def start(self):
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run,
                                        name='doctor-alarm-sync', daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._listener is not None:
            try:
                self._listener.stop()
                self._listener.wait()
            except Exception:
                LOG.debug('Alarm change listener stopped with an error',
                          exc_info=True)

    def load_all(self):
        """Replace the index with the alarms in the database."""
        alarms = compile_all(self._store.event_alarms())
        self._index.replace_all(alarms)
        return len(alarms)

    def refresh(self, alarm_id, deleted=False):
        """Reload one alarm after aodh-api said it changed."""
        if deleted:
            self._index.remove(alarm_id)
            LOG.debug('Alarm %s deleted', alarm_id)
            return
        try:
            row = self._store.alarm(alarm_id)
        except store_mod.StoreUnavailable as e:
            LOG.warning('Alarm %s changed but cannot be reloaded, the next '
                        'resync will: %s', alarm_id, e)
            return
        if (row is None or not row.get('enabled') or
                row.get('type') != 'event'):
            self._index.remove(alarm_id)
            return
        try:
            self._index.add(rules.compile_alarm(row))
        except rules.InvalidAlarm as e:
            self._index.remove(alarm_id)
            LOG.error('Ignoring alarm that cannot be evaluated: %s', e)

    def _start_listener(self):
        if not self._conf.listen_alarm_changes or self._transport is None:
            return
        url = broker.agent_url(self._all_conf)
        if url is not None:
            self._listener = subscription.Subscription(
                url, self._conf.aodh_exchange,
                '%s.info' % self._conf.aodh_topic, self.changed,
                on_connect=self._reconnected, prefix='doctor-ext-alarms',
                durable=broker.rabbit_option(self._all_conf,
                                             'amqp_durable_queues', False),
                ssl=bool(broker.rabbit_option(self._all_conf, 'ssl')))
            self._listener.start()
            return
        pool = (self._conf.alarm_changes_pool or
                'doctor-ext-alarms.%s' % socket.gethostname())
        target = oslo_messaging.Target(topic=self._conf.aodh_topic,
                                       exchange=self._conf.aodh_exchange)
        self._listener = oslo_messaging.get_notification_listener(
            self._transport, [target], [_AlarmChangeEndpoint(self)],
            executor='threading', pool=pool)
        self._listener.start()
        LOG.info('Following Aodh alarm changes on exchange %s (queue %s)',
                 self._conf.aodh_exchange, pool)

    def changed(self, notification):
        """Reload the alarm an aodh-api notification names."""
        event_type = notification.get('event_type')
        if event_type not in ALARM_EVENTS:
            return
        payload = notification.get('payload')
        alarm_id = payload.get('alarm_id') if isinstance(payload,
                                                         dict) else None
        if not alarm_id:
            LOG.warning('Ignoring %s notification without alarm_id',
                        event_type)
            return
        self.refresh(alarm_id, deleted=event_type == 'alarm.deletion')

    def _reconnected(self):
        # Changes sent while this process had no queue are unknown: the
        # first connection follows the first load, later ones reload.
        self._connections = getattr(self, '_connections', 0) + 1
        if self._connections > 1:
            LOG.info('Reconnected to the bus: reloading every alarm')
            self.load_all()

    def _run(self):
        delay = 0.2
        while not self._stop.is_set():
            try:
                count = self.load_all()
            except store_mod.StoreUnavailable as e:
                LOG.warning('Cannot load event alarms yet, retrying in '
                            '%.1f s: %s', delay, e)
                self._stop.wait(delay)
                delay = min(delay * 2, self._conf.load_retry_max)
                continue
            LOG.info('Loaded %d event alarm(s) from Aodh', count)
            if self._conf.gc_freeze:
                gc.collect()
                gc.freeze()
            self.loaded.set()
            break
        try:
            self._start_listener()
        except Exception as e:
            LOG.error('Cannot follow Aodh alarm changes (alarms will only '
                      'be reloaded every %s s): %s',
                      self._conf.resync_interval, e)
        interval = self._conf.resync_interval
        while interval and not self._stop.wait(interval):
            try:
                self.load_all()
            except store_mod.StoreUnavailable as e:
                LOG.warning('Alarm resync failed, keeping the alarms in '
                            'memory: %s', e)
