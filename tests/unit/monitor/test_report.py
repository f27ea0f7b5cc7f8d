"""The Doctor report: its format, its validation, and its sending."""

import datetime
import logging
import socket
import threading
import time
import uuid

import fixtures
from oslo_config import cfg
import oslo_messaging
from oslo_utils import timeutils
from oslotest import base

from doctor_ext.monitor import report
from doctor_ext.monitor import send_failures
from doctor_ext.monitor import signing

DEADLINE = 10.0
SECRET = 'monitor-secret'


class BuildReportTest(base.BaseTestCase):

    def test_down_report_format(self):
        before = timeutils.utcnow()
        r = report.build_report('compute-1', cause='no ping reply')
        after = timeutils.utcnow()
        self.assertEqual({'time', 'type', 'details'}, set(r))
        self.assertEqual('compute.host.down', r['type'])
        details = r['details']
        self.assertEqual({'hostname', 'status', 'monitor',
                          'monitor_event_id', 'cause', 'severity'},
                         set(details))
        self.assertEqual('compute-1', details['hostname'])
        self.assertEqual('down', details['status'])
        self.assertEqual('ping', details['monitor'])
        self.assertEqual('no ping reply', details['cause'])
        self.assertEqual('critical', details['severity'])
        uuid.UUID(details['monitor_event_id'])
        self.assertTrue(r['time'].endswith('Z'))
        when = timeutils.normalize_time(timeutils.parse_isotime(r['time']))
        self.assertTrue(before <= when <= after)

    def test_up_report(self):
        r = report.build_report('compute-1', status='up')
        self.assertEqual('compute.host.up', r['type'])
        self.assertEqual('up', r['details']['status'])
        self.assertEqual('cleared', r['details']['severity'])
        self.assertIsNone(r['details']['cause'])

    def test_given_fields(self):
        when = datetime.datetime(2024, 5, 1, 14, 0, 0, 250000,
                                 tzinfo=datetime.timezone(
                                     datetime.timedelta(hours=2)))
        r = report.build_report('compute-2', monitor='collectd',
                                monitor_event_id='ev-1', severity='MAJOR',
                                time=when)
        self.assertEqual('2024-05-01T12:00:00.250000Z', r['time'])
        self.assertEqual('ev-1', r['details']['monitor_event_id'])
        self.assertEqual('major', r['details']['severity'])
        self.assertEqual('collectd', r['details']['monitor'])
        r = report.build_report('compute-2', time='2024-05-01T12:00:00')
        self.assertEqual('2024-05-01T12:00:00.000000Z', r['time'])

    def test_every_etsi_severity(self):
        for severity in ('critical', 'major', 'minor', 'warning',
                         'indeterminate', 'cleared'):
            r = report.build_report('h', severity=severity)
            self.assertEqual(severity, r['details']['severity'])

    def _bad(self, field, **kwargs):
        kwargs.setdefault('hostname', 'compute-1')
        e = self.assertRaises(report.InvalidReport, report.build_report,
                              **kwargs)
        self.assertIsInstance(e, ValueError)
        self.assertTrue(str(e).startswith(field + ' '),
                        '%r does not name %s' % (str(e), field))
        return str(e)

    def test_invalid_fields_are_named(self):
        self._bad('hostname', hostname='')
        self._bad('hostname', hostname='   ')
        self._bad('hostname', hostname=None)
        self._bad('hostname', hostname=42)
        self.assertIn('255', self._bad('hostname', hostname='h' * 256))
        report.build_report('h' * 255)
        self.assertIn("'sideways'", self._bad('status', status='sideways'))
        self.assertIn('critical', self._bad('severity', severity='fatal'))
        self._bad('severity', severity=3)
        self._bad('monitor', monitor='')
        self._bad('monitor_event_id', monitor_event_id='')
        self._bad('cause', cause='x' * 256)
        self._bad('cause', cause=12)
        self._bad('time', time='yesterday')
        self._bad('time', time=12345)

    def test_validate_report(self):
        r = report.build_report('compute-1')
        self.assertEqual(r, report.validate_report(r))
        del r['details']['hostname']
        e = self.assertRaises(report.InvalidReport, report.validate_report,
                              r)
        self.assertIn('details.hostname', str(e))
        r = report.build_report('compute-1')
        r['type'] = 'compute.host.up'
        e = self.assertRaises(report.InvalidReport, report.validate_report,
                              r)
        self.assertIn('details.status', str(e))
        r['type'] = 'compute.host.sideways'
        e = self.assertRaises(report.InvalidReport, report.validate_report,
                              r)
        self.assertTrue(str(e).startswith('type '))
        e = self.assertRaises(report.InvalidReport, report.validate_report,
                              {'type': 'compute.host.down'})
        self.assertIn('details', str(e))
        self.assertRaises(report.InvalidReport, report.validate_report, [])


class _Endpoint:
    """Notification endpoint that records what it gets."""

    def __init__(self):
        self.received = []
        self.cond = threading.Condition()

    def _record(self, priority, ctxt, publisher_id, event_type, payload,
                metadata):
        with self.cond:
            self.received.append(dict(priority=priority,
                                      publisher_id=publisher_id,
                                      event_type=event_type,
                                      payload=payload))
            self.cond.notify_all()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record('info', ctxt, publisher_id, event_type, payload,
                     metadata)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record('error', ctxt, publisher_id, event_type, payload,
                     metadata)

    def wait_for(self, count, timeout=DEADLINE):
        with self.cond:
            self.cond.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)


class ReporterTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        self.conf([])
        report.register_opts(self.conf)
        report.register_transport_opts(self.conf)
        self.conf.set_override('transport_url', 'fake://')
        self.conf.set_override('publisher_id', 'doctor-monitor.test',
                               group=report.GROUP)
        self.conf.set_override('secret', SECRET, group=report.GROUP)

    def _listen(self, exchange='doctor'):
        # The listener's own transport keeps the default control_exchange
        # ('openstack'): the exchange comes from its Target only.
        conf = cfg.ConfigOpts()
        conf([])
        transport = oslo_messaging.get_notification_transport(
            conf, url='fake://')
        endpoint = _Endpoint()
        listener = oslo_messaging.get_notification_listener(
            transport,
            [oslo_messaging.Target(topic='notifications', exchange=exchange)],
            [endpoint], executor='threading')
        listener.start()

        def _stop():
            listener.stop()
            listener.wait()
            transport.cleanup()
        self.addCleanup(_stop)
        return endpoint

    def test_sent_to_the_doctor_exchange(self):
        endpoint = self._listen('doctor')
        reporter = report.Reporter(self.conf)
        self.addCleanup(reporter.close)
        down = report.build_report('compute-1', cause='test')
        event_id = reporter.send(down)
        self.assertEqual(down['details']['monitor_event_id'], event_id)
        up_id = reporter.report('compute-1', status='up')

        received = endpoint.wait_for(2)
        self.assertEqual(2, len(received), received)
        # error and info go to different queues (notifications.error,
        # notifications.info): no order between them.
        first, second = sorted(received, key=lambda r: r['priority'])
        self.assertEqual('error', first['priority'])
        self.assertEqual('compute.host.down', first['event_type'])
        self.assertEqual('doctor-monitor.test', first['publisher_id'])
        payload = first['payload']
        # The report, signed when it was sent.
        self.assertEqual(signing.sign(
            SECRET, 'compute.host.down', down,
            now=timeutils.parse_isotime(payload['signed_at'])), payload)
        self.assertEqual('info', second['priority'])
        self.assertEqual('compute.host.up', second['event_type'])
        self.assertEqual(up_id, second['payload']['details']
                         ['monitor_event_id'])
        self.assertEqual('cleared', second['payload']['details']['severity'])
        # The shared conf is left as it was (the default depends on who set
        # oslo.messaging's transport defaults in this process).
        self.assertNotEqual('doctor', self.conf.control_exchange)

    def test_unsigned_without_a_secret(self):
        self.conf.clear_override('secret', group=report.GROUP)
        log = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        endpoint = self._listen()
        with report.Reporter(self.conf) as reporter:
            reporter.report('compute-9')
            received = endpoint.wait_for(1)
        self.assertIn('[doctor_monitor] secret is not set: reports are '
                      'sent unsigned', log.output)
        self.assertNotIn('signature', received[0]['payload'])

    def test_exchange_and_topic_from_conf(self):
        self.conf.set_override('exchange', 'faults', group=report.GROUP)
        endpoint = self._listen('faults')
        with report.Reporter(self.conf) as reporter:
            reporter.report('compute-9')
            received = endpoint.wait_for(1)
        self.assertEqual('compute-9',
                         received[0]['payload']['details']['hostname'])

    def test_down_severity_from_conf(self):
        self.conf.set_override('severity', 'major', group=report.GROUP)
        endpoint = self._listen()
        transport = report.get_transport(self.conf)
        self.addCleanup(transport.cleanup)
        reporter = report.Reporter(self.conf, transport)
        reporter.report('compute-1')
        received = endpoint.wait_for(1)
        self.assertEqual('major', received[0]['payload']['details']
                         ['severity'])

    def test_foreign_transport_exchange_is_warned_about(self):
        log = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        transport = oslo_messaging.get_notification_transport(
            self.conf, url='fake://')
        self.addCleanup(transport.cleanup)
        report.Reporter(self.conf, transport)
        # The default exchange depends on who set oslo.messaging's transport
        # defaults in this process (Ceilometer sets 'ceilometer').
        self.assertIn("sends to the exchange '%s'"
                      % self.conf.control_exchange, log.output)
        log = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        report.Reporter(self.conf, report.get_transport(self.conf)).close()
        self.assertEqual('', log.output)

    def test_default_publisher_id(self):
        self.conf.clear_override('publisher_id', group=report.GROUP)
        with report.Reporter(self.conf) as reporter:
            self.assertEqual('doctor-monitor.%s' % socket.gethostname(),
                             reporter.publisher_id)

    def test_invalid_report_not_sent(self):
        endpoint = self._listen()
        with report.Reporter(self.conf) as reporter:
            bad = report.build_report('compute-1')
            bad['details']['severity'] = 'apocalyptic'
            e = self.assertRaises(report.InvalidReport, reporter.send, bad)
            self.assertIn('details.severity', str(e))
            reporter.report('compute-2')
            # (The fake driver's cleanup, at close, drops queued messages.)
            received = endpoint.wait_for(1)
        self.assertEqual(['compute-2'],
                         [r['payload']['details']['hostname']
                          for r in received])

    def test_broker_down_raises_within_bounds(self):
        # A loopback port nobody listens on: the connection is refused.
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
        sock.close()
        self.conf.set_override('send_retry', 0, group=report.GROUP)
        transport = report.get_transport(
            self.conf, url='rabbit://guest:guest@127.0.0.1:%d/' % port)
        self.addCleanup(transport.cleanup)
        reporter = report.Reporter(self.conf, transport)
        started = time.monotonic()
        e = self.assertRaises(report.ReportNotSent, reporter.report,
                              'compute-1')
        self.assertLess(time.monotonic() - started, DEADLINE)
        self.assertIn('compute-1', str(e))
        self.assertIn("'doctor'", str(e))
        self.assertIn('0 retries', str(e))

    def test_failure_of_another_thread_is_not_ours(self):
        # The notifier logs send errors; only the sending thread's count.
        failures = send_failures.send_failures()
        other_done = threading.Event()

        def other():
            logging.getLogger('oslo_messaging.notify.messaging').error(
                'Could not send notification (someone else)')
            other_done.set()

        endpoint = self._listen()
        with report.Reporter(self.conf) as reporter:
            with failures.watch() as caught:
                thread = threading.Thread(target=other)
                thread.start()
                self.assertTrue(other_done.wait(DEADLINE))
                thread.join()
            self.assertEqual([], caught)
            reporter.report('compute-1')
            self.assertEqual(1, len(endpoint.wait_for(1)))
