"""Writes to Aodh that must land but must not hold up a notification.

History rows, the outcomes of owed notifications (:mod:`.outbox`), and the
state of alarms that fired while the database was unreachable, are queued
here and written in batches by one background
thread, retried with capped backoff until the database takes them. While
writes follow each other closely (a burst of faults), the thread starts one
at most every ``linger`` seconds unless a full batch is queued, so that a
burst costs a few large transactions instead of many small ones; a write
after a quiet spell starts at once. A state
write deferred by an outage is a claim like any other: if another agent
moved the alarm first, this one records nothing more.

:meth:`Recorder.history` returns a future that is resolved once the row is
written (with everything queued before it), so that a publisher acking a
notification only after its work is done (``[doctor_publisher]
delivery_wait``) can wait for it while the database answers.
"""

import collections
import concurrent.futures
import threading
import time

from oslo_log import log

from doctor_ext.evaluator import store as store_mod

LOG = log.getLogger(__name__)


class Recorder:
    def __init__(self, store, batch=500, backoff=0.2, backoff_max=5.0,
                 linger=0.05):
        self._store = store
        self._batch = batch
        self._linger = linger
        self._last = 0.0
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._history = collections.deque()
        self._claims = collections.deque()
        self._states = collections.deque()
        self._outcomes = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = None
        self._idle = threading.Event()
        self._idle.set()
        # False from a failed write until the next successful one.
        self.healthy = True
        # Batches written so far (the engine waits for the next one).
        self.written = 0

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
        self._put(self._history, (change, future))
        return future

    def deferred_claim(self, alarm_id, reason):
        self._put(self._claims, (alarm_id, reason))

    def state(self, alarm_id, reason):
        self._put(self._states, (alarm_id, reason))

    def outcome(self, owed_id, outcome):
        """Queue the (state, error) of the owed notification ``owed_id``."""
        self._put(self._outcomes, (owed_id, outcome))

    def _put(self, queue, item):
        with self._cond:
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
            items.append(queue.popleft())
        return items

    def _run(self):
        delay = self._backoff
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
                       time.monotonic() < until):
                    self._cond.wait(until - time.monotonic())
                self._last = time.monotonic()
                claims = self._take(self._claims, self._batch)
                states = self._take(self._states, self._batch)
                history = self._take(self._history, self._batch)
                outcomes = self._take(self._outcomes, self._batch)
            try:
                if claims:
                    self._store.claim(claims)
                if states:
                    self._store.set_state(states)
                if history:
                    self._store.record_history([c for c, _ in history])
                if outcomes:
                    self._store.finish_outbox(outcomes)
                delay = self._backoff
                self.healthy = True
                self.written += 1
                for _, future in history:
                    future.set_result(True)
            except store_mod.StoreUnavailable as e:
                self.healthy = False
                LOG.warning('Aodh database unavailable, %d write(s) kept '
                            'for retry in %.1f s: %s',
                            len(claims) + len(states) + len(history) +
                            len(outcomes), delay, e)
                with self._cond:
                    self._claims.extendleft(reversed(claims))
                    self._states.extendleft(reversed(states))
                    self._history.extendleft(reversed(history))
                    self._outcomes.extendleft(reversed(outcomes))
                    self._cond.wait(delay)
                delay = min(delay * 2, self._backoff_max)
            except Exception as e:
                LOG.exception('Dropping %d Aodh write(s) that failed',
                              len(claims) + len(states) + len(history) +
                              len(outcomes))
                for _, future in history:
                    future.set_exception(e)
