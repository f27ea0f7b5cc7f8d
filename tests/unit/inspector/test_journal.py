"""The fault journal shared by all agents, on PostgreSQL and MariaDB."""

from oslotest import base
import testscenarios

from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import journal as journal_mod
from doctor_ext.inspector import resource_map
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios


def report(host='compute-1', message_id=None):
    return events.make_event('compute.host.down', {
        'hostname': host, 'monitor_event_id': 'mon-1', 'cause': 'ping',
        'severity': 'critical'}, message_id=message_id)


VMS = [resource_map.Instance('vm-%d' % i, 'p%d' % (i % 2), 'u1',
                             'compute-1', 'active') for i in range(3)]


class TestJournal(base.BaseTestCase):
    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(self.backend))

    def agent(self, name, lease=15.0):
        store = store_mod.AodhStore(doctor_fixtures.store_conf(self.db.url))
        self.addCleanup(store.dispose)
        return journal_mod.FaultJournal(store, name, lease=lease)

    def test_one_fault_per_host_whichever_agent_hears(self):
        a, b = self.agent('a'), self.agent('b')
        status, fault = a.open('compute-1', report(), VMS, True, 3600)
        self.assertEqual('new', status)
        self.assertEqual((journal_mod.NOTIFYING, journal_mod.PENDING),
                         (fault.state, fault.fence))
        # Another report of the same host reaches the other agent.
        status, known = b.open('compute-1', report(), VMS, True, 3600)
        self.assertEqual(('repeat', fault.fault_id),
                         (status, known.fault_id))
        # Back up: the next fault is a new one.
        self.assertTrue(b.recovered('compute-1'))
        self.assertFalse(b.recovered('compute-1'))
        self.assertEqual('new', a.open('compute-1', report(), VMS, True,
                                       3600)[0])

    def test_redelivered_report_is_the_same_fault(self):
        a, b = self.agent('a', lease=0.01), self.agent('b')
        same = report(message_id='msg-1')
        _, fault = a.open('compute-1', same, VMS, True, 3600)
        # Redelivered to another agent once the first one's lease ran
        # out: taken over, with its instances.
        doctor_fixtures.poll(
            lambda: b.open('compute-1', same, None, True, 3600)[1].open,
            10, 'the lease to run out')
        status, again = b.open('compute-1', same, None, True, 3600)
        self.assertEqual(('redelivered', fault.fault_id),
                         (status, again.fault_id))
        self.assertEqual(sorted(i.instance_id for i in VMS),
                         sorted(i.instance_id for i in again.instances))
        # Once notified and fenced it is closed: nothing left to do.
        b.notified(again)
        b.fenced(again, True)
        self.assertFalse(a.open('compute-1', same, VMS, True,
                                3600)[1].open)

    def test_expired_faults_taken_over_once(self):
        dead, a, b = (self.agent('dead', lease=0.01), self.agent('a'),
                      self.agent('b'))
        _, fault = dead.open('compute-1', report(), VMS, True, 3600)
        _, done = dead.open('compute-2', report('compute-2'), [], False,
                            3600)
        dead.notified(done)
        taken = doctor_fixtures.poll(a.take_expired, 10, 'the takeover')
        self.assertEqual([fault.fault_id], [f.fault_id for f in taken])
        self.assertEqual([], b.take_expired())
        # a renews while it works; nobody else takes it.
        self.assertEqual(1, a.renew([fault.fault_id]))
        self.assertEqual(0, b.renew([fault.fault_id]))

    def test_fencing_progress_survives_the_agent(self):
        a = self.agent('a')
        _, fault = a.open('compute-1', report(), VMS, True, 3600)
        a.forced_down(fault, True)
        a.reset(fault, 'vm-0', True)
        a.reset(fault, 'vm-1', False)
        seen = self.agent('b').get(fault.fault_id)
        self.assertEqual(journal_mod.DONE, seen.forced_down)
        self.assertEqual({'vm-0': journal_mod.DONE,
                          'vm-1': journal_mod.FAILED,
                          'vm-2': journal_mod.PENDING}, seen.resets)

    def test_unresolved_fault_kept_and_retried(self):
        a = self.agent('a')
        status, fault = a.open('compute-1', report(), None, True, 3600)
        self.assertEqual(journal_mod.RESOLVING, fault.state)
        a.unresolved(fault, 'Nova unreachable', retry_in=0.01)
        taken, = doctor_fixtures.poll(self.agent('b').take_expired, 10,
                                      'the retry to be due')
        self.assertEqual((journal_mod.RESOLVING, 1),
                         (taken.state, taken.attempts))
        a.resolved(taken, VMS[:1])
        self.assertEqual(['vm-0'], [i.instance_id for i in a.get(
            fault.fault_id).instances])

    def test_nova_update_recognised_once_by_any_agent(self):
        a, b = self.agent('a'), self.agent('b')
        a.open('compute-1', report(), VMS, True, 3600)
        self.assertTrue(b.nova_update_seen('vm-1'))
        self.assertFalse(a.nova_update_seen('vm-1'))
        self.assertFalse(a.nova_update_seen('vm-unrelated'))
