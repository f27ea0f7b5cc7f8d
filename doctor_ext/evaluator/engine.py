"""The notification-driven evaluator: events in, alarms fired, owners told.

One :class:`Engine` per process, shared by the direct publisher and the
inspector hook (see :func:`get_engine`). For a batch of events it

1. looks up the candidate alarms in the index (:mod:`.index`) and keeps the
   ones whose conditions hold (:mod:`.rules`);
2. claims the transitions of non-repeating alarms in Aodh's database, one
   transaction per ``CLAIM_CHUNK`` alarms (:mod:`.store`), so each fires
   once across agents; events evaluated at the same time in other threads
   share that transaction (:mod:`.claims`);
3. hands one notification per alarm action to the notifier
   (:mod:`doctor_ext.notifier.http`), which delivers in the background,
   chunk by chunk: the first owners of a large host are being notified
   while the rest is claimed;
4. queues history rows for Aodh (:mod:`.recorder`), off the hot path.

If the database is unreachable, evaluation goes on from the index: a
non-repeating alarm fires on this process's own view of its state, and the
claim is written when the database returns. Once a claim has failed, later
events do not wait for the database (up to ``db_timeout`` each when it
hangs): they fire on local state until the recorder's next write succeeds.

At-least-once (``evaluate(..., at_least_once=True)``, used by the publishers
when ``[doctor_publisher] delivery_wait`` is set, so that a notification is
acknowledged only once its POSTs are done): when a notification is
redelivered because the agent that handled it died (or lost its broker
connection) before acknowledging it, a non-repeating alarm that the same
event already moved to ``alarm`` fires again, unless this process fired it
itself. The event's ``message_id`` is in the stored ``state_reason`` (Aodh's
reason text), so this costs no extra database round trip. The consumer may
then get the notification twice; the history row is written once (its id is
derived from the alarm and the event).
"""

import json
import threading
import time
import uuid

from oslo_config import cfg
from oslo_log import log
from oslo_utils import timeutils

from doctor_ext.evaluator import claims as claims_mod
from doctor_ext.evaluator import index as index_mod
from doctor_ext.evaluator import recorder as recorder_mod
from doctor_ext.evaluator import rules
from doctor_ext.evaluator import store as store_mod
from doctor_ext.evaluator import sync as sync_mod
from doctor_ext.notifier import http

LOG = log.getLogger(__name__)

# History row ids: derived from (alarm, event), so that an event handled
# twice (a redelivered notification) records one transition.
HISTORY_NAMESPACE = uuid.UUID('5c0f9a1e-6f3b-4d0e-9d8a-2b7c1e4f6a90')
# (alarm_id, message_id) of the firings this process made, most recent
# last; a redelivered event does not fire them again here.
FIRED_MEMORY = 16384
# Non-repeating alarms claimed (and then notified) per transaction when one
# evaluation fires many (a host failure).
CLAIM_CHUNK = 100

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
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class NotReady(Exception):
    """The alarms are not loaded yet; the event should be retried."""


class Firing:
    """One alarm fired by one event, with its deliveries."""

    __slots__ = ('alarm', 'event', 'previous', 'reason', 'deliveries',
                 'times', 'recorded')

    def __init__(self, alarm, event, previous, reason):
        self.alarm = alarm
        self.event = event
        self.previous = previous
        self.reason = reason
        self.deliveries = []
        self.times = {}
        # Future of the history row, while the database takes writes.
        self.recorded = None


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
        self.claims = claims_mod.ClaimGroup()
        self._state_lock = threading.Lock()
        self._fired = {}
        # The recorder's write count when a claim failed: until it writes
        # again, claims do not wait for the database.
        self._db_down = None

    # -- readiness ---------------------------------------------------------
    def wait_ready(self, timeout=None):
        if self.sync is None:
            return True
        if timeout is None:
            timeout = self._conf.startup_wait
        return self.sync.loaded.wait(timeout)

    # -- evaluation --------------------------------------------------------
    def evaluate(self, events, received=None, at_least_once=False):
        """Evaluate parsed events; return the :class:`Firing` list.

        :param at_least_once: a non-repeating alarm already moved to
            ``alarm`` by this very event (a redelivered notification) fires
            again unless this process fired it (see the module doc).
        :raises NotReady: the alarms could not be loaded in time.
        """
        received = received or time.time()
        if not self.wait_ready():
            raise NotReady('event alarms not loaded from Aodh yet')
        parsed = time.time()
        once = {}       # alarm_id -> (alarm, event, state): non-repeating
        refire = set()  # of once: claimed by this event, maybe not notified
        repeat = []     # (alarm, event)
        for event in events:
            for alarm in self.index.match(event):
                if alarm.repeat_actions:
                    repeat.append((alarm, event))
                elif alarm.alarm_id in once:
                    continue
                elif alarm.state != rules.ALARM:
                    once[alarm.alarm_id] = (alarm, event, alarm.state)
                elif (at_least_once and
                      alarm.claim_event == event.message_id and
                      (alarm.alarm_id, event.message_id) not in self._fired):
                    once[alarm.alarm_id] = (alarm, event, alarm.state)
                    refire.add(alarm.alarm_id)
        evaluated = time.time()
        firings = []
        refire = refire if at_least_once else set()
        # A large host is claimed in chunks, each notified as soon as it is
        # claimed: the first owners hear while the rest is being claimed.
        pending = list(once.items())
        for start in range(0, len(pending), CLAIM_CHUNK):
            chunk = dict(pending[start:start + CLAIM_CHUNK])
            firings.extend(self._fire(self._claim(
                chunk, refire.intersection(chunk))))
        if repeat:
            firings.extend(self._fire(self._repeat(repeat)))
        for firing in firings:
            firing.times.update(received=received, parsed=parsed,
                                evaluated=evaluated)
        if self._conf.timeline_log:
            for firing in firings:
                LOG.info('doctor-timeline alarm=%s event=%s received=%.6f '
                         'parsed=%.6f evaluated=%.6f fired=%.6f',
                         firing.alarm.alarm_id, firing.event.message_id,
                         received, parsed, evaluated, firing.times['fired'])
        return firings

    def _fire(self, firings):
        """Queue the notifications and the history rows of ``firings``."""
        now = timeutils.utcnow()
        # Build every notification first, then queue them all: delivery
        # threads started by the first ones would slow the building of the
        # rest.
        notes = [(f, self._notifications(f)) for f in firings]
        for firing, batch in notes:
            firing.deliveries = [self.notifier.submit(n) for n in batch]
        for firing in firings:
            if firing.alarm.repeat_actions:
                # Queued before the history row: written with or before it.
                self.recorder.state(firing.alarm.alarm_id, firing.reason)
                firing.alarm.state = rules.ALARM
            self._record(firing, now)
        fired = time.time()
        for firing in firings:
            firing.times['fired'] = fired
        return firings

    def _claim(self, once, refire=()):
        if not once:
            return []
        reasons = {i: reason_for(a, e) for i, (a, e, _) in once.items()}
        deferred = False
        down = self._db_down
        if down is not None and down == getattr(self.recorder, 'written',
                                                None):
            # A claim failed and the database has not taken a write since:
            # do not make this event wait for it.
            LOG.debug('Aodh database still unavailable, firing %d alarm(s) '
                      'on local state', len(once))
            won = set(once)
            deferred = True
        else:
            try:
                won = self.claims.claim(self.store.claim,
                                        list(reasons.items()), refire)
            except store_mod.StoreUnavailable as e:
                LOG.warning('Aodh database unavailable, firing %d alarm(s) '
                            'on local state; their state is written when it '
                            'returns: %s', len(once), e)
                won = set(once)
                deferred = True
                self._db_down = getattr(self.recorder, 'written', None)
        firings = []
        with self._state_lock:
            for alarm_id, (alarm, event, previous) in once.items():
                again = alarm_id in refire
                key = (alarm_id, event.message_id)
                if deferred:
                    # No database to arbitrate: this process's own view
                    # (another thread of it may have fired the alarm).
                    fire = alarm.state != rules.ALARM or again
                else:
                    # The database said this call moved the alarm: fire,
                    # even if a thread that lost the same alarm meanwhile
                    # set the local state to alarm.
                    fire = alarm_id in won
                if fire and key not in self._fired:
                    # A notification sent again has previous = alarm: the
                    # state the alarm was stored in.
                    firings.append(Firing(alarm, event, previous,
                                          reasons[alarm_id]))
                    self._remember(key)
                    if deferred and not again:
                        self.recorder.deferred_claim(alarm_id,
                                                     reasons[alarm_id])
                alarm.state = rules.ALARM
        return firings

    def _repeat(self, repeat):
        """Firings of repeating alarms, once per (alarm, event) here."""
        firings = []
        with self._state_lock:
            for alarm, event in repeat:
                key = (alarm.alarm_id, event.message_id)
                if key in self._fired:
                    continue
                self._remember(key)
                firings.append(Firing(alarm, event, alarm.state,
                                      reason_for(alarm, event)))
        return firings

    def _remember(self, key):
        """Called with the state lock held."""
        fired = self._fired
        fired[key] = True
        if len(fired) > FIRED_MEMORY:
            del fired[next(iter(fired))]

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
        # The history row's id is fixed now, and derived from the alarm and
        # the event, so that neither a retried write nor a redelivered event
        # adds a second row.
        healthy = getattr(self.recorder, 'healthy', False)
        recorded = self.recorder.history({
            'event_id': str(uuid.uuid5(HISTORY_NAMESPACE, '%s/%s' % (
                alarm.alarm_id, firing.event.message_id))),
            'alarm_id': alarm.alarm_id, 'project_id': alarm.project_id,
            'severity': alarm.severity, 'reason': firing.reason,
            'timestamp': now})
        if healthy:
            firing.recorded = recorded


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
