"""Lanes: bounded queues and a capped pool of delivery threads.

Tenants choose how many consumers there are and how many notifications
go to each; this module keeps what that costs the agent bounded and fair:

* **Threads**: at most ``max_delivery_threads`` delivery threads, shared
  by every consumer, started when work is waiting and no thread is free,
  ending after a minute without work.
* **Fairness**: one queue per (project, consumer). Free threads take the
  projects in turn (round robin), and within a project its consumers in
  turn. A project has at most ``max_threads_per_project`` threads at once
  and a consumer ``max_connections_per_consumer``: the rest stays
  available to the others, so a project whose consumers hang or time out
  only slows itself.
* **Queue bounds**: at most ``max_queued_per_consumer`` notifications
  waiting for one consumer and ``max_queued_per_project`` for one
  project. A notification beyond a bound makes the *oldest* waiting one of
  that consumer (or project) be dropped: its :class:`.queues.Item` is handed to
  ``on_drop`` with the reason, never sent.
* **Connections**: each consumer keeps the keep-alive connections its
  deliveries return, at most ``2 * max_delivery_threads`` over all
  consumers (the least recently used is closed beyond). A consumer with
  nothing queued or in flight for ``consumer_idle_timeout`` seconds has
  its connections closed and is forgotten.

:class:`Lanes` knows nothing of HTTP: ``deliver(payload, pool)`` does the
work in a delivery thread (``pool`` lends the consumer's connections) and
returns a callable run once the slot is free (to resolve the future).

Over 400 lines as one concern: the scheduling of threads over the queues
and the connections those threads keep change together under one lock
(a delivery's slot, its consumer's connections and the consumer's
forgetting); the records they change are in :mod:`.queues`.
"""

import collections
import threading
import time

from oslo_config import cfg
from oslo_log import log

from doctor_ext.notifier import queues

LOG = log.getLogger(__name__)

GROUP = 'doctor_notifier'

OPTS = [
    cfg.IntOpt('max_delivery_threads', default=64, min=1,
               help='Delivery threads of the notifier, shared by every '
                    'consumer and project: the most the notifications of '
                    'all tenants together can start. One thread makes one '
                    'POST (with its retries) at a time.'),
    cfg.IntOpt('max_threads_per_project', default=16, min=1,
               help='Delivery threads one project may hold at once; the '
                    'others stay free for the other projects, so that '
                    'consumers that hang or time out delay only their own '
                    "project's notifications. Projects take the free "
                    'threads in turn.'),
    cfg.IntOpt('max_connections_per_consumer', default=16, min=1,
               help='Concurrent POSTs, hence keep-alive connections, per '
                    'consumer (scheme, host, port).'),
    cfg.IntOpt('max_queued_per_consumer', default=5000, min=1,
               help='Notifications waiting for one consumer. At the bound '
                    'the oldest waiting one is dropped, never sent: its '
                    'delivery fails with "dropped: queue full", is logged, '
                    'and counted.'),
    cfg.IntOpt('max_queued_per_project', default=10000, min=1,
               help='Notifications waiting for the consumers of one '
                    'project. At the bound the oldest waiting one of the '
                    'project is dropped, never sent: its delivery fails '
                    'with "dropped: queue full", is logged, and counted.'),
    cfg.FloatOpt('consumer_idle_timeout', default=60.0, min=0.0,
                 help='Seconds after which a consumer with nothing queued '
                      'or in flight has its keep-alive connections closed '
                      'and is forgotten.'),
]

# Seconds a delivery thread waits for work before it ends.
WORKER_IDLE_TIMEOUT = 60.0
# Seconds between two looks for idle consumers.
REAP_INTERVAL = 1.0


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class Pool:
    """The kept connections of one consumer, lent to its deliveries."""

    __slots__ = ('key', 'idle', 'busy', 'waiting', 'in_flight', 'queued',
                 'fifo', 'active_at', '_lanes')

    def __init__(self, lanes, key):
        self.key = key
        self.idle = []
        self.busy = set()
        self.waiting = collections.deque()
        self.in_flight = 0
        self.queued = 0
        self.fifo = queues.Fifo()
        self.active_at = time.monotonic()
        self._lanes = lanes

    def take(self, match=None):
        """A kept connection (``match(conn)`` true), or None."""
        return self._lanes._take_conn(self, match)

    def lend(self, conn):
        """Track a new connection (so that stop() can cut it)."""
        with self._lanes._cond:
            self.busy.add(conn)

    def give_back(self, conn):
        """Keep ``conn`` for the next delivery (closed if it is done)."""
        self._lanes._give_back(self, conn)


class Lanes:
    """Queues per (project, consumer) served by a capped thread pool.

    ``deliver(payload, pool)`` runs in a delivery thread and returns a
    callable (or None) run after the thread's slot is released;
    ``on_drop(payload, reason)`` is called, outside any lock, for an item
    dropped at a queue bound.
    """

    def __init__(self, conf, deliver, on_drop, name='doctor-notify'):
        register_opts(conf)
        opts = conf[GROUP]
        self._max_threads = opts.max_delivery_threads
        self._per_project = opts.max_threads_per_project
        self._per_consumer = opts.max_connections_per_consumer
        self._max_queued_consumer = opts.max_queued_per_consumer
        self._max_queued_project = opts.max_queued_per_project
        self._idle_timeout = opts.consumer_idle_timeout
        self._max_idle_conns = 2 * self._max_threads
        # A waiting thread wakes up to forget idle consumers in time.
        self._wait_step = min(WORKER_IDLE_TIMEOUT,
                              max(REAP_INTERVAL, self._idle_timeout))
        self._deliver = deliver
        self._on_drop = on_drop
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._projects = {}
        self._pools = collections.OrderedDict()  # least recently active 1st
        self._ring = collections.deque()
        self._idle_conns = collections.OrderedDict()  # conn -> pool, LRU 1st
        self._threads = set()
        self._waiting_threads = 0
        self._signalled = 0
        self._starting = 0
        self._stopping = False
        self._reaped_at = time.monotonic()

    # -- queueing ----------------------------------------------------------

    def put(self, project_key, consumer_key, payload):
        """Queue ``payload``; False if stopping (nothing queued)."""
        dropped = []
        with self._cond:
            if self._stopping:
                return False
            project = self._projects.get(project_key)
            if project is None:
                project = self._projects[project_key] = queues.Project(
                    project_key)
            pool = self._pools.get(consumer_key)
            if pool is None:
                pool = self._pools[consumer_key] = Pool(self, consumer_key)
            queue = project.queues.get(consumer_key)
            if queue is None or queue.consumer is not pool:
                # (A queue left empty by drops may outlive its forgotten
                # consumer: it is forgotten in turn when it comes up.)
                queue = project.queues[consumer_key] = queues.Queue(
                    project, pool)
            item = queues.Item(payload, queue)
            queue.items.append(item)
            queue.queued += 1
            project.queued += 1
            pool.queued += 1
            project.fifo.push(item, project.queued)
            pool.fifo.push(item, pool.queued)
            if pool.queued > self._max_queued_consumer:
                dropped.append((self._drop(pool.fifo.oldest()),
                                'max_queued_per_consumer',
                                self._max_queued_consumer))
            if project.queued > self._max_queued_project:
                dropped.append((self._drop(project.fifo.oldest()),
                                'max_queued_per_project',
                                self._max_queued_project))
            if not queue.listed:
                self._list(queue)
            self._ring_if_ready(project)
            if self._ring:
                self._wake()
        for item, option, bound in dropped:
            self._on_drop(item.payload, 'dropped: queue full ([%s] %s = %d '
                          'reached)' % (GROUP, option, bound))
        return True

    def _drop(self, item):
        item.state = queues.DROPPED
        queue = item.queue
        queue.queued -= 1
        queue.project.queued -= 1
        queue.consumer.queued -= 1
        return item

    def _list(self, queue):
        """Make a queue with items ready, or waiting for its consumer."""
        queue.listed = True
        if queue.consumer.in_flight < self._per_consumer:
            queue.project.ready.append(queue)
        else:
            queue.consumer.waiting.append(queue)

    def _ring_if_ready(self, project):
        if (not project.in_ring and project.ready and
                project.in_flight < self._per_project):
            project.in_ring = True
            self._ring.append(project)

    def _wake(self):
        """A thread for the ready work: a waiting one, else a new one.

        One new thread at a time: a thread that takes work while more is
        ready wakes the next, so a burst does not start threads that find
        nothing to do.
        """
        if self._waiting_threads > self._signalled:
            self._signalled += 1
            self._cond.notify()
        elif not self._starting and len(self._threads) < self._max_threads:
            thread = threading.Thread(target=self._run, name=self._name,
                                      daemon=True)
            self._threads.add(thread)
            self._starting += 1
            thread.start()

    # -- taking ------------------------------------------------------------

    def _next(self):
        """The next item, fairly; None if nothing may start now."""
        while self._ring:
            project = self._ring.popleft()
            project.in_ring = False
            item = None
            while project.ready and item is None:
                queue = project.ready.popleft()
                pool = queue.consumer
                if pool.in_flight >= self._per_consumer:
                    pool.waiting.append(queue)
                    continue
                while queue.items and item is None:
                    candidate = queue.items.popleft()
                    if candidate.state is queues.QUEUED:
                        item = candidate
                if item is None:
                    self._forget_queue(queue)
                    continue
                item.state = queues.TAKEN
                queue.queued -= 1
                project.queued -= 1
                pool.queued -= 1
                pool.in_flight += 1
                project.in_flight += 1
                if queue.queued:
                    self._list(queue)
                else:
                    self._forget_queue(queue)
            self._ring_if_ready(project)
            if item is not None:
                return item
            self._forget_project(project)
        return None

    def _forget_queue(self, queue):
        queue.listed = False
        if not queue.queued:
            queue.items.clear()
            project = queue.project
            if project.queues.get(queue.consumer.key) is queue:
                del project.queues[queue.consumer.key]

    def _forget_project(self, project):
        if (not project.queued and not project.in_flight and
                not project.ready and not project.queues and
                self._projects.get(project.key) is project):
            del self._projects[project.key]

    def _release(self, item):
        queue = item.queue
        pool, project = queue.consumer, queue.project
        pool.in_flight -= 1
        project.in_flight -= 1
        pool.active_at = time.monotonic()
        self._pools.move_to_end(pool.key)
        if pool.waiting:
            waiting = pool.waiting.popleft()
            waiting.project.ready.append(waiting)
            self._ring_if_ready(waiting.project)
        self._ring_if_ready(project)
        self._forget_project(project)

    def _run(self):
        me = threading.current_thread()
        with self._cond:
            self._starting -= 1
        try:
            while True:
                with self._cond:
                    self._reap()
                    item = self._next()
                    idle_since = time.monotonic()
                    while item is None:
                        if self._stopping:
                            return
                        self._waiting_threads += 1
                        woken = self._cond.wait(self._wait_step)
                        self._waiting_threads -= 1
                        if self._signalled:
                            self._signalled -= 1
                        item = self._next()
                        if item is None:
                            self._reap()
                            if (not woken and time.monotonic() - idle_since
                                    >= WORKER_IDLE_TIMEOUT):
                                return
                    if self._ring:
                        # More ready than this thread takes.
                        self._wake()
                then = None
                try:
                    then = self._deliver(item.payload, item.queue.consumer)
                finally:
                    with self._cond:
                        self._release(item)
                if then is not None:
                    # Resolved once the slot is free: whatever a woken
                    # submit() does next finds this thread available.
                    then()
        except BaseException:
            LOG.exception('Notifier delivery thread died')
            raise
        finally:
            with self._cond:
                self._threads.discard(me)

    # -- connections -------------------------------------------------------

    def _take_conn(self, pool, match):
        with self._cond:
            for i in range(len(pool.idle) - 1, -1, -1):
                conn = pool.idle[i]
                if match is None or match(conn):
                    del pool.idle[i]
                    self._idle_conns.pop(conn, None)
                    pool.busy.add(conn)
                    return conn
        return None

    def _give_back(self, pool, conn):
        evicted = []
        with self._cond:
            pool.busy.discard(conn)
            if (conn.sock is not None and not self._stopping and
                    self._pools.get(pool.key) is pool):
                pool.idle.append(conn)
                self._idle_conns[conn] = pool
                while len(self._idle_conns) > self._max_idle_conns:
                    old, owner = self._idle_conns.popitem(last=False)
                    owner.idle.remove(old)
                    evicted.append(old)
            else:
                evicted.append(conn)
        for old in evicted:
            old.close()

    def _reap(self):
        """Forget consumers idle for consumer_idle_timeout (with lock)."""
        now = time.monotonic()
        if now - self._reaped_at < REAP_INTERVAL:
            return
        self._reaped_at = now
        closing = []
        for _ in range(len(self._pools)):
            key, pool = next(iter(self._pools.items()))
            if now - pool.active_at < self._idle_timeout:
                break
            if pool.queued or pool.in_flight or pool.busy:
                self._pools.move_to_end(key)
                continue
            del self._pools[key]
            for conn in pool.idle:
                self._idle_conns.pop(conn, None)
                closing.append(conn)
            pool.idle = []
        for conn in closing:
            # Closing a socket does not block.
            conn.close()

    # -- observing and stopping --------------------------------------------

    def stats(self):
        """Threads, consumers known, projects with work, kept connections."""
        with self._cond:
            return {'threads': len(self._threads),
                    'consumers': len(self._pools),
                    'projects': len(self._projects),
                    'idle_connections': len(self._idle_conns),
                    'queued': sum(p.queued for p in self._projects.values())}

    def stop(self):
        """Queued payloads (to fail); wakes the threads, cuts connections."""
        with self._cond:
            self._stopping = True
            pending = [i for p in self._projects.values()
                       for q in p.queues.values() for i in q.items
                       if i.state is queues.QUEUED]
            for item in pending:
                item.state = queues.DROPPED
            busy = [c for pool in self._pools.values() for c in pool.busy]
            idle = list(self._idle_conns)
            self._idle_conns.clear()
            for pool in self._pools.values():
                pool.idle = []
            self._cond.notify_all()
        for conn in busy:
            conn.shutdown()   # a POST in flight ends at once
        for conn in idle:
            conn.close()
        return [item.payload for item in pending]

    def join(self, deadline):
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
