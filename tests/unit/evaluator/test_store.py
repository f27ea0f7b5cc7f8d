"""Claims in Aodh's database, on PostgreSQL and MariaDB."""

import datetime
import json
import threading

from oslotest import base
import testscenarios

from doctor_ext.evaluator import store as store_mod
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios


class StoreTest(base.BaseTestCase):
    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(
            self.backend))

    def store(self):
        store = store_mod.AodhStore(doctor_fixtures.store_conf(self.db.url))
        self.addCleanup(store.dispose)
        return store


class TestClaim(StoreTest):

    def test_moves_free_rows_with_their_reasons(self):
        free = [self.db.add_alarm() for _ in range(3)]
        taken = self.db.add_alarm(state='alarm')
        store = self.store()
        reasons = {a: 'reason "%s" {x}' % a for a in free + [taken]}
        self.assertEqual(set(free), store.claim(list(reasons.items())))
        for a in free:
            self.assertEqual('alarm', self.db.state(a))
            self.assertEqual(reasons[a], self.db.row(a)['state_reason'])
        self.assertEqual('', self.db.row(taken)['state_reason'])
        # Claimed once: a second claim moves nothing.
        self.assertEqual(set(), store.claim(list(reasons.items())))

    def test_overlapping_claims_of_two_agents_split_the_rows(self):
        """Each row is won once; neither agent deadlocks nor fails."""
        alarms = sorted(self.db.add_alarm() for _ in range(200))
        stores = [self.store(), self.store()]
        won, errors = [set(), set()], []
        start = threading.Barrier(2)

        def agent(n):
            # Opposite orders, overlapping sets, in several claims each.
            mine = alarms if n == 0 else list(reversed(alarms))
            start.wait(10)
            try:
                for i in range(0, len(mine), 50):
                    chunk = mine[i:i + 80]
                    won[n] |= stores[n].claim([(a, 'agent %d' % n)
                                               for a in chunk])
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=agent, args=(n,))
                   for n in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual([], errors)
        self.assertEqual(set(), won[0] & won[1])
        self.assertEqual(set(alarms), won[0] | won[1])
        for n in (0, 1):
            for a in sorted(won[n])[:10]:
                self.assertEqual('agent %d' % n,
                                 self.db.row(a)['state_reason'])


class TestLoad(StoreTest):

    def test_event_alarms_page_by_page(self):
        wanted = {self.db.add_alarm() for _ in range(5)}
        self.db.add_alarm(enabled=False)
        store = self.store()
        got = list(store.event_alarms(page=2))
        self.assertEqual(sorted(wanted), sorted(r['alarm_id'] for r in got))
        self.assertEqual(sorted(wanted), sorted(
            r['alarm_id'] for r in store.event_alarms(page=5)))


class TestHistory(StoreTest):

    def test_rows_written_once_as_aodh_writes_them(self):
        a = self.db.add_alarm(project_id='p1')
        store = self.store()
        when = datetime.datetime(2026, 11, 24, 6, 0, 0, 123456)
        change = {'event_id': 'e-1', 'alarm_id': a, 'project_id': 'p1',
                  'severity': 'critical', 'reason': 'reason "x"',
                  'timestamp': when}
        store.record_history([change, dict(change)])
        store.record_history([change, dict(change, event_id='e-2')])
        rows = sorted(self.db.history(a), key=lambda r: r['event_id'])
        self.assertEqual(['e-1', 'e-2'], [r['event_id'] for r in rows])
        row = rows[0]
        self.assertEqual(('p1', None, None, 'state transition', 'critical',
                          when),
                         (row['on_behalf_of'], row['project_id'],
                          row['user_id'], row['type'], row['severity'],
                          row['timestamp']))
        self.assertEqual({'state': 'alarm',
                          'transition_reason': 'reason "x"'},
                         json.loads(row['detail']))
