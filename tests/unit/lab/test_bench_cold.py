"""The cold fault's phases, read from the agent's timeline log."""

import os

import fixtures
from oslotest import base

from doctor_ext_lab import bench_cold

LINE = ('2026-11-30 15:00:00.000 123 INFO doctor_ext.evaluator.engine [-] '
        'doctor-timeline alarm=a1 event=e1 received=100.010000 '
        'parsed=100.011000 evaluated=100.012000 fired=100.020000\n')


class TimelineTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.log = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                'agent.log')

    def write(self, text):
        with open(self.log, 'a') as f:
            f.write(text)

    def test_lines_after_the_offset_only(self):
        self.write(LINE.replace('alarm=a1', 'alarm=old'))
        _, offset = bench_cold._timeline_lines(self.log, 0)
        self.write('INFO something else\n' + LINE +
                   'doctor-timeline host=h1 monitor_event_id=m\n')
        lines, end = bench_cold._timeline_lines(self.log, offset)
        self.assertEqual(['a1'], [line['alarm'] for line in lines])
        self.assertEqual(os.path.getsize(self.log), end)
        self.assertEqual(([], end), bench_cold._timeline_lines(self.log, end))

    def test_missing_log_reads_nothing(self):
        self.assertEqual(([], 7), bench_cold._timeline_lines(
            self.log + '.none', 7))

    def test_phases_of_one_fault(self):
        self.write(LINE)
        lines, _ = bench_cold._timeline_lines(self.log, 0)
        self.assertEqual({'bus': 10.0, 'match': 2.0, 'claim': 8.0,
                          'post': 1.5},
                         bench_cold.phases(100.0, 100.0215, lines[0]))

    def test_median_phases_leave_flags_out(self):
        self.assertEqual(
            {'bus': 2.0, 'wal_kib': 4.0},
            bench_cold._median_phases([
                {'bus': 1.0, 'wal_kib': 4.0, 'checkpoint_since': True},
                {'bus': 3.0, 'wal_kib': 4.0, 'checkpoint_since': False}]))
        self.assertIsNone(bench_cold._median_phases([]))

    def test_wal_delta(self):
        self.assertEqual({'wal_kib': 2.0, 'checkpoint_since': True},
                         bench_cold._Wal.delta((100, 'A'), (2148, 'B'),
                                               None))
        self.assertEqual({'wal_kib': 0.0, 'checkpoint_since': False},
                         bench_cold._Wal.delta((100, 'B'), (100, 'B'),
                                               (90, 'B')))
        self.assertEqual({}, bench_cold._Wal.delta(None, (1, 'A'), None))
