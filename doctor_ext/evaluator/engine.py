"""The notification-driven evaluator: events in, alarms fired, owners told.

One :class:`Engine` per process, shared by the direct publisher and the
inspector hook (see :func:`get_engine`). For a batch of events it

1. looks up the candidate alarms in the index (:mod:`.index`) and keeps the
   ones whose conditions hold (:mod:`.rules`);
2. claims the transitions of non-repeating alarms in Aodh's database in one
   transaction (:mod:`.store`), so each fires once across agents;
3. hands one notification per alarm action to the notifier
   (:mod:`doctor_ext.notifier.http`), which delivers in the background;
4. queues history rows for Aodh (:mod:`.recorder`), off the hot path.

If the database is unreachable, evaluation goes on from the index: a
non-repeating alarm fires on this process's own view of its state, and the
claim is written when the database returns.
"""

import json
import threading
import time
import uuid

from oslo_config import cfg
from oslo_log import log
from oslo_utils import timeutils

from doctor_ext.evaluator import events as events_mod
from doctor_ext.evaluator import index as index_mod
from doctor_ext.evaluator import recorder as recorder_mod
from doctor_ext.evaluator import rules
from doctor_ext.evaluator import store as store_mod
from doctor_ext.evaluator import sync as sync_mod
from doctor_ext.notifier import http

LOG = log.getLogger(__name__)

GROUP = 'doctor_evaluator'
OPTS = [
    cfg.FloatOpt('startup_wait', default=10.0, min=0,
                 help='Seconds an event waits for the first load of the '
                      'alarms before it is refused (and, with '
                      '[notification] ack_on_event_error = False, '
                      'requeued).'),
    cfg.BoolOpt('timeline_log', default=False,
                help='Log one line per fired alarm with the time of each '
                     'step (received, parsed, evaluated, fired), for the '
                     'Doctor timeline.'),
    cfg.StrOpt('telemetry_secret_check', default='verify',
               choices=['verify', 'off'],
               help='Serialized events from the bus whose '
                    'message_signature does not verify against '
                    '[publisher] telemetry_secret are rejected ("verify") '
                    'when a secret is set.'),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class NotReady(Exception):
    """The alarms are not loaded yet; the event should be retried."""


class Firing:
    """One alarm fired by one event, with its deliveries."""

    __slots__ = ('alarm', 'event', 'previous', 'reason', 'deliveries',
                 'times')

    def __init__(self, alarm, event, previous, reason):
        self.alarm = alarm
        self.event = event
        self.previous = previous
        self.reason = reason
        self.deliveries = []
        self.times = {}


def reason_for(alarm, event):
    """Aodh's reason text, so that consumers parsing it keep working."""
    return ('Event <id=%(id)s,event_type=%(event_type)s> hits the '
            'query <query=%(query)s>.' % {
                'id': event.message_id, 'event_type': event.event_type,
                'query': json.dumps(alarm.query(), sort_keys=True)})


class Engine:
    def __init__(self, conf, index, store, notifier, recorder=None,
                 sync=None):
        register_opts(conf)
        self._conf = conf[GROUP]
        self.index = index
        self.store = store
        self.notifier = notifier
        self.recorder = recorder or recorder_mod.Recorder(store)
        self.sync = sync
        self._state_lock = threading.Lock()

    # -- readiness ---------------------------------------------------------
    def wait_ready(self, timeout=None):
        if self.sync is None:
            return True
        if timeout is None:
            timeout = self._conf.startup_wait
        return self.sync.loaded.wait(timeout)

    # -- evaluation --------------------------------------------------------
    def evaluate(self, events, received=None):
        """Evaluate parsed events; return the :class:`Firing` list.

        :raises NotReady: the alarms could not be loaded in time.
        """
        received = received or time.time()
        if not self.wait_ready():
            raise NotReady('event alarms not loaded from Aodh yet')
        parsed = time.time()
        once = {}       # alarm_id -> (alarm, event): non-repeating
        repeat = []     # (alarm, event)
        for event in events:
            for alarm in self.index.match(event):
                if alarm.repeat_actions:
                    repeat.append((alarm, event))
                elif (alarm.state != rules.ALARM and
                      alarm.alarm_id not in once):
                    once[alarm.alarm_id] = (alarm, event)
        evaluated = time.time()
        firings = self._claim(once)
        firings.extend(Firing(a, e, a.state, reason_for(a, e))
                       for a, e in repeat)
        now = timeutils.utcnow()
        # Build every notification first, then queue them all: delivery
        # threads started by the first ones would slow the building of the
        # rest.
        notes = [(f, self._notifications(f)) for f in firings]
        for firing, batch in notes:
            firing.deliveries = [self.notifier.submit(n) for n in batch]
        for firing in firings:
            self._record(firing, now)
            if not firing.alarm.repeat_actions:
                continue
            self.recorder.state(firing.alarm.alarm_id, firing.reason)
            firing.alarm.state = rules.ALARM
        fired = time.time()
        for firing in firings:
            firing.times.update(received=received, parsed=parsed,
                                evaluated=evaluated, fired=fired)
        if self._conf.timeline_log:
            for firing in firings:
                LOG.info('doctor-timeline alarm=%s event=%s received=%.6f '
                         'parsed=%.6f evaluated=%.6f fired=%.6f',
                         firing.alarm.alarm_id, firing.event.message_id,
                         received, parsed, evaluated, fired)
        return firings

    def _claim(self, once):
        if not once:
            return []
        reasons = {i: reason_for(a, e) for i, (a, e) in once.items()}
        try:
            won = self.store.claim(list(reasons.items()))
            deferred = False
        except store_mod.StoreUnavailable as e:
            LOG.warning('Aodh database unavailable, firing %d alarm(s) on '
                        'local state; their state is written when it '
                        'returns: %s', len(once), e)
            won = set(once)
            deferred = True
        firings = []
        with self._state_lock:
            for alarm_id, (alarm, event) in once.items():
                previous = alarm.state
                if alarm_id in won and previous != rules.ALARM:
                    firings.append(Firing(alarm, event, previous,
                                          reasons[alarm_id]))
                    if deferred:
                        self.recorder.deferred_claim(alarm_id,
                                                     reasons[alarm_id])
                alarm.state = rules.ALARM
        return firings

    @staticmethod
    def _notifications(firing):
        alarm, event = firing.alarm, firing.event
        reason_data = {'type': 'event', 'event': event.serialize()}
        return [http.Notification(
            action=action, alarm_id=alarm.alarm_id, alarm_name=alarm.name,
            severity=alarm.severity, previous=firing.previous,
            current=rules.ALARM, reason=firing.reason,
            reason_data=reason_data, project_id=alarm.project_id)
            for action in alarm.actions]

    def _record(self, firing, now):
        alarm = firing.alarm
        # The history row's id is fixed now, so that a retried write does
        # not add a second row.
        self.recorder.history({
            'event_id': str(uuid.uuid4()),
            'alarm_id': alarm.alarm_id, 'project_id': alarm.project_id,
            'severity': alarm.severity, 'reason': firing.reason,
            'timestamp': now})

    def evaluate_serialized(self, messages, secret=None):
        """Evaluate bus-format events; bad ones are logged and dropped."""
        from ceilometer.publisher import utils as pub_utils
        good = []
        for message in messages if isinstance(messages, list) else [
                messages]:
            if (secret and self._conf.telemetry_secret_check == 'verify' and
                    not pub_utils.verify_signature(message, secret)):
                LOG.error('Rejecting event %s: message_signature does not '
                          'verify against telemetry_secret',
                          _message_id(message))
                continue
            try:
                good.append(events_mod.from_serialized(message))
            except events_mod.InvalidEvent as e:
                LOG.error('Rejecting event %s: %s', _message_id(message), e)
        return self.evaluate(good)


def _message_id(message):
    if isinstance(message, dict):
        return str(message.get('message_id'))[:64]
    return '<not a mapping>'


_ENGINE = None
_ENGINE_LOCK = threading.Lock()


def get_engine(conf):
    """The process-wide engine, built and started on first use."""
    global _ENGINE
    if _ENGINE is not None:
        return _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = build_engine(conf)
    return _ENGINE


def build_engine(conf, transport=None):
    index = index_mod.AlarmIndex()
    store = store_mod.AodhStore(conf)
    if transport is None:
        try:
            from ceilometer import messaging
            transport = messaging.get_transport(conf)
        except Exception as e:
            LOG.error('No message bus for Aodh alarm changes: %s', e)
    sync = sync_mod.AlarmSync(conf, index, store, transport)
    engine = Engine(conf, index, store, http.HttpNotifier(conf),
                    sync=sync)
    sync.start()
    return engine


def reset_engine():
    """Forget the process-wide engine (tests)."""
    global _ENGINE
    with _ENGINE_LOCK:
        engine, _ENGINE = _ENGINE, None
    if engine is not None:
        if engine.sync is not None:
            engine.sync.stop()
        engine.recorder.stop()
        engine.notifier.stop()
