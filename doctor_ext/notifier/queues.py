"""The records of the lanes (:mod:`.lanes`): items and their queues.

An :class:`Item` is queued once in its (project, consumer) :class:`Queue`
and listed in the arrival order (:class:`Fifo`) of its project and of its
consumer, so that a queue bound drops the oldest. Plain records: the lanes
change them under their lock.
"""

import collections

QUEUED, TAKEN, DROPPED = 'queued', 'taken', 'dropped'


class Item:
    """One queued piece of work (``payload`` is the caller's)."""

    __slots__ = ('payload', 'queue', 'state')

    def __init__(self, payload, queue):
        self.payload = payload
        self.queue = queue
        self.state = QUEUED


class Fifo:
    """Items in arrival order; taken or dropped ones are skipped lazily."""

    __slots__ = ('items',)

    def __init__(self):
        self.items = collections.deque()

    def push(self, item, live):
        self.items.append(item)
        if len(self.items) > 2 * live + 64:
            self.items = collections.deque(
                i for i in self.items if i.state is QUEUED)

    def oldest(self):
        while self.items and self.items[0].state is not QUEUED:
            self.items.popleft()
        return self.items[0] if self.items else None


class Queue:
    """The notifications of one project for one consumer."""

    __slots__ = ('project', 'consumer', 'items', 'queued', 'listed')

    def __init__(self, project, consumer):
        self.project = project
        self.consumer = consumer
        self.items = collections.deque()
        self.queued = 0
        # In its project's ready ring or its consumer's waiting list.
        self.listed = False


class Project:
    __slots__ = ('key', 'queues', 'ready', 'in_flight', 'queued', 'fifo',
                 'in_ring')

    def __init__(self, key):
        self.key = key
        self.queues = {}
        self.ready = collections.deque()
        self.in_flight = 0
        self.queued = 0
        self.fifo = Fifo()
        self.in_ring = False
