"""Concurrent claims share one database transaction (group commit).

The notification agent evaluates events in many threads at once (a burst of
faults arrives as many notifications). Each event's claim is small, and its
cost is mostly fixed: a pooled connection, a transaction and a few round
trips. :class:`ClaimGroup` runs one claim at a time: a caller that arrives
while a claim is in flight queues its transitions, and the next claim takes
everything queued, so that N concurrent events cost one transaction, not N.
A caller alone (one fault) runs its claim at once: nothing waits to batch.

The outcome is the same as claiming separately: an alarm wanted by two
queued callers goes to the first (the second would have lost it in the
database), with the outbox rows of the first; owed rows of alarms that are
not claimed (repeating alarms) are all written; and a database error
reaches every caller of that claim.
"""

import collections
import threading


class _Request:
    __slots__ = ('transitions', 'owed', 'history', 'done', 'won', 'error',
                 'lead')

    def __init__(self, transitions, owed, history):
        self.transitions = transitions
        self.owed = owed
        self.history = history
        self.done = threading.Event()
        self.won = None
        self.error = None
        # Set when this waiting caller is handed the next claim to run.
        self.lead = False


class ClaimGroup:
    """Runs ``claim(transitions, owed, history) -> won ids`` for callers.

    For concurrent callers: ``owed`` (outbox rows) and ``history`` (history
    changes) are keyed by ``alarm_id`` and go with the caller the alarm
    goes to.

    ``claim`` is the store's claim (:meth:`.store.AodhStore.claim`); it is
    passed per call so that the store can be swapped (tests, reconnects).
    """

    def __init__(self, max_batch=2000):
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue = collections.deque()
        self._busy = False

    @property
    def queued(self):
        """Callers waiting for the claim in flight (for tests)."""
        with self._lock:
            return len(self._queue)

    def claim(self, claim, transitions, owed=(), history=()):
        request = _Request(list(transitions), list(owed), list(history))
        with self._lock:
            if self._busy:
                self._queue.append(request)
                lead = False
            else:
                self._busy = True
                lead = True
        if not lead:
            request.done.wait()
            if request.lead:
                self._lead(claim, self._take())
        else:
            self._lead(claim, [request])
        if request.error is not None:
            raise request.error
        return request.won

    def _take(self):
        """The queued requests for one claim (called by the leader)."""
        with self._lock:
            batch, size = [], 0
            while self._queue and (not batch or size +
                                   len(self._queue[0].transitions)
                                   <= self._max_batch):
                request = self._queue.popleft()
                size += len(request.transitions)
                batch.append(request)
            return batch

    def _lead(self, claim, batch):
        try:
            self._run(claim, batch)
        finally:
            with self._lock:
                if self._queue:
                    # Hand the next claim to a waiting caller, so that this
                    # one returns now.
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False

    @staticmethod
    def _run(claim, batch):
        owner = {}          # alarm id -> the request it is claimed for
        transitions, owed, history = [], [], []
        for request in batch:
            for alarm_id, reason in request.transitions:
                if alarm_id not in owner:
                    owner[alarm_id] = request
                    transitions.append((alarm_id, reason))
        for request in batch:
            owed.extend(o for o in request.owed
                        if owner.get(o['alarm_id'], request) is request)
            history.extend(h for h in request.history
                           if owner.get(h['alarm_id'], request) is request)
        try:
            won = claim(transitions, owed, history)
        except BaseException as e:
            # Every caller of this claim raises it (the leader too), so
            # that none returns without an answer.
            for request in batch:
                request.error = e
        else:
            for request in batch:
                request.won = {i for i in won if owner.get(i) is request}
        finally:
            for request in batch:
                if not request.lead:
                    request.done.set()
