"""Leases on shared work, and the sweep that renews and takes them over.

Work that must survive its agent (an open host fault, a notification owed
to an owner) is a row with a lease: the agent that holds it renews the
lease while it works; when an agent dies, its leases run out and the next
sweep of any live agent, or of the restarted one, takes the work over.

One :class:`Sweeper` thread per process runs the tasks registered with it
(the evaluator's outbox, the inspector's fault journal) every
``sweep_interval`` seconds.
"""

import os
import socket
import threading
import time
import uuid

from oslo_config import cfg
from oslo_log import log

LOG = log.getLogger(__name__)

GROUP = 'doctor_state'
OPTS = [
    cfg.FloatOpt('lease_time', default=15.0, min=0.5,
                 help='Seconds an agent holds an open host fault or an '
                      'owed notification without renewing it. An agent '
                      'that dies leaves its work to the others (or to its '
                      'restarted self) this long after its last renewal.'),
    cfg.FloatOpt('sweep_interval', default=2.0, min=0.05,
                 help='Seconds between two sweeps of an agent process: '
                      'renew its own leases, take over work whose lease ran '
                      'out, purge old rows. Must be well under lease_time.'),
    cfg.IntOpt('retention_days', default=7, min=1,
               help='Days delivered or given-up notifications and closed '
                    'host faults are kept in the database.'),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


_AGENT_ID = None
_AGENT_PID = None


def agent_id():
    """This process's name on leases: host, pid and a random part.

    New in every process (a restarted agent, each worker of an agent), so
    that a process never mistakes a dead one's leases for its own.
    """
    global _AGENT_ID, _AGENT_PID
    if _AGENT_PID != os.getpid():
        _AGENT_ID = '%s:%d:%s' % (socket.gethostname()[:200], os.getpid(),
                                  uuid.uuid4().hex[:8])
        _AGENT_PID = os.getpid()
    return _AGENT_ID


class Sweeper:
    """Runs ``task()`` callables every ``sweep_interval`` seconds."""

    def __init__(self, conf):
        register_opts(conf)
        self._opts = conf[GROUP]
        self._tasks = []
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    @property
    def lease_time(self):
        return self._opts.lease_time

    def add(self, name, task, every=None):
        """Run ``task()`` at every sweep, or at most every ``every`` s."""
        with self._lock:
            self._tasks.append([name, task, every, None])
            if self._thread is None:
                self._thread = threading.Thread(target=self._run,
                                                name='doctor-sweeper',
                                                daemon=True)
                self._thread.start()

    def sweep(self, force=False):
        """Run the tasks that are due (with ``force``, all of them)."""
        now = time.monotonic()
        for entry in list(self._tasks):
            name, task, every, last = entry
            if not force and every and last is not None and \
                    now - last < every:
                continue
            entry[3] = now
            try:
                task()
            except Exception as e:
                LOG.warning('Sweep of %s failed, next in %.1f s: %s', name,
                            self._opts.sweep_interval, e)

    def _run(self):
        while not self._stop.wait(self._opts.sweep_interval):
            self.sweep()

    def stop(self):
        self._stop.set()
