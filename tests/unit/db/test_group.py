"""Concurrent small writes sharing one statement."""

import threading

from oslotest import base

from doctor_ext.db import group
from tests import fixtures as doctor_fixtures


class Bad(ValueError):
    pass


class FakeWriter:
    """Records batches; the first is held until the test releases it."""

    def __init__(self):
        self.batches = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self.fail = None

    def write(self, values):
        self.batches.append(list(values))
        if len(self.batches) == 1:
            self.held.set()
            self.hold.wait(10)
        if self.fail is not None:
            raise self.fail
        if 'bad' in values:
            raise Bad('bad value')


class TestWriteGroup(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.writer = FakeWriter()
        self.group = group.WriteGroup(self.writer.write, Bad, max_batch=3)
        self.results = {}

    def start(self, value):
        def run():
            try:
                self.group.write(value)
                self.results[value] = 'ok'
            except Exception as e:
                self.results[value] = e
        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(thread.join, 10)
        return thread

    def queued(self, count):
        doctor_fixtures.poll(lambda: len(self.group._queue) == count, 10,
                             'the write group')

    def test_alone_writes_at_once(self):
        self.writer.hold.set()
        self.group.write('a')
        self.assertEqual([['a']], self.writer.batches)

    def test_callers_queued_behind_a_write_share_bounded_batches(self):
        first = self.start('first')
        self.assertTrue(self.writer.held.wait(10))
        waiting = [self.start('w%d' % i) for i in range(5)]
        self.queued(5)
        self.writer.hold.set()
        for t in [first] + waiting:
            t.join(10)
        self.assertEqual([['first'], ['w0', 'w1', 'w2'], ['w3', 'w4']],
                         [sorted(b) for b in self.writer.batches])
        self.assertEqual({'ok'}, set(self.results.values()))
        self.assertEqual(6, len(self.results))

    def test_a_bad_value_is_dropped_alone(self):
        first = self.start('first')
        self.assertTrue(self.writer.held.wait(10))
        waiting = [self.start(v) for v in ('x', 'bad', 'y')]
        self.queued(3)
        self.writer.hold.set()
        for t in [first] + waiting:
            t.join(10)
        self.assertIsInstance(self.results['bad'], Bad)
        self.assertEqual('ok', self.results['x'])
        self.assertEqual('ok', self.results['y'])
        # The batch, then each of its values again.
        self.assertEqual(['x', 'bad', 'y'], sorted(
            self.writer.batches[1], key=['x', 'bad', 'y'].index))
        self.assertEqual([['x'], ['bad'], ['y']], sorted(
            self.writer.batches[2:], key=lambda b: ['x', 'bad', 'y'].index(
                b[0])))

    def test_an_error_reaches_every_caller_of_that_batch(self):
        first = self.start('first')
        self.assertTrue(self.writer.held.wait(10))
        waiting = [self.start(v) for v in ('x', 'y')]
        self.queued(2)
        self.writer.fail = RuntimeError('database gone')
        self.writer.hold.set()
        for t in [first] + waiting:
            t.join(10)
        for v in ('first', 'x', 'y'):
            self.assertIsInstance(self.results[v], RuntimeError)
