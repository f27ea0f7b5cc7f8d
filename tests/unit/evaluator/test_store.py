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


class TestOutbox(StoreTest):
    """A claimed alarm always has its outbox rows, written with the claim."""

    def owed(self, alarm_id, n=0):
        return {'id': '%s-%d' % (alarm_id[:20], n), 'alarm_id': alarm_id,
                'project_id': 'p1', 'action': 'http://vnfm/%d' % n,
                'payload': '{"alarm_id": "%s"}' % alarm_id}

    def outbox(self):
        from doctor_ext.db import models
        with self.db.engine.connect() as conn:
            return {r.id: r for r in conn.execute(
                models.outbox.select())}

    def test_rows_of_won_alarms_and_of_repeating_ones(self):
        free, taken = self.db.add_alarm(), self.db.add_alarm(state='alarm')
        store = self.store()
        until = datetime.datetime(2030, 1, 1)
        won = store.claim([(free, 'r'), (taken, 'r')],
                          [self.owed(free), self.owed(free, 1),
                           self.owed(taken), self.owed('repeating-1')],
                          lease=('agent-a', until))
        self.assertEqual({free}, won)
        rows = self.outbox()
        self.assertEqual({self.owed(free)['id'], self.owed(free, 1)['id'],
                          self.owed('repeating-1')['id']}, set(rows))
        for row in rows.values():
            self.assertEqual(('pending', 'agent-a', until, 0),
                             (row.state, row.lease_owner, row.lease_until,
                              row.attempts))
        # The same firing evaluated again owes nothing new.
        self.assertEqual(set(), store.claim(
            [(free, 'r')], [self.owed(free), self.owed('repeating-1')]))
        self.assertEqual(3, len(self.outbox()))

    def test_history_rows_with_the_claim(self):
        free, taken = self.db.add_alarm(), self.db.add_alarm(state='alarm')
        repeating = self.db.add_alarm(repeat_actions=True)
        when = datetime.datetime(2026, 11, 30, 9, 0, 0)

        def change(alarm_id, n):
            return {'event_id': 'h-%s-%d' % (alarm_id[:8], n),
                    'alarm_id': alarm_id, 'project_id': 'p1',
                    'user_id': 'u1', 'severity': 'critical',
                    'reason': 'r', 'timestamp': when}
        self.store().claim([(free, 'r'), (taken, 'r')], [], history=[
            change(free, 1), change(taken, 1), change(repeating, 1)])
        # The moved alarm's row, and the unclaimed (repeating) one's; not
        # the row of the alarm another agent had moved.
        self.assertEqual(['h-%s-1' % free[:8]],
                         [r['event_id'] for r in self.db.history(free)])
        self.assertEqual([], self.db.history(taken))
        self.assertEqual(1, len(self.db.history(repeating)))

    def test_outcomes_recorded(self):
        free = self.db.add_alarm()
        store = self.store()
        store.claim([(free, 'r')], [self.owed(free), self.owed(free, 1)],
                    lease=('agent-a', datetime.datetime(2030, 1, 1)))
        store.finish_outbox([(self.owed(free)['id'], ('delivered', None)),
                             (self.owed(free, 1)['id'],
                              ('given_up', 'HTTP 500 after 4 attempts'))])
        rows = self.outbox()
        self.assertEqual(
            {('delivered', None, None), ('given_up',
                                         'HTTP 500 after 4 attempts', None)},
            {(r.state, r.error, r.lease_owner) for r in rows.values()})

    def test_no_rows_without_the_claim(self):
        # An outbox row the database refuses: the claim is undone too.
        free = self.db.add_alarm()
        store = self.store()
        bad = dict(self.owed(free), action=None)   # NOT NULL violated
        self.assertRaises(store_mod.StoreUnavailable, store.claim,
                          [(free, 'r')], [bad])
        self.assertNotEqual('alarm', self.db.state(free))
        self.assertEqual({}, self.outbox())


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
                  'user_id': 'u1', 'severity': 'critical',
                  'reason': 'reason "x"', 'timestamp': when}
        store.record_history([change, dict(change)])
        store.record_history([change, dict(change, event_id='e-2')])
        rows = sorted(self.db.history(a), key=lambda r: r['event_id'])
        self.assertEqual(['e-1', 'e-2'], [r['event_id'] for r in rows])
        row = rows[0]
        # The alarm's project and user, as Aodh's evaluator writes them.
        self.assertEqual(('p1', 'p1', 'u1', 'state transition', 'critical',
                          when),
                         (row['on_behalf_of'], row['project_id'],
                          row['user_id'], row['type'], row['severity'],
                          row['timestamp']))
        self.assertEqual({'state': 'alarm',
                          'transition_reason': 'reason "x"'},
                         json.loads(row['detail']))
