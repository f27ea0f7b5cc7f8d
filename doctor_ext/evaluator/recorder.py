"""Writes to Aodh that must land but must not hold up a notification.

History rows, the outcomes of owed notifications (:mod:`.outbox`), and the
state of alarms that fired while the database was unreachable, are queued
here and written in batches by one background thread. While writes follow
each other closely (a burst of faults), the thread starts one at most every
``linger`` seconds unless a full batch is queued, so that a burst costs a
few large transactions instead of many small ones; a write after a quiet
spell starts at once. A state write deferred by an outage is a claim like
any other: if another agent moved the alarm first, this one records
nothing more.

Bounds (each drop is logged and counted in :attr:`Recorder.dropped`):

* Memory. Deferred claims and the states of repeating alarms are kept one
  per alarm (a later one for the same alarm adds nothing), so at most the
  alarms this agent knows; they are never dropped, being the alarm's state
  in Aodh. History rows and delivery outcomes are kept up to
  ``recorder_max_pending`` each; at the bound the oldest is dropped
  (``full``).
* Retries. While the database is unavailable, a write is retried with a
  backoff capped at ``backoff_max`` seconds, for at most
  ``recorder_max_age`` seconds after it was queued: an older history row or
  outcome is dropped (``expired``). A dropped outcome leaves its outbox row
  pending: its lease runs out and the notification is delivered again.
* A row the database refuses (too long, malformed) is not retried: the
  batch is split until that row is alone, the other rows are written, and
  it is dropped with one ERROR line naming it (``refused``).

:meth:`Recorder.history` returns a future that is resolved once the row is
written (with everything queued before it), or fails if the row is
dropped, so that a caller may wait for it while the database answers.
"""

import collections
import concurrent.futures
import threading
import time

from oslo_config import cfg
from oslo_log import log

from doctor_ext.evaluator import store as store_mod
from doctor_ext.notifier import targets
from doctor_ext import retry as retry_mod

LOG = log.getLogger(__name__)

GROUP = 'doctor_evaluator'
OPTS = [
    cfg.IntOpt('recorder_max_pending', default=100000, min=1,
               help='History rows, and outcomes of owed notifications, '
                    'each kept at most this many in memory while Aodh\'s '
                    'database does not take them. At the bound the oldest '
                    'is dropped (logged and counted).'),
    cfg.FloatOpt('recorder_max_age', default=3600.0, min=1,
                 help='Seconds a history row or an outcome of an owed '
                      'notification is retried while Aodh\'s database is '
                      'unavailable; then it is dropped (logged and '
                      'counted). A dropped outcome\'s notification is '
                      'delivered again once its lease runs out.'),
]

# Why a write was dropped: the keys of Recorder.dropped.
FULL = 'full'
EXPIRED = 'expired'
REFUSED = 'refused'


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def history_enabled(conf):
    """Aodh's ``[DEFAULT] record_history``, as aodh.conf sets it.

    Read from ``[doctor_notifier] aodh_config_file``; Aodh's default (True)
    when that is unset or cannot be read.
    """
    targets.register_opts(conf)
    path = conf[targets.GROUP].aodh_config_file
    if not path:
        return True
    try:
        enabled = targets.load_aodh_conf(conf).record_history
    except Exception as e:
        LOG.error('Cannot read [DEFAULT] record_history from %s ([%s] '
                  'aodh_config_file); alarm history is recorded, as Aodh '
                  'does by default: %s', path, targets.GROUP, e)
        return True
    if not enabled:
        LOG.info('[DEFAULT] record_history is False in %s: no alarm '
                 'history rows are written', path)
    return bool(enabled)


class Dropped(Exception):
    """A queued write was dropped; the message says why."""


def build(conf, store):
    """The recorder of an agent, with the bounds of ``conf``."""
    register_opts(conf)
    opts = conf[GROUP]
    return Recorder(store, max_pending=opts.recorder_max_pending,
                    max_age=opts.recorder_max_age)


class Recorder:
    def __init__(self, store, batch=500, backoff=0.2, backoff_max=5.0,
                 linger=0.05, max_pending=100000, max_age=3600.0,
                 clock=time.monotonic):
        self._store = store
        self._batch = batch
        self._linger = linger
        self._last = 0.0
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._max_pending = max_pending
        self._max_age = max_age
        self._clock = clock
        # (queued at, change, future) and (queued at, owed id, outcome).
        self._history = collections.deque()
        self._outcomes = collections.deque()
        # alarm id -> reason, one per alarm.
        self._claims = collections.OrderedDict()
        self._states = collections.OrderedDict()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = None
        self._idle = threading.Event()
        self._idle.set()
        # False from a failed write until the next successful one.
        self.healthy = True
        # Batches written so far (the engine waits for the next one).
        self.written = 0
        # reason (FULL, EXPIRED, REFUSED) -> writes dropped.
        self.dropped = collections.Counter()
        # Drops not yet told in a WARNING, by reason.
        self._untold = collections.Counter()

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run,
                                            name='doctor-recorder',
                                            daemon=True)
            self._thread.start()

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def pending(self):
        return (len(self._history) + len(self._claims) + len(self._states) +
                len(self._outcomes))

    def history(self, change):
        """Queue a history row; returns a future resolved once written."""
        future = concurrent.futures.Future()
        self._put(self._history, (self._clock(), change, future))
        return future

    def deferred_claim(self, alarm_id, reason):
        self._put(self._claims, (alarm_id, reason))

    def state(self, alarm_id, reason):
        self._put(self._states, (alarm_id, reason))

    def outcome(self, owed_id, outcome):
        """Queue the (state, error) of the owed notification ``owed_id``."""
        self._put(self._outcomes, (self._clock(), owed_id, outcome))

    def _put(self, queue, item):
        with self._cond:
            if isinstance(queue, collections.OrderedDict):
                queue.setdefault(*item)
            else:
                if len(queue) >= self._max_pending:
                    self._drop(queue, queue.popleft(), FULL, Dropped(
                        'more than %d queued' % self._max_pending))
                queue.append(item)
            self._idle.clear()
            self._cond.notify()
        self.start()

    def wait_idle(self, timeout):
        """Wait until everything queued so far is written."""
        return self._idle.wait(timeout)

    @staticmethod
    def _take(queue, n):
        items = []
        while queue and len(items) < n:
            items.append(queue.popitem(last=False)
                         if isinstance(queue, collections.OrderedDict)
                         else queue.popleft())
        return items

    def _writes(self):
        """(queue, store call, name of an item) in the order written."""
        return [
            (self._claims, lambda items: self._store.claim(items),
             lambda i: 'deferred claim of alarm %s' % i[0]),
            (self._states, lambda items: self._store.set_state(items),
             lambda i: 'state of alarm %s' % i[0]),
            (self._history, lambda items: self._store.record_history(
                [c for _, c, _ in items]),
             lambda i: 'history row of alarm %s' % i[1].get('alarm_id')),
            (self._outcomes, lambda items: self._store.finish_outbox(
                [(i, o) for _, i, o in items]),
             lambda i: 'outcome of owed notification %s' % i[1]),
        ]

    def _run(self):
        failures = 0
        while True:
            with self._cond:
                while not self.pending and not self._stopped:
                    self._idle.set()
                    self._cond.wait()
                if self._stopped:
                    return
                # Writes back to back: let the next batch fill up a little.
                until = self._last + self._linger
                while (not self._stopped and self.pending < self._batch and
                       self._clock() < until):
                    self._cond.wait(until - self._clock())
                self._last = self._clock()
                batches = [(queue, write, name, self._take(queue, self._batch))
                           for queue, write, name in self._writes()]
            error = None
            for queue, write, name, items in batches:
                if error is None and items:
                    items, error = self._write(queue, write, name, items)
                if items:
                    # Not written: the database is unavailable.
                    self._requeue(queue, items)
            if error is None:
                failures = 0
                self.healthy = True
                self.written += 1
                self._tell_drops()
                continue
            self.healthy = False
            failures += 1
            delay = retry_mod.backoff(failures, self._backoff,
                                      self._backoff_max)
            LOG.warning('Aodh database unavailable, %d write(s) kept for '
                        'retry in %.1f s: %s', self.pending, delay, error)
            with self._cond:
                self._expire()
                self._cond.wait(delay)

    def _write(self, queue, write, name, items):
        """Write ``items``, dropping alone each one the database refuses.

        Returns (items not written, the outage that stopped them) or
        ([], None).
        """
        todo = [items]
        while todo:
            part = todo.pop()
            refused = None
            try:
                write(part)
            except store_mod.StoreUnavailable as e:
                return part + [i for p in reversed(todo) for i in p], e
            except Exception as e:
                refused = e
            if refused is None:
                if queue is self._history:
                    for _, _, future in part:
                        self._resolve(future, True)
            elif len(part) > 1:
                half = len(part) // 2
                todo += [part[half:], part[:half]]
            else:
                self._refused(queue, name(part[0]), part[0], refused)
        return [], None

    def _refused(self, queue, name, item, error):
        LOG.error('Dropping the %s, which the Aodh database does not take '
                  '(written alone): %s', name, error)
        with self._cond:
            self.dropped[REFUSED] += 1
        if queue is self._history:
            self._resolve(item[2], error)

    def _requeue(self, queue, items):
        with self._cond:
            if isinstance(queue, collections.OrderedDict):
                rest = list(queue.items())
                queue.clear()
                queue.update(items)
                for alarm_id, reason in rest:
                    queue.setdefault(alarm_id, reason)
            else:
                queue.extendleft(reversed(items))
                while len(queue) > self._max_pending:
                    self._drop(queue, queue.popleft(), FULL, Dropped(
                        'more than %d queued' % self._max_pending))

    def _expire(self):
        """Drop queued rows older than max_age (the lock held)."""
        limit = self._clock() - self._max_age
        for queue in (self._history, self._outcomes):
            while queue and queue[0][0] < limit:
                self._drop(queue, queue.popleft(), EXPIRED, Dropped(
                    'not written in %.0f s' % self._max_age))

    def _drop(self, queue, item, reason, error):
        """Drop ``item`` of ``queue`` (the lock held)."""
        self.dropped[reason] += 1
        if not self._untold:
            LOG.warning('Aodh database writes are being dropped (%s: %s); '
                        'a count follows when it takes writes again',
                        reason, error)
        self._untold[reason] += 1
        if queue is self._history:
            self._resolve(item[2], error)

    def _tell_drops(self):
        with self._cond:
            untold, self._untold = self._untold, collections.Counter()
        if untold:
            LOG.warning('Aodh database writes dropped while it was '
                        'unavailable: %s', ', '.join(
                            '%d %s' % (n, r) for r, n in sorted(
                                untold.items())))

    @staticmethod
    def _resolve(future, result):
        if future is None or future.done():
            return
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
