"""The retry policy: backoff, retried until done, stopped with the service."""

import threading

import fixtures
from oslotest import base

from doctor_ext import retry


class TestBackoff(base.BaseTestCase):

    def test_doubles_up_to_the_cap(self):
        self.assertEqual([0.5, 1.0, 2.0, 4.0, 5.0, 5.0],
                         [retry.backoff(n, 0.5, 5.0) for n in range(1, 7)])

    def test_jitter_between_half_and_all(self):
        for n in range(1, 8):
            full = retry.backoff(n, 0.1, 2.0)
            for _ in range(50):
                got = retry.backoff(n, 0.1, 2.0, jitter=True)
                self.assertTrue(full / 2 <= got <= full, (n, got))


class TestUntilDone(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.stop = threading.Event()

    def test_retries_until_it_returns(self):
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise OSError('not yet %d' % len(calls))
            return 'done'
        self.assertEqual('done', retry.until_done(
            flaky, 'Cannot do it yet', self.stop, first=0.001, most=0.002))
        self.assertEqual(3, len(calls))
        self.assertIn('Cannot do it yet, retrying in 0.0 s: not yet 1',
                      self.log.output)
        self.assertIn('not yet 2', self.log.output)

    def test_other_errors_are_raised(self):
        def broken():
            raise KeyError('bug')
        self.assertRaises(KeyError, retry.until_done, broken, 'x', self.stop,
                          first=0.001, most=0.001, retry_on=OSError)

    def test_stopped_while_waiting(self):
        calls = []

        def failing():
            calls.append(1)
            self.stop.set()
            raise OSError('down')
        self.assertIsNone(retry.until_done(failing, 'x', self.stop,
                                           first=60.0, most=60.0))
        # The wait ended with the stop; no attempt after it.
        self.assertEqual(1, len(calls))

    def test_stopped_before_the_first_try(self):
        self.stop.set()
        self.assertIsNone(retry.until_done(self.fail, 'x', self.stop,
                                           first=1.0, most=1.0))


class TestAttempts(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())

    def test_retries_until_it_returns(self):
        outcomes = iter([OSError('not yet 1'), OSError('not yet 2'), 'done'])

        def flaky():
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        self.assertEqual('done', retry.attempts(flaky, 'Doing it', 3,
                                                first=0.001, most=0.002))
        self.assertEqual([], list(outcomes))
        self.assertIn('Doing it: not yet 1; retry 1 of 2', self.log.output)
        self.assertIn('Doing it: not yet 2; retry 2 of 2', self.log.output)

    def test_waits_double_up_to_the_cap(self):
        def failing():
            raise OSError('down')
        self.assertRaises(OSError, retry.attempts, failing, 'x', 5,
                          first=0.01, most=0.03)
        waits = [line.rsplit(' in ', 1)[1]
                 for line in self.log.output.splitlines()]
        self.assertEqual(['0.01 s', '0.02 s', '0.03 s', '0.03 s'], waits)

    def test_last_error_raised_after_the_attempts(self):
        calls = []

        def failing():
            calls.append(1)
            raise OSError('down %d' % len(calls))
        error = self.assertRaises(OSError, retry.attempts, failing, 'x', 4,
                                  first=0.001)
        self.assertEqual('down 4', str(error))
        self.assertEqual(4, len(calls))

    def test_other_errors_raised_at_once(self):
        calls = []

        def broken():
            calls.append(1)
            raise KeyError('bug')
        self.assertRaises(KeyError, retry.attempts, broken, 'x', 5,
                          first=0.001, retry_on=OSError)
        self.assertEqual(1, len(calls))
        self.assertEqual('', self.log.output)
