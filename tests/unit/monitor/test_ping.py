"""The ping monitor: detection, one report per transition, recovery."""

import datetime
import socket
import threading
import time

from oslo_utils import timeutils
from oslotest import base

from doctor_ext.monitor import icmp
from doctor_ext.monitor import ping
from doctor_ext.monitor import report

DEADLINE = 10.0


class FakeReporter:
    """Records the reports; can be made to fail."""

    def __init__(self):
        self.reports = []
        self.failures = 0
        self.cond = threading.Condition()

    def send(self, r):
        report.validate_report(r)
        with self.cond:
            if self.failures:
                self.failures -= 1
                raise report.ReportNotSent('broker down (test)')
            self.reports.append(r)
            self.cond.notify_all()
        return r['details']['monitor_event_id']

    def statuses(self, host=None):
        with self.cond:
            return [(r['details']['hostname'], r['details']['status'])
                    for r in self.reports
                    if host is None or r['details']['hostname'] == host]

    def wait_for(self, predicate, timeout=DEADLINE):
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


class ScriptedProbe:
    """probe(address, timeout): the answer set for the address."""

    def __init__(self, alive):
        self.alive = dict(alive)
        self.calls = {}
        self.cond = threading.Condition()
        self.error = None

    def __call__(self, address, timeout):
        with self.cond:
            self.calls[address] = self.calls.get(address, 0) + 1
            self.cond.notify_all()
            if self.error is not None:
                raise self.error
            return self.alive[address]

    def count(self, address):
        with self.cond:
            return self.calls.get(address, 0)

    def wait_calls(self, address, count, timeout=DEADLINE):
        with self.cond:
            return self.cond.wait_for(
                lambda: self.calls.get(address, 0) >= count, timeout)


class ParseHostsTest(base.BaseTestCase):

    def test_parse(self):
        self.assertEqual(
            {'compute-1': '127.0.0.11', 'compute-2': 'fd00::12',
             'compute-3': 'compute-3'},
            ping.parse_hosts(['compute-1:127.0.0.11', ' compute-2:fd00::12',
                              'compute-3', 'compute-1:127.0.0.11']))

    def test_bad(self):
        self.assertRaises(ValueError, ping.parse_hosts, [':127.0.0.11'])
        self.assertRaises(ValueError, ping.parse_hosts, ['compute-1:'])
        e = self.assertRaises(ValueError, ping.parse_hosts,
                              ['c1:127.0.0.11', 'c1:127.0.0.12'])
        self.assertIn('c1', str(e))

    def test_checksum(self):
        # The echo request of the Doctor sample monitor: 08 00 f7 ff ...
        self.assertEqual(0xf7ff, icmp.checksum(b'\x08' + bytes(7)))
        self.assertEqual(0, icmp.checksum(b'\x08\x00\xf7\xff' + bytes(4)))


class PingMonitorTest(base.BaseTestCase):
    """Transitions, driven probe by probe with check()."""

    def setUp(self):
        super().setUp()
        self.reporter = FakeReporter()
        self.probe = ScriptedProbe({'127.0.0.11': True})

    def monitor(self, **kwargs):
        return ping.PingMonitor({'compute-1': '127.0.0.11'}, self.reporter,
                                probe=self.probe, **kwargs)

    def checks(self, monitor, count):
        for _ in range(count):
            monitor.check('compute-1')

    def test_down_after_n_misses_then_up(self):
        m = self.monitor(misses_before_down=3)
        self.checks(m, 5)
        self.assertEqual('up', m.states['compute-1'])
        self.assertEqual([], self.reporter.reports)  # up from the start

        self.probe.alive['127.0.0.11'] = False
        self.checks(m, 2)
        self.assertEqual([], self.reporter.reports)
        self.assertEqual(2, m.misses['compute-1'])
        before = time.time()
        m.check('compute-1')
        after = time.time()
        self.assertEqual([('compute-1', 'down')], self.reporter.statuses())
        self.assertEqual('down', m.state('compute-1'))
        detected = m.detected_at['compute-1']
        self.assertTrue(before <= detected <= after)
        down = self.reporter.reports[0]
        self.assertEqual('compute.host.down', down['type'])
        self.assertEqual('ping', down['details']['monitor'])
        self.assertEqual('critical', down['details']['severity'])
        self.assertIn('127.0.0.11', down['details']['cause'])
        self.assertEqual(
            datetime.datetime.fromtimestamp(detected, datetime.timezone.utc)
            .replace(tzinfo=None),
            timeutils.normalize_time(timeutils.parse_isotime(down['time'])))

        # Still down: never reported again.
        self.checks(m, 20)
        self.assertEqual(1, len(self.reporter.reports))
        self.assertEqual(detected, m.detected_at['compute-1'])

        self.probe.alive['127.0.0.11'] = True
        m.check('compute-1')
        self.assertEqual([('compute-1', 'down'), ('compute-1', 'up')],
                         self.reporter.statuses())
        up = self.reporter.reports[1]
        self.assertEqual('compute.host.up', up['type'])
        self.assertEqual('cleared', up['details']['severity'])
        self.assertNotEqual(down['details']['monitor_event_id'],
                            up['details']['monitor_event_id'])
        self.assertIn('compute-1', m.recovered_at)
        self.checks(m, 20)
        self.assertEqual(2, len(self.reporter.reports))

        # And down again, once.
        self.probe.alive['127.0.0.11'] = False
        self.checks(m, 10)
        self.assertEqual(['down', 'up', 'down'],
                         [s for _, s in self.reporter.statuses()])

    def test_misses_must_be_in_a_row(self):
        m = self.monitor(misses_before_down=3)
        for alive in (True, False, False, True, False, False, True, False):
            self.probe.alive['127.0.0.11'] = alive
            m.check('compute-1')
        self.assertEqual([], self.reporter.reports)
        self.assertEqual('up', m.states['compute-1'])

    def test_dead_from_the_start_is_reported_down(self):
        self.probe.alive['127.0.0.11'] = False
        m = self.monitor(misses_before_down=2)
        m.check('compute-1')
        self.assertIsNone(m.states['compute-1'])
        m.check('compute-1')
        self.assertEqual([('compute-1', 'down')], self.reporter.statuses())

    def test_severity(self):
        self.probe.alive['127.0.0.11'] = False
        m = self.monitor(misses_before_down=1, severity='major')
        m.check('compute-1')
        self.assertEqual('major',
                         self.reporter.reports[0]['details']['severity'])

    def test_probe_error_is_not_a_miss(self):
        m = self.monitor(misses_before_down=1)
        m.check('compute-1')
        self.probe.error = OSError('EPERM from a local firewall')
        self.checks(m, 5)
        self.assertEqual([], self.reporter.reports)
        self.assertEqual(0, m.misses['compute-1'])
        self.assertEqual('up', m.states['compute-1'])

    def test_unsent_report_is_sent_again_unchanged(self):
        m = self.monitor(misses_before_down=2)
        m.check('compute-1')
        self.probe.alive['127.0.0.11'] = False
        self.reporter.failures = 2
        self.checks(m, 2)   # decided down, sending fails
        self.assertEqual('up', m.states['compute-1'])
        detected = m.detected_at['compute-1']
        m.check('compute-1')  # fails again
        m.check('compute-1')  # sent
        self.assertEqual([('compute-1', 'down')], self.reporter.statuses())
        self.assertEqual('down', m.states['compute-1'])
        self.assertEqual(detected, m.detected_at['compute-1'])
        sent = self.reporter.reports[0]
        self.assertEqual(
            datetime.datetime.fromtimestamp(detected, datetime.timezone.utc)
            .replace(tzinfo=None),
            timeutils.normalize_time(timeutils.parse_isotime(sent['time'])))
        self.checks(m, 5)
        self.assertEqual(1, len(self.reporter.reports))

    def test_unsent_report_dropped_when_state_returns(self):
        m = self.monitor(misses_before_down=1)
        m.check('compute-1')
        self.probe.alive['127.0.0.11'] = False
        self.reporter.failures = 1
        m.check('compute-1')  # down decided, not sent
        self.probe.alive['127.0.0.11'] = True
        self.checks(m, 5)     # back up before the down went out
        self.assertEqual([], self.reporter.reports)
        self.assertEqual('up', m.states['compute-1'])

    def test_arguments_checked(self):
        self.assertRaises(ValueError, ping.PingMonitor, {}, self.reporter,
                          probe=self.probe)
        self.assertRaises(ValueError, self.monitor, misses_before_down=0)
        self.assertRaises(ValueError, self.monitor, timeout=0)
        self.assertRaises(ValueError, self.monitor, interval=-1)
        self.assertRaises(report.InvalidReport, ping.PingMonitor,
                          {'': '127.0.0.11'}, self.reporter, probe=self.probe)


class PingMonitorThreadsTest(base.BaseTestCase):
    """The monitor running in its threads, with an injected probe."""

    def test_detects_one_host_of_two(self):
        reporter = FakeReporter()
        probe = ScriptedProbe({'127.0.0.11': True, '127.0.0.12': True})
        m = ping.PingMonitor({'compute-1': '127.0.0.11',
                              'compute-2': '127.0.0.12'}, reporter,
                             interval=0.005, timeout=0.005,
                             misses_before_down=3, probe=probe)
        m.start()
        self.addCleanup(m.stop, DEADLINE)
        self.assertTrue(probe.wait_calls('127.0.0.12', 3))

        probe.alive['127.0.0.12'] = False
        cut = probe.count('127.0.0.12')
        self.assertTrue(reporter.wait_for(lambda: reporter.reports))
        self.assertEqual([('compute-2', 'down')], reporter.statuses())
        # At least 3 probes after the cut (one may have been under way).
        self.assertGreaterEqual(probe.count('127.0.0.12') - cut, 2)

        # Many more probes of the dead host: still one report.
        seen = probe.count('127.0.0.12')
        self.assertTrue(probe.wait_calls('127.0.0.12', seen + 20))
        self.assertEqual([('compute-2', 'down')], reporter.statuses())

        probe.alive['127.0.0.12'] = True
        self.assertTrue(reporter.wait_for(lambda: len(reporter.reports) >= 2))
        seen = probe.count('127.0.0.12')
        self.assertTrue(probe.wait_calls('127.0.0.12', seen + 20))
        self.assertEqual([('compute-2', 'down'), ('compute-2', 'up')],
                         reporter.statuses())
        self.assertEqual('up', m.states['compute-1'])

        m.stop(DEADLINE)
        self.assertIsNone(m._thread)

    def test_stop_ends_run(self):
        stop = threading.Event()
        probe = ScriptedProbe({'127.0.0.11': True})
        m = ping.PingMonitor({'compute-1': '127.0.0.11'}, FakeReporter(),
                             interval=1000, probe=probe)
        runner = threading.Thread(target=m.run, args=(stop,))
        runner.start()
        self.assertTrue(probe.wait_calls('127.0.0.11', 1))
        stop.set()
        runner.join(DEADLINE)
        self.assertFalse(runner.is_alive())


class IcmpProbeTest(base.BaseTestCase):
    """The real ICMP echo, on loopback only."""

    def _probe(self):
        probe = icmp.IcmpProbe()
        self.addCleanup(probe.close)
        try:
            probe.check('127.0.0.1')
        except icmp.ProbeUnavailable as e:
            self.skipTest(str(e))
        return probe

    def test_loopback_answers(self):
        probe = self._probe()
        self.assertTrue(probe('127.0.0.1', 1.0))
        self.assertTrue(probe('127.0.0.1', 1.0))

    def test_ipv6_loopback_answers(self):
        if not socket.has_ipv6:
            self.skipTest('no IPv6')
        probe = self._probe()
        try:
            probe.check('::1')
        except (OSError, ValueError) as e:
            self.skipTest('no IPv6 loopback: %s' % e)
        self.assertTrue(probe('::1', 1.0))

    def test_unresolvable(self):
        probe = icmp.IcmpProbe()
        self.addCleanup(probe.close)
        self.assertRaises(ValueError, probe.sockaddr, 'no-such-host.invalid')

    def test_monitor_sees_loopback_up_and_never_down(self):
        reporter = FakeReporter()
        try:
            m = ping.PingMonitor({'localhost-test': '127.0.0.1'}, reporter,
                                 interval=0.01, timeout=1.0,
                                 misses_before_down=1)
        except icmp.ProbeUnavailable as e:
            self.skipTest(str(e))
        m.start()
        self.addCleanup(m.stop, DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while (m.probes['localhost-test'] < 30 and
               time.monotonic() < deadline):
            time.sleep(0.01)
        m.stop(DEADLINE)
        self.assertGreaterEqual(m.probes['localhost-test'], 30)
        self.assertEqual('up', m.states['localhost-test'])
        self.assertEqual(0, m.misses['localhost-test'])
        self.assertEqual([], reporter.reports)
        self.assertNotIn('localhost-test', m.detected_at)
