"""doctor-report and doctor-monitor argument handling."""

import io
import uuid

import fixtures
from oslotest import base

from doctor_ext.cmd import monitor as cli


class CliTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        # Keep the test process's logging as it is.
        self.useFixture(fixtures.MockPatch('oslo_log.log.setup'))
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', self.stdout))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))

    def test_report_prints_the_event_id(self):
        rc = cli.report_main(['--host', 'compute-1', '--cause', 'test',
                              '--transport-url', 'fake://'])
        self.assertEqual(0, rc, self.stderr.getvalue())
        uuid.UUID(self.stdout.getvalue().strip())

    def test_report_given_event_id(self):
        rc = cli.report_main(['--host', 'compute-1', '--status', 'up',
                              '--monitor-event-id', 'ev-7',
                              '--transport-url', 'fake://'])
        self.assertEqual(0, rc)
        self.assertEqual('ev-7\n', self.stdout.getvalue())

    def test_report_needs_a_host(self):
        self.assertEqual(2, cli.report_main(['--transport-url', 'fake://']))
        self.assertIn('host', self.stderr.getvalue())
        self.assertEqual('', self.stdout.getvalue())

    def test_report_invalid_host(self):
        rc = cli.report_main(['--host', 'x' * 300,
                              '--transport-url', 'fake://'])
        self.assertEqual(2, rc)
        self.assertEqual('', self.stdout.getvalue())

    def test_monitor_needs_hosts(self):
        self.assertEqual(2, cli.ping_main([]))

    def test_monitor_bad_host(self):
        self.assertEqual(2, cli.ping_main(['--host', ':127.0.0.1']))
