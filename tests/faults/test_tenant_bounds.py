"""Scenario 9: one project with 10,000 unreachable consumers beside a
healthy one.

A host fails with the instances of two projects on it. The healthy
project's 20 alarms POST to its consumer double. The greedy project's 100
alarms have 100 action URLs each, 10,000 distinct consumers: 9,900 are
loopback addresses of a listener that never accepts (connections time
out), 100 are link-local addresses (refused by the egress policy; the lab
allows loopback only). The greedy instances are created first, so their
notifications are submitted first.

The agent's thread count (``/proc/<pid>/task``) stays under its bound (the
threads it had after a first, small fault, plus the delivery threads' cap,
plus the bus listener's executor pool), the healthy owners are notified
within Doctor's requirement, and every greedy notification is given up
with a log line naming its alarm and URL: refused, dropped at the
project's queue bound, or failed after its timeout.
"""

import collections
import os
import re
import socket
import threading
import time

from doctor_ext_lab import services
from tests.faults import base
from tests.functional import base as fbase

THREADS = 16
PER_PROJECT = 8
EXECUTOR = 8
QUEUED = 400
TIMEOUT = 0.2
GREEDY_VMS = 100
ACTIONS = 100
HEALTHY_VMS = 20
GIVEN_UP_RE = re.compile(
    r"(?:Cannot notify alarm (\S+): cannot notify '([^']+)': "
    r"(refused by the egress policy|dropped: queue full)"
    r"|Failed to notify alarm (\S+) at (\S+) after)")


def threads_of(pids):
    """{pid: thread count} of the live processes among ``pids``."""
    out = {}
    for pid in pids:
        try:
            out[pid] = len(os.listdir('/proc/%d/task' % pid))
        except OSError:
            pass
    return out


class ThreadSampler:
    """The peak thread count of each process of the agent, every 10 ms."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.01):
            for pid, count in threads_of(self.pids).items():
                self.peak[pid] = max(self.peak[pid], count)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return dict(self.peak)


class TestTenantBounds(base.FaultTest):

    agent_options = {
        'DEFAULT': {'executor_thread_pool_size': str(EXECUTOR)},
        'doctor_inspector': {'fence': 'False'},
        'doctor_notifier': {
            'egress_allow': services.LAB_EGRESS_ALLOW,
            'max_delivery_threads': str(THREADS),
            'max_threads_per_project': str(PER_PROJECT),
            'max_queued_per_project': str(QUEUED),
            'connect_timeout': str(TIMEOUT), 'read_timeout': str(TIMEOUT),
            'max_retries': '0'}}

    def tarpit(self):
        """A listener that never accepts: connections to it time out."""
        sock = socket.socket()
        sock.bind(('0.0.0.0', 0))
        sock.listen(0)
        self.addCleanup(sock.close)
        return sock.getsockname()[1]

    def test_greedy_project_bounded_healthy_on_time(self):
        port = self.tarpit()
        greedy_urls = {}
        rows = []
        for i in range(GREEDY_VMS):
            vm = self.nova.add_server('compute-1', 'project-b')
            if i == 0:
                urls = ['http://169.254.%d.%d/latest' % (
                    j // 250, j % 250 + 1) for j in range(ACTIONS)]
            else:
                urls = ['http://127.1.%d.%d:%d/failure' % (
                    n // 250, n % 250 + 1, port)
                    for n in range(i * ACTIONS, (i + 1) * ACTIONS)]
            row = services.alarm_row('project-b', vm, urls[0])
            row['alarm_actions'] = urls
            rows.append(row)
            greedy_urls[row['alarm_id']] = urls
        self.stack.db.insert_alarms(rows)
        healthy = self.add_vms('compute-1', HEALTHY_VMS,
                               projects=['project-a'])
        warm_up = self.add_vms('compute-2', 5, projects=['project-a'])
        self.assertEqual(GREEDY_VMS * ACTIONS, len(
            {u for urls in greedy_urls.values() for u in urls}))
        agent = self.start_agent()
        # A first fault starts the threads the agent starts on demand
        # anyway (the listener's executor, the recorder, delivery).
        self.reporter.report('compute-2')
        self.wait_alarms({a for _, a in warm_up.values()}, 20)
        since = time.time()
        pids = base.process_group(agent.pid)
        baseline = threads_of(pids)
        sampler = ThreadSampler(pids)

        tally = base.Tally('tenant-bounds', 'one project with 10,000 '
                           'unreachable consumers (100 refused by the '
                           'egress policy) beside a healthy one (20)')
        tally.expected = {a for _, a in healthy.values()}
        sent, last = self.report_down(tally, 'compute-1', 20, 'project-a')

        expected = {(a, u) for a, urls in greedy_urls.items() for u in urls}
        outcomes = {}

        def all_given_up():
            for m in GIVEN_UP_RE.finditer(self.log_of(agent)):
                if m.group(1):
                    outcomes[(m.group(1), m.group(2))] = m.group(3)
                else:
                    outcomes[(m.group(4), m.group(5))] = 'failed'
            return expected <= set(outcomes)
        base.poll(all_given_up, 180, 'every greedy notification to be '
                                     'given up')
        tally.recover = time.time() - sent
        tally.recover_what = 'report -> every greedy notification given up'
        peak = sampler.stop()
        tally.count(self.received(), since=since)
        kinds = collections.Counter(outcomes[k] for k in expected)
        tally.extra = {
            'healthy_last_ms': round((last - sent) * 1000, 1),
            'threads_before': baseline, 'threads_peak': peak,
            'given_up': dict(kinds)}
        self.record(tally)

        # The healthy owners, all and on time.
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertEqual(0, tally.unexpected)
        self.assertLess(last - sent, fbase.REQUIREMENT)
        # Every greedy notification recorded as given up, each kind seen.
        self.assertEqual(ACTIONS, kinds['refused by the egress policy'])
        self.assertGreater(kinds['dropped: queue full'], 0)
        self.assertGreater(kinds['failed'], 0)
        self.assertEqual(GREEDY_VMS * ACTIONS, sum(kinds.values()))
        # Threads: never more than the caps allow, in any process.
        for pid, count in peak.items():
            self.assertLessEqual(count, baseline.get(pid, 0) + THREADS +
                                 EXECUTOR, (pid, baseline, peak))
