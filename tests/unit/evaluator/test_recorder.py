"""The recorder: background writes, batched while they come fast, bounded."""

import concurrent.futures
import datetime
import threading

from oslotest import base
import testscenarios

from doctor_ext.evaluator import recorder as recorder_mod
from doctor_ext.evaluator import store as store_mod
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios


class Store:
    def __init__(self):
        self.batches = []
        self.fail = threading.Event()

    def record_history(self, changes):
        if self.fail.is_set():
            raise store_mod.StoreUnavailable('down')
        self.batches.append([c['alarm_id'] for c in changes])


def change(alarm_id):
    return {'alarm_id': alarm_id, 'project_id': 'p', 'reason': 'r',
            'timestamp': None}


class TestRecorder(base.BaseTestCase):

    def make(self, **kwargs):
        self.store = Store()
        recorder = recorder_mod.Recorder(self.store, **kwargs)
        self.addCleanup(recorder.stop)
        return recorder

    def test_a_write_after_a_quiet_spell_starts_at_once(self):
        # A linger of a minute would fail the wait if it applied here.
        recorder = self.make(linger=60)
        self.assertTrue(recorder.history(change('a1')).result(10))
        self.assertEqual([['a1']], self.store.batches)

    def test_writes_back_to_back_are_batched(self):
        recorder = self.make(linger=60, batch=3)
        recorder.history(change('a1')).result(10)
        second = recorder.history(change('a2'))
        # The previous write was just now: a2 waits for company...
        self.assertRaises(concurrent.futures.TimeoutError,
                          second.result, 0.3)
        recorder.history(change('a3'))
        recorder.history(change('a4'))
        # ...and a full batch goes at once, as one write.
        self.assertTrue(second.result(10))
        self.assertEqual([['a1'], ['a2', 'a3', 'a4']], self.store.batches)

    def test_database_down_rows_kept_and_written_later(self):
        recorder = self.make(linger=0, backoff=0.01, backoff_max=0.05)
        self.store.fail.set()
        future = recorder.history(change('a1'))
        self.assertRaises(concurrent.futures.TimeoutError, future.result,
                          0.2)
        self.assertFalse(recorder.healthy)
        self.store.fail.clear()
        self.assertTrue(future.result(10))
        self.assertTrue(recorder.healthy)
        self.assertEqual([['a1']], self.store.batches)


class RecorderDbTest(base.BaseTestCase):
    """The bounds and the bad row, on PostgreSQL and MariaDB."""

    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(
            self.backend))
        self.store = store_mod.AodhStore(
            doctor_fixtures.store_conf(self.db.url), bounded=False)
        self.addCleanup(self.store.dispose)
        self.now = [1000.0]

    def make(self, store=None, **kwargs):
        kwargs.setdefault('linger', 0)
        recorder = recorder_mod.Recorder(
            store or self.store, backoff=0.01, backoff_max=0.05,
            clock=lambda: self.now[0], **kwargs)
        self.addCleanup(recorder.stop)
        return recorder

    def down(self):
        """A store whose database is not there (connection refused)."""
        store = store_mod.AodhStore(doctor_fixtures.store_conf(
            'postgresql://nobody@127.0.0.1:1/none'), bounded=False)
        self.addCleanup(store.dispose)
        return store

    def change(self, alarm_id, n=0, **kwargs):
        return dict({'event_id': 'h-%s-%d' % (alarm_id[:8], n),
                     'alarm_id': alarm_id, 'project_id': 'p1',
                     'user_id': 'u1', 'severity': 'critical',
                     'reason': 'r', 'timestamp': datetime.datetime(
                         2026, 11, 30, 9, 0, 0)}, **kwargs)

    def owed(self, alarm_id):
        row = {'id': 'o-' + alarm_id[:30], 'alarm_id': alarm_id,
               'project_id': 'p1', 'action': 'http://vnfm/',
               'payload': '{}'}
        self.store.claim([], [row])
        return row['id']

    def outbox(self, owed_id):
        from doctor_ext.db import models
        with self.db.engine.connect() as conn:
            return conn.execute(models.outbox.select().where(
                models.outbox.c.id == owed_id)).one()

    def test_a_refused_row_is_dropped_alone(self):
        alarms = [self.db.add_alarm() for _ in range(4)]
        good = [self.owed(a) for a in alarms[:2]]
        bad_outcome = self.owed(alarms[2])
        recorder = self.make()
        # One batch: queued while the writer cannot take it.
        with recorder._cond:
            recorder.deferred_claim(alarms[3], 'fired while down')
            futures = [recorder.history(self.change(a)) for a in alarms[:2]]
            # Longer than Aodh's alarm_history.severity (50).
            bad = recorder.history(self.change(alarms[2], severity='x' * 60))
            futures.append(recorder.history(self.change(alarms[3])))
            recorder.outcome(good[0], ('delivered', None))
            # Longer than doctor_outbox.error (255).
            recorder.outcome(bad_outcome, ('given_up', 'e' * 300))
            recorder.outcome(good[1], ('given_up', 'HTTP 500'))
        self.assertTrue(recorder.wait_idle(20))
        for f in futures:
            self.assertTrue(f.result(0))
        self.assertIsInstance(bad.exception(0), store_mod.BadRecord)
        for a in alarms[:2] + alarms[3:]:
            self.assertEqual(1, len(self.db.history(a)))
        self.assertEqual([], self.db.history(alarms[2]))
        # The claim of the batch is written, not dropped with the bad row.
        self.assertEqual('alarm', self.db.state(alarms[3]))
        self.assertEqual(('delivered', 'given_up', 'pending'), tuple(
            self.outbox(i).state for i in good + [bad_outcome]))
        self.assertEqual({recorder_mod.REFUSED: 2}, recorder.dropped)
        self.assertTrue(recorder.healthy)

    def test_memory_bound_drops_the_oldest_rows_never_claims(self):
        alarms = [self.db.add_alarm() for _ in range(5)]
        recorder = self.make(store=self.down(), max_pending=3)
        futures = [recorder.history(self.change(a)) for a in alarms]
        for a in alarms + alarms:
            # Twice each: one deferred claim per alarm is kept.
            recorder.deferred_claim(a, 'fired while down')
        doctor_fixtures.poll(lambda: not recorder.healthy, 10,
                             'a failed write')
        self.assertEqual(3 + 5, recorder.pending)
        self.assertEqual({recorder_mod.FULL: 2}, recorder.dropped)
        for f in futures[:2]:
            self.assertIsInstance(f.exception(10), recorder_mod.Dropped)
        recorder._store = self.store
        for f in futures[2:]:
            self.assertTrue(f.result(20))
        self.assertTrue(recorder.wait_idle(20))
        self.assertEqual([0, 0, 1, 1, 1],
                         [len(self.db.history(a)) for a in alarms])
        self.assertEqual(['alarm'] * 5, [self.db.state(a) for a in alarms])

    def test_retries_bounded_in_time(self):
        alarms = [self.db.add_alarm() for _ in range(2)]
        owed = self.owed(alarms[0])
        recorder = self.make(store=self.down(), max_age=60)
        old = recorder.history(self.change(alarms[0]))
        recorder.outcome(owed, ('delivered', None))
        recorder.deferred_claim(alarms[0], 'fired while down')
        doctor_fixtures.poll(lambda: not recorder.healthy, 10,
                             'a failed write')
        self.now[0] += 61
        new = recorder.history(self.change(alarms[1]))
        self.assertIsInstance(old.exception(10), recorder_mod.Dropped)
        doctor_fixtures.poll(lambda: recorder.dropped[recorder_mod.EXPIRED]
                             == 2, 10, 'the outcome expired')
        recorder._store = self.store
        self.assertTrue(new.result(20))
        self.assertTrue(recorder.wait_idle(20))
        self.assertEqual([0, 1], [len(self.db.history(a)) for a in alarms])
        # The claim outlives the bound; the outcome's row is left to be
        # delivered again.
        self.assertEqual('alarm', self.db.state(alarms[0]))
        self.assertEqual('pending', self.outbox(owed).state)
