"""The recorder: background writes, batched while they come fast."""

import concurrent.futures
import threading

from oslotest import base

from doctor_ext.evaluator import recorder as recorder_mod
from doctor_ext.evaluator import store as store_mod


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
