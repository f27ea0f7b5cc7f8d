"""The storm guard and the fence ledger, on PostgreSQL and MariaDB."""

from concurrent import futures

from oslotest import base
import testscenarios

from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import guard
from doctor_ext.inspector import journal as journal_mod
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios


def report(host):
    return events.make_event('compute.host.down', {
        'hostname': host, 'severity': 'critical'})


class TestGuard(base.BaseTestCase):
    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(self.backend))

    def agent(self, name, **opts):
        conf = doctor_fixtures.store_conf(self.db.url)
        guard.register_opts(conf)
        for key, value in opts.items():
            conf.set_override(key, value, guard.GROUP)
        store = store_mod.AodhStore(conf)
        self.addCleanup(store.dispose)
        return (guard.FenceLedger(conf, store),
                journal_mod.FaultJournal(store, name, lease=0.01), store)

    def faults(self, journal, hosts):
        return [journal.open(h, report(h), [], True, 3600)[1]
                for h in hosts]

    def test_five_agents_at_once_admit_no_more_than_the_bound(self):
        agents = [self.agent('agent-%d' % i, storm_max_hosts=2)
                  for i in range(5)]
        faults = self.faults(agents[0][1], ['h%d' % i for i in range(5)])
        with futures.ThreadPoolExecutor(5) as pool:
            states = list(pool.map(
                lambda pair: pair[0][0].admit(pair[1], None, 0)[0],
                zip(agents, faults)))
        self.assertEqual(2, states.count(guard.ADMITTED), states)
        self.assertEqual(3, states.count(guard.HELD), states)
        # Held faults are closed in the journal: no agent resumes them.
        held = [f for f, s in zip(faults, states) if s == guard.HELD]
        for f in held:
            self.assertEqual(guard.HELD,
                             agents[0][1].get(f.fault_id).fence)
        # Asked again (a resumed fault), the answer is the recorded one.
        self.assertEqual(states[0], agents[1][0].admit(
            faults[0], None, 0)[0])

    def test_group_percent(self):
        ledger, journal, _ = self.agent('a', storm_max_hosts=10,
                                        storm_max_percent=50)
        a, b, c = self.faults(journal, ['r1', 'r2', 'r3'])
        self.assertEqual(guard.ADMITTED, ledger.admit(a, 'rack', 4)[0])
        self.assertEqual(guard.ADMITTED, ledger.admit(b, 'rack', 4)[0])
        state, why = ledger.admit(c, 'rack', 4)
        self.assertEqual(guard.HELD, state)
        self.assertIn('2 of the 4 host(s) of group rack', why)
        # Another group is not affected.
        d, = self.faults(journal, ['other'])
        self.assertEqual(guard.ADMITTED, ledger.admit(d, 'rack-2', 4)[0])

    def test_confirm_hands_a_held_fault_back_to_the_agents(self):
        ledger, journal, store = self.agent('a', storm_max_hosts=0)
        fault, = self.faults(journal, ['h1'])
        journal.notified(fault)
        self.assertEqual(guard.HELD, ledger.admit(fault, None, 0)[0])
        self.assertEqual([], journal.take_expired())
        self.assertEqual(0, guard.confirm(store, 'nope', 'tester'))
        self.assertEqual(1, guard.confirm(store, 'h1', 'tester'))
        taken = doctor_fixtures.poll(journal.take_expired, 10,
                                     'the confirmed fault to be taken')
        self.assertEqual([fault.fault_id], [f.fault_id for f in taken])
        self.assertEqual(journal_mod.PENDING, taken[0].fence)
        # Confirmed: admitted whatever the count.
        self.assertEqual(guard.ADMITTED, ledger.admit(fault, None, 0)[0])
        ledger.finish(fault, guard.POWERED_OFF, attempts=2)
        row = ledger.get(fault.fault_id)
        self.assertEqual((guard.POWERED_OFF, 2, 'tester'),
                         (row['state'], row['attempts'],
                          row['confirmed_by']))
        self.assertEqual(guard.POWERED_OFF,
                         guard.listing(store)[0]['state'])
