"""Concurrent small writes share one statement (group commit).

The agent's listener threads each write one row per event (the instance
map row of a ``compute.instance.*`` notification). When many arrive at
once (Nova's updates for the 1,000 resets of a host's fencing), a row each
costs a pooled connection, a transaction and a round trip apiece.
:class:`WriteGroup` writes one batch at a time: a caller that arrives while
a batch is in flight queues its item, and the next batch takes everything
queued. A caller alone writes at once: nothing waits to batch.

A batch that fails with :class:`doctor_ext.evaluator.store.BadRecord` is
written again one item at a time, so that a bad item is dropped alone
(its caller gets the error); any other error reaches every caller of the
batch.
"""

import collections
import threading


class _Item:
    __slots__ = ('value', 'done', 'error', 'lead')

    def __init__(self, value):
        self.value = value
        self.done = threading.Event()
        self.error = None
        self.lead = False


class WriteGroup:
    """Runs ``write(values)`` for concurrent callers of :meth:`write`.

    :param bad_record: the exception class that marks one bad value (the
        batch is then written again one value at a time).
    """

    def __init__(self, write, bad_record, max_batch=500):
        self._write = write
        self._bad = bad_record
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue = collections.deque()
        self._busy = False

    def write(self, value):
        """Write ``value`` (in a batch of concurrent callers' values)."""
        item = _Item(value)
        with self._lock:
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._queue.append(item)
        if lead:
            self._lead([item])
        else:
            item.done.wait()
            if item.lead:
                self._lead(self._take())
        if item.error is not None:
            raise item.error

    def _take(self):
        with self._lock:
            batch = []
            while self._queue and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
            return batch

    def _lead(self, batch):
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:
                    # The next waiting caller writes the next batch, so
                    # that this one returns now.
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False

    def _run(self, batch):
        try:
            try:
                self._write([i.value for i in batch])
            except self._bad:
                if len(batch) == 1:
                    raise
                for item in batch:
                    try:
                        self._write([item.value])
                    except self._bad as e:
                        item.error = e
        except BaseException as e:
            for item in batch:
                item.error = e
        finally:
            for item in batch:
                if not item.lead:
                    item.done.set()
