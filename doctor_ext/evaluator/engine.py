"""The notification-driven evaluator: events in, alarms fired, owners told.

One :class:`Engine` per process, shared by the direct publisher and the
inspector hook (see :func:`get_engine`). For a batch of events it

1. looks up the candidate alarms in the index (:mod:`.index`) and keeps the
   ones whose conditions hold (:mod:`.rules`);
2. claims the transitions of non-repeating alarms in Aodh's database, one
   transaction per ``CLAIM_CHUNK`` notifications, the projects in turn
   (:mod:`.store`), so each fires once across agents; the same transaction
   writes the notifications each claimed alarm owes to the outbox
   (:mod:`.outbox`), and those of the
   repeating alarms the events fire; events evaluated at the same time in
   other threads share that transaction (:mod:`.claims`);
3. hands each notification to the notifier
   (:mod:`doctor_ext.notifier.http`), which delivers in the background,
   chunk by chunk (the first owners of a large host are being notified
   while the rest is claimed); the outcome goes back to the outbox row;
4. queues history rows for Aodh (:mod:`.recorder`), off the hot path.

Delivery is at-least-once across agent crashes: a notification whose agent
died before its outcome was recorded is delivered by another agent, or by
the restarted one, once its lease runs out (:mod:`.outbox`). A redelivered
event finds its alarms claimed and owes nothing new.

If the database is unreachable, evaluation goes on from the index: a
non-repeating alarm fires on this process's own view of its state, and the
claim is written when the database returns; these notifications have no
outbox row (delivered from memory only). Once a claim has failed, later
events do not wait for the database (up to ``db_timeout`` each when it
hangs): they fire on local state until the recorder's next write succeeds.
"""

import collections
import datetime
import threading
import time

from oslo_config import cfg
from oslo_log import log
from oslo_utils import timeutils

from doctor_ext.db import api as db_api
from doctor_ext.db import leases
from doctor_ext.evaluator import claims as claims_mod
from doctor_ext.evaluator import firing as firing_mod
from doctor_ext.evaluator import index as index_mod
from doctor_ext.evaluator import outbox as outbox_mod
from doctor_ext.evaluator import recorder as recorder_mod
from doctor_ext.evaluator import rules
from doctor_ext.evaluator import store as store_mod
from doctor_ext.evaluator import sync as sync_mod
from doctor_ext.notifier import http

LOG = log.getLogger(__name__)

# (alarm_id, message_id) of the firings this process made, most recent
# last; a redelivered event does not fire them again here.
FIRED_MEMORY = 16384
# Notifications (outbox rows) claimed, and then submitted, per transaction
# when one evaluation fires many alarms (a host failure).
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


def _fair_chunks(once, repeating, size):
    """The claim chunks of one evaluation: ``[(once, repeating)]``.

    ``once``: ``{alarm_id: (alarm, event, state)}`` (non-repeating alarms to
    claim); ``repeating``: firings of repeating alarms. Each chunk owes at
    most ``size`` notifications (outbox rows), or is one alarm that owes
    more. Alarms are taken in the order of their project's running count
    of notifications (a weighted round robin): one alarm with 100 actions
    goes in for every 100 alarms of another project with one action each.
    So a tenant with thousands of action URLs on a failed host neither
    pushes another tenant's few alarms to later chunks nor makes them wait
    in a transaction with thousands of its own outbox rows.
    """
    owed = collections.Counter()     # project -> notifications so far
    entries = []
    items = [(alarm_id, value, value[0]) for alarm_id, value in once.items()]
    items += [(None, firing, firing.alarm) for firing in repeating]
    for n, (alarm_id, value, alarm) in enumerate(items):
        weight = max(1, len(alarm.actions))
        owed[alarm.project_id] += weight
        entries.append((owed[alarm.project_id], n, weight, alarm_id, value))
    entries.sort(key=lambda e: e[:2])
    chunks, rows = [], size
    for _, _, weight, alarm_id, value in entries:
        if rows + weight > size:
            chunks.append(({}, []))
            rows = 0
        rows += weight
        if alarm_id is None:
            chunks[-1][1].append(value)
        else:
            chunks[-1][0][alarm_id] = value
    return chunks


class NotReady(Exception):
    """The alarms are not loaded yet; the event should be retried."""


class Engine:
    def __init__(self, conf, index, store, notifier, recorder=None,
                 sync=None, sweeper=None):
        register_opts(conf)
        leases.register_opts(conf)
        self._conf = conf[GROUP]
        self.index = index
        self.store = store
        self._notifier = notifier
        self.recorder = recorder or recorder_mod.build(
            conf, db_api.background(store))
        # Aodh's [DEFAULT] record_history: False, no history rows.
        self.record_history = recorder_mod.history_enabled(conf)
        self.sync = sync
        self.claims = claims_mod.ClaimGroup()
        state = conf[leases.GROUP]
        self.owner = leases.agent_id()
        self._lease = datetime.timedelta(seconds=state.lease_time)
        self.outbox = outbox_mod.Outbox(db_api.background(store),
                                        self.recorder, notifier,
                                        self.owner, state.lease_time,
                                        state.retention_days)
        # Renews this process's outbox leases and takes over a dead
        # agent's (started by build_engine; tests sweep by hand).
        self.sweeper = sweeper or leases.Sweeper(conf)
        self._state_lock = threading.Lock()
        self._fired = {}
        # The recorder's write count when a claim failed: until it writes
        # again, claims do not wait for the database.
        self._db_down = None

    @property
    def notifier(self):
        return self._notifier

    @notifier.setter
    def notifier(self, notifier):
        self._notifier = self.outbox.notifier = notifier

    def start_sweeping(self):
        """Renew this process's outbox leases, take over expired ones."""
        self.sweeper.add('the outbox', self.outbox.sweep)
        self.sweeper.add('old outbox rows', self.outbox.purge, every=3600)

    # -- readiness ---------------------------------------------------------
    def wait_ready(self, timeout=None):
        if self.sync is None:
            return True
        if timeout is None:
            timeout = self._conf.startup_wait
        return self.sync.loaded.wait(timeout)

    # -- evaluation --------------------------------------------------------
    def evaluate(self, events, received=None):
        """Evaluate parsed events; return the :class:`.firing.Firing` list.

        :raises NotReady: the alarms could not be loaded in time.
        """
        received = received or time.time()
        if not self.wait_ready():
            raise NotReady('event alarms not loaded from Aodh yet')
        parsed = time.time()
        once = {}       # alarm_id -> (alarm, event, state): non-repeating
        repeat = []     # (alarm, event)
        for event in events:
            for alarm in self.index.match(event):
                if alarm.repeat_actions:
                    repeat.append((alarm, event))
                elif alarm.alarm_id in once:
                    continue
                elif alarm.state != rules.ALARM:
                    once[alarm.alarm_id] = (alarm, event, alarm.state)
        evaluated = time.time()
        firings = []
        # A large host is claimed in chunks, each notified as soon as it is
        # claimed: the first owners hear while the rest is being claimed.
        for chunk, repeating in _fair_chunks(once, self._repeat(repeat),
                                             CLAIM_CHUNK):
            firings.extend(self._fire(*self._claim(chunk, repeating)))
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

    def _fire(self, firings, owed):
        """Queue the notifications and the history rows of ``firings``.

        :param owed: firing -> [(notification, outbox row id or None)].
        """
        now = timeutils.utcnow()
        for firing in firings:
            firing.deliveries = [self.outbox.deliver(n, owed_id)
                                 for n, owed_id in owed[firing]]
        for firing in firings:
            if firing.alarm.repeat_actions:
                # Queued before the history row: written with or before it.
                self.recorder.state(firing.alarm.alarm_id, firing.reason)
                firing.alarm.state = rules.ALARM
            if not firing.recorded and self.record_history:
                # Not written with the claim (the database was down): the
                # recorder writes it when it is back.
                self.recorder.history(
                    firing_mod.history_change(firing, now))
        fired = time.time()
        for firing in firings:
            firing.times['fired'] = fired
        return firings

    def _owed(self, firing):
        """The notifications of ``firing`` with their outbox rows."""
        notes = firing_mod.notifications(firing)
        return [(n, outbox_mod.owed_row(n, firing.event.message_id, i))
                for i, n in enumerate(notes)]

    def _claim(self, once, repeating=()):
        """Claim ``once``; returns (firings, owed) of it and ``repeating``.

        ``repeating`` are firings of repeating alarms: they are not claimed,
        but their outbox rows are written in the same transaction.
        """
        if not once and not repeating:
            return [], {}
        candidates = [firing_mod.Firing(alarm, event, previous,
                                        firing_mod.reason_for(alarm, event))
                      for alarm, event, previous in once.values()]
        notes = {f: self._owed(f) for f in candidates + list(repeating)}
        owed_rows = [row for pairs in notes.values() for _, row in pairs]
        now = timeutils.utcnow()
        changes = ([firing_mod.history_change(f, now) for f in notes]
                   if self.record_history else [])
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
                won = self.claims.claim(
                    self._claim_with_lease,
                    [(f.alarm.alarm_id, f.reason) for f in candidates],
                    owed_rows, changes)
            except store_mod.StoreUnavailable as e:
                LOG.warning('Aodh database unavailable, firing %d alarm(s) '
                            'on local state (delivered from memory, no '
                            'outbox); their state is written when it '
                            'returns: %s', len(once) + len(repeating), e)
                won = set(once)
                deferred = True
                self._db_down = getattr(self.recorder, 'written', None)
        firings = []
        with self._state_lock:
            for firing in candidates:
                alarm = firing.alarm
                key = (alarm.alarm_id, firing.event.message_id)
                if deferred:
                    # No database to arbitrate: this process's own view
                    # (another thread of it may have fired the alarm).
                    fire = alarm.state != rules.ALARM
                else:
                    # The database said this call moved the alarm: fire,
                    # even if a thread that lost the same alarm meanwhile
                    # set the local state to alarm.
                    fire = alarm.alarm_id in won
                if fire and key not in self._fired:
                    firings.append(firing)
                    self._remember(key)
                    if deferred:
                        self.recorder.deferred_claim(alarm.alarm_id,
                                                     firing.reason)
                alarm.state = rules.ALARM
        for firing in repeating:
            # A repeating alarm fires for an event once, whichever agent
            # evaluates it: not again if its outbox rows were already there
            # (a redelivered event).
            ids = {row['id'] for _, row in notes[firing]}
            if deferred or not ids or ids & won:
                firings.append(firing)
        for firing in firings:
            firing.recorded = not deferred
        owed = {f: [(n, None if deferred else row['id'])
                    for n, row in notes[f]] for f in firings}
        return firings, owed

    def _claim_with_lease(self, transitions, owed, history):
        return self.store.claim(transitions, owed, lease=(
            self.owner, timeutils.utcnow() + self._lease), history=history)

    def _repeat(self, repeat):
        """Firings of repeating alarms, once per (alarm, event) here."""
        firings = []
        with self._state_lock:
            for alarm, event in repeat:
                key = (alarm.alarm_id, event.message_id)
                if key in self._fired:
                    continue
                self._remember(key)
                firings.append(firing_mod.Firing(
                    alarm, event, alarm.state,
                    firing_mod.reason_for(alarm, event)))
                # As Aodh: the next event of the batch has previous=alarm.
                alarm.state = rules.ALARM
        return firings

    def _remember(self, key):
        """Called with the state lock held."""
        fired = self._fired
        fired[key] = True
        if len(fired) > FIRED_MEMORY:
            del fired[next(iter(fired))]


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
    engine.start_sweeping()
    return engine


def reset_engine():
    """Forget the process-wide engine (tests)."""
    global _ENGINE
    with _ENGINE_LOCK:
        engine, _ENGINE = _ENGINE, None
    if engine is not None:
        if engine.sync is not None:
            engine.sync.stop()
        engine.sweeper.stop()
        engine.recorder.stop()
        engine.notifier.stop()
