"""Concurrent claims sharing one transaction."""

import threading

from oslotest import base

from doctor_ext.evaluator import claims
from tests import fixtures as doctor_fixtures


def wait_until(predicate):
    return doctor_fixtures.poll(predicate, 10, 'the claim group')


class FakeStore:
    """A store whose first claim is held until the test releases it."""

    def __init__(self, taken=()):
        self.calls = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self.taken = set(taken)
        self.fail = None

    def claim(self, transitions, owed=(), history=()):
        self.calls.append((list(transitions), list(owed)))
        if len(self.calls) == 1:
            self.held.set()
            self.hold.wait(10)
        if self.fail is not None:
            raise self.fail
        ids = [i for i, _ in transitions]
        won = {i for i in ids if i not in self.taken}
        self.taken.update(ids)
        return won


class TestClaimGroup(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.group = claims.ClaimGroup()
        self.store = FakeStore()
        self.results = {}

    def start(self, name, transitions, owed=()):
        def run():
            try:
                self.results[name] = self.group.claim(
                    self.store.claim, transitions, owed)
            except Exception as e:
                self.results[name] = e
        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(thread.join, 10)
        return thread

    def test_alone_runs_at_once(self):
        self.store.hold.set()
        self.assertEqual({'a1'}, self.group.claim(
            self.store.claim, [('a1', 'r1')]))
        self.assertEqual([([('a1', 'r1')], [])], self.store.calls)

    def test_callers_queued_behind_a_claim_share_the_next(self):
        first = self.start('first', [('a1', 'r1')])
        self.assertTrue(self.store.held.wait(10))
        waiting = [self.start('w%d' % i, [('b%d' % i, 'r')])
                   for i in range(5)]
        wait_until(lambda: self.group.queued == 5)
        self.store.hold.set()
        for t in [first] + waiting:
            t.join(10)
        # Two claims for six callers, and each got its own alarm.
        self.assertEqual(2, len(self.store.calls))
        self.assertEqual(sorted('b%d' % i for i in range(5)),
                         sorted(i for i, _ in self.store.calls[1][0]))
        self.assertEqual({'a1'}, self.results['first'])
        for i in range(5):
            self.assertEqual({'b%d' % i}, self.results['w%d' % i])

    def test_an_alarm_wanted_twice_goes_to_the_first(self):
        self.start('first', [('a1', 'r1')])
        self.assertTrue(self.store.held.wait(10))
        self.start('one', [('b1', 'from one')])
        wait_until(lambda: self.group.queued == 1)
        self.start('two', [('b1', 'from two'), ('b2', 'from two')])
        wait_until(lambda: self.group.queued == 2)
        self.store.hold.set()
        wait_until(lambda: len(self.results) == 3)
        self.assertEqual([('b1', 'from one'), ('b2', 'from two')],
                         self.store.calls[1][0])
        self.assertEqual({'b1'}, self.results['one'])
        self.assertEqual({'b2'}, self.results['two'])

    def test_owed_rows_go_with_the_caller_the_alarm_goes_to(self):
        self.start('first', [('a1', 'r1')])
        self.assertTrue(self.store.held.wait(10))
        self.start('one', [('b1', 'from one')],
                   [{'id': 'o1', 'alarm_id': 'b1'},
                    {'id': 'rep1', 'alarm_id': 'rep'}])
        wait_until(lambda: self.group.queued == 1)
        self.start('two', [('b1', 'from two')],
                   [{'id': 'o2', 'alarm_id': 'b1'},
                    {'id': 'rep2', 'alarm_id': 'rep'}])
        wait_until(lambda: self.group.queued == 2)
        self.store.hold.set()
        wait_until(lambda: len(self.results) == 3)
        # The alarm and its outbox row are the first caller's; rows of
        # alarms nobody claims (repeating ones) are all written.
        self.assertEqual(['o1', 'rep1', 'rep2'],
                         [o['id'] for o in self.store.calls[1][1]])
        self.assertEqual({'b1'}, self.results['one'])
        self.assertEqual(set(), self.results['two'])

    def test_an_error_reaches_every_caller_of_that_claim_only(self):
        self.start('first', [('a1', 'r1')])
        self.assertTrue(self.store.held.wait(10))
        self.store.fail = RuntimeError('database gone')
        self.start('w1', [('b1', 'r')])
        self.start('w2', [('b2', 'r')])
        wait_until(lambda: self.group.queued == 2)
        self.store.hold.set()
        wait_until(lambda: len(self.results) == 3)
        for name in ('first', 'w1', 'w2'):
            self.assertIsInstance(self.results[name], RuntimeError)
        # The group is free again: the next caller claims on its own.
        self.store.fail = None
        self.assertEqual({'c1'}, self.group.claim(self.store.claim,
                                                  [('c1', 'r')]))

    def test_batches_are_bounded(self):
        self.group = claims.ClaimGroup(max_batch=3)
        self.start('first', [('a1', 'r1')])
        self.assertTrue(self.store.held.wait(10))
        for i in range(4):
            self.start('w%d' % i, [('b%d-1' % i, 'r'), ('b%d-2' % i, 'r')])
            wait_until(lambda: self.group.queued == i + 1)
        self.store.hold.set()
        wait_until(lambda: len(self.results) == 5)
        # 4 callers of 2 alarms with at most 3 alarms a claim: one each
        # (a single caller larger than the bound still gets one claim).
        self.assertEqual([1, 2, 2, 2, 2],
                         [len(c[0]) for c in self.store.calls])
