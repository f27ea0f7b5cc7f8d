"""Scenario 9: one project with 10,000 unreachable consumers beside a
healthy one.

A host fails with the instances of two projects on it. The healthy
project's 20 alarms POST to its consumer double. The greedy project's 100
alarms have 100 action URLs each, 10,000 distinct consumers, none of which
ever answers while the healthy owners are being notified: 100 are
link-local addresses (refused by the egress policy; the lab allows
loopback only); the 9,900 others are loopback addresses, of a listener
that never accepts (connections time out) for half of the alarms, and of a
consumer double that holds every request (it answers 503 once the test
releases it) for the other half. The greedy instances are created first,
so their notifications are submitted first, and the first ones go to the
holding consumer: the greedy project's delivery threads all hang there.

While they hang, the healthy owners must all be notified: a healthy
notification queued behind the greedy ones would never be. Then the held
requests are released. The agent's thread count (``/proc/<pid>/task``)
stays under its bound (the threads it had after a first, small fault, plus
the delivery threads' cap, plus the bus listener's executor pool), and
every greedy notification is given up with a log line naming its alarm
and URL: refused, dropped at the project's queue bound, or failed (a
timeout, or the 503), and its outbox row is recorded as given up. How
long the healthy owners took is recorded with the scenario's figures
(``healthy_last_ms``), not asserted, beside the same healthy fault alone
in the same run, once every greedy notification is given up
(``healthy_alone_ms``, another host of 20 instances of the healthy
project) and their ratio (``healthy_ratio``): what the greedy neighbour
cost them. The benchmark's ``neighbour`` scenario sets a goal
on that ratio.
"""

import collections
import os
import re
import threading
import time

from doctor_ext_lab import consumer as consumer_mod
from doctor_ext_lab import services
from doctor_ext_lab import unreachable
from tests.faults import base

THREADS = 16
PER_PROJECT = 8
EXECUTOR = 8
QUEUED = 400
CONNECT_TIMEOUT = 0.2
# Longer than the healthy owners may take: a held request is still held
# when they are all notified.
READ_TIMEOUT = 60
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
            'connect_timeout': str(CONNECT_TIMEOUT),
            'read_timeout': str(READ_TIMEOUT),
            'max_retries': '0'}}

    def tarpit(self):
        """A listener on every address whose connections time out."""
        tarpit = unreachable.Tarpit(CONNECT_TIMEOUT).start()
        self.addCleanup(tarpit.stop)
        return tarpit.port

    def outbox_states(self, project):
        return unreachable.outbox_states(self.stack.db.url, project)

    def holder(self):
        """A consumer on every loopback address that holds each request."""
        holder = consumer_mod.Consumer(host='0.0.0.0').start()
        self.addCleanup(holder.stop)
        holder.hang()
        holder.respond(503)
        return holder

    def last_owner_ms(self, host, vms):
        """Report ``host`` down; ms to the last owner of ``vms``."""
        alarms = {a for _, a in vms.values()}
        sent = time.time()
        self.reporter.report(host)
        self.wait_alarms(alarms, 30)
        return round((max(r.time for r in self.received()
                          if isinstance(r.body, dict) and
                          r.body.get('alarm_id') in alarms) - sent) * 1000, 1)

    def test_greedy_project_bounded_healthy_not_behind(self):
        tarpit, holder = self.tarpit(), self.holder()
        greedy_urls = {}
        rows = []
        for i in range(GREEDY_VMS):
            vm = self.nova.add_server('compute-1', 'project-b')
            if i == 0:
                urls = unreachable.link_local_urls(0, ACTIONS)
            else:
                # The first greedy notifications are held, then by turns.
                port = holder.port if i % 2 else tarpit
                urls = unreachable.loopback_urls(port, i * ACTIONS, ACTIONS)
            row = services.alarm_row('project-b', vm, urls[0])
            row['alarm_actions'] = urls
            rows.append(row)
            greedy_urls[row['alarm_id']] = urls
        self.stack.db.insert_alarms(rows)
        healthy = self.add_vms('compute-1', HEALTHY_VMS,
                               projects=['project-a'])
        warm_up = self.add_vms('compute-2', 5, projects=['project-a'])
        alone = self.add_vms('compute-3', HEALTHY_VMS,
                             projects=['project-a'])
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
        sent = time.time()
        self.reporter.report('compute-1')
        tally.sent = 1
        # The greedy project's share of the delivery threads all hang...
        base.poll(lambda: holder.count() >= PER_PROJECT, 30,
                  'the greedy project\'s %d threads held' % PER_PROJECT)
        # ...and the healthy owners are notified meanwhile.
        self.wait_alarms(tally.expected, 30)
        last = max(r.time for r in self.received('project-a')
                   if isinstance(r.body, dict) and
                   r.body.get('alarm_id') in tally.expected)
        self.assertEqual(PER_PROJECT, holder.count())
        holder.release()

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
        # Every greedy outbox row given up, with its reason.
        base.poll(lambda: self.outbox_states('project-b') == {
            'given_up': GREEDY_VMS * ACTIONS}, 30,
            'every greedy outbox row given up')
        # The same healthy fault alone, once the greedy project is quiet:
        # the figure the one beside it is compared with.
        alone_ms = self.last_owner_ms('compute-3', alone)
        healthy_ms = round((last - sent) * 1000, 1)
        tally.extra = {
            'healthy_last_ms': healthy_ms, 'healthy_alone_ms': alone_ms,
            'healthy_ratio': round(healthy_ms / max(alone_ms, 0.1), 2),
            'threads_before': baseline, 'threads_peak': peak,
            'given_up': dict(kinds)}
        self.record(tally)

        # The healthy owners, all and on time.
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertEqual(0, tally.unexpected)
        # Every greedy notification recorded as given up, each kind seen.
        self.assertEqual(ACTIONS, kinds['refused by the egress policy'])
        self.assertGreater(kinds['dropped: queue full'], 0)
        self.assertGreater(kinds['failed'], 0)
        self.assertEqual(GREEDY_VMS * ACTIONS, sum(kinds.values()))
        # Threads: never more than the caps allow, in any process.
        for pid, count in peak.items():
            self.assertLessEqual(count, baseline.get(pid, 0) + THREADS +
                                 EXECUTOR, (pid, baseline, peak))
