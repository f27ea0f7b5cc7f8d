"""HttpNotifier against the consumer double over loopback."""

import base64
import datetime
import ipaddress
import logging
import os
import ssl

from aodh.notifier import rest as aodh_rest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.x509.oid import NameOID
import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslo_utils import netutils
from oslotest import base

from doctor_ext.notifier import http as notifier_http
from doctor_ext_lab import consumer as lab_consumer

REQUEST_ID_RE = r'^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-' \
                r'[0-9a-f]{12}$'
REASON_DATA = {'type': 'event',
               'event': {'event_type': 'compute.instance.update',
                         'traits': [['instance_id', 1, 'vm-1'],
                                    ['state', 1, 'error']]}}


def make_aodh_conf():
    """The part of Aodh's configuration its notifier plugins read."""
    conf = cfg.ConfigOpts()
    conf.register_opts(aodh_rest.OPTS)
    conf([], project='aodh', default_config_files=[],
         default_config_dirs=[])
    return conf


def note(url, alarm_id='alarm-1', **kwargs):
    values = {'alarm_name': 'host-down', 'severity': 'critical',
              'previous': 'ok', 'current': 'alarm',
              'reason': 'Event hits the query', 'reason_data': REASON_DATA}
    values.update(kwargs)
    return notifier_http.Notification(url, alarm_id, **values)


class _Certificates:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""

    def __init__(self, directory):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.directory = directory
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                'doctor-ext test CA')])
        ca = (x509.CertificateBuilder()
              .subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                             critical=True)
              .sign(ca_key, hashes.SHA256()))
        self.ca_file = self._write('ca.pem', ca.public_bytes(
            serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._leaf(
            'server', ca, ca_key, now,
            x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address('127.0.0.1'))]))
        self.client_cert, self.client_key = self._leaf(
            'client', ca, ca_key, now, None)

    def _write(self, name, data):
        path = os.path.join(self.directory, name)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def _leaf(self, name, ca, ca_key, now, san):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(
                       NameOID.COMMON_NAME, 'doctor-ext ' + name)]))
                   .issuer_name(ca.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_file = self._write(name + '.pem', cert.public_bytes(
            serialization.Encoding.PEM))
        key_file = self._write(name + '.key', key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return cert_file, key_file

    def server_context(self, require_client_cert=False):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca_file)
        return context


class NotifierTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        notifier_http.register_opts(self.conf)
        self.config = self.useFixture(config_fixture.Config(self.conf))
        # Fast backoff: the tests count attempts, they do not wait for them.
        self.config.config(group=notifier_http.GROUP, retry_backoff=0.001,
                           retry_backoff_max=0.005, read_timeout=30.0,
                           egress_allow=['127.0.0.0/8'])
        self.consumer = self.useFixture(
            lab_consumer.ConsumerFixture()).consumer

    def notifier(self, aodh_conf=None, **options):
        if options:
            self.config.config(group=notifier_http.GROUP, **options)
        notifier = notifier_http.HttpNotifier(self.conf, aodh_conf=aodh_conf)
        self.addCleanup(notifier.stop)
        return notifier

    def deliver(self, notifier, notification, timeout=10):
        return notifier.submit(notification).result(timeout)


class TestOptions(base.BaseTestCase):

    def test_options(self):
        conf = cfg.ConfigOpts()
        notifier_http.register_opts(conf)
        notifier_http.register_opts(conf)  # idempotent
        conf([], default_config_files=[], default_config_dirs=[])
        opts = conf[notifier_http.GROUP]
        self.assertEqual('doctor_notifier', notifier_http.GROUP)
        self.assertEqual(
            (1.0, 5.0, 3, 0.1, 2.0, 16, None, None, None, True),
            (opts.connect_timeout, opts.read_timeout, opts.max_retries,
             opts.retry_backoff, opts.retry_backoff_max,
             opts.max_connections_per_consumer, opts.ca_file,
             opts.cert_file, opts.key_file, opts.ssl_verify))


class TestPayload(NotifierTestCase):

    def test_same_body_and_headers_as_aodh_rest_notifier(self):
        args = ('alarm-1', 'host-down', 'critical', 'ok', 'alarm',
                'Event hits the query', REASON_DATA)
        aodh = aodh_rest.RestAlarmNotifier(make_aodh_conf())
        aodh.notify(netutils.urlsplit(self.consumer.url('/aodh')), *args)
        notifier = self.notifier()
        delivery = self.deliver(notifier, notifier_http.Notification(
            self.consumer.url('/ours'), *args, project_id='p1'))
        self.assertTrue(delivery.ok, delivery)
        self.assertTrue(self.consumer.wait_for(2))
        theirs, ours = self.consumer.received
        self.assertEqual(('/aodh', '/ours'), (theirs.path, ours.path))
        self.assertEqual(['alarm_name', 'alarm_id', 'severity', 'previous',
                          'current', 'reason', 'reason_data'],
                         list(ours.body))
        self.assertEqual(theirs.body, ours.body)
        self.assertEqual(theirs.raw, ours.raw)
        for received in (theirs, ours):
            self.assertEqual('application/json',
                             received.headers['content-type'])
            self.assertRegex(received.headers['x-openstack-request-id'],
                             REQUEST_ID_RE)
        self.assertEqual(ours.headers['x-openstack-request-id'],
                         delivery.request_id)

    def test_datetimes_in_reason_data(self):
        notifier = self.notifier()
        when = datetime.datetime(2024, 5, 1, 12, 30, 15, 250000)
        delivery = self.deliver(notifier, note(
            self.consumer.url(), reason_data={'generated': when}))
        self.assertTrue(delivery.ok, delivery)
        self.assertEqual({'generated': '2024-05-01 12:30:15.250000'},
                         self.consumer.received[0].body['reason_data'])

    def test_request_ids_differ_per_notification(self):
        notifier = self.notifier()
        for alarm_id in ('a', 'b'):
            self.deliver(notifier, note(self.consumer.url(), alarm_id))
        ids = {r.headers['x-openstack-request-id']
               for r in self.consumer.received}
        self.assertEqual(2, len(ids))

    def test_delivery_times(self):
        notifier = self.notifier()
        delivery = self.deliver(notifier, note(self.consumer.url()))
        self.assertEqual((True, 200, 1, None),
                         (delivery.ok, delivery.status, delivery.attempts,
                          delivery.error))
        self.assertLessEqual(delivery.submitted_at, delivery.sent_at)
        self.assertLessEqual(delivery.sent_at, delivery.finished_at)
        self.assertLessEqual(self.consumer.received[0].monotonic,
                             delivery.finished_at)
        self.assertGreaterEqual(self.consumer.received[0].monotonic,
                                delivery.sent_at)


class TestConnections(NotifierTestCase):

    def test_keep_alive_one_connection_per_lane(self):
        notifier = self.notifier()
        for i in range(20):
            delivery = self.deliver(notifier, note(self.consumer.url(),
                                                   'alarm-%d' % i))
            self.assertTrue(delivery.ok, delivery)
        received = self.consumer.received
        self.assertEqual(20, len(received))
        self.assertEqual(1, len({r.client_port for r in received}))

    def test_connections_bounded_per_consumer(self):
        notifier = self.notifier(max_connections_per_consumer=2)
        self.consumer.hang()
        futures = [notifier.submit(note(self.consumer.url(), 'a%d' % i))
                   for i in range(6)]
        self.assertTrue(self.consumer.wait_for(2))
        # Two workers, both held by the consumer: no third POST arrives.
        self.assertFalse(self.consumer.wait_for(3, timeout=0.2))
        self.consumer.release()
        self.assertTrue(notifier.flush(10))
        self.assertTrue(all(f.result().ok for f in futures))
        self.assertEqual(6, self.consumer.count())
        self.assertEqual(2, len({r.client_port
                                 for r in self.consumer.received}))

    def test_reconnects_after_consumer_restart(self):
        notifier = self.notifier()
        self.assertTrue(self.deliver(notifier, note(self.consumer.url())).ok)
        # The consumer goes away and comes back on the same port: the kept
        # connection is dead; that costs no attempt.
        self.consumer.stop()
        self.consumer.start()
        delivery = self.deliver(notifier, note(self.consumer.url()))
        self.assertEqual((True, 1), (delivery.ok, delivery.attempts))
        first, second = self.consumer.received
        self.assertNotEqual(first.client_port, second.client_port)

    def test_hanging_consumer_does_not_delay_another(self):
        other = self.useFixture(lab_consumer.ConsumerFixture()).consumer
        notifier = self.notifier(max_connections_per_consumer=1)
        self.consumer.hang()
        stuck = notifier.submit(note(self.consumer.url(), 'stuck'))
        self.assertTrue(self.consumer.wait_for(1))
        queued = notifier.submit(note(self.consumer.url(), 'queued'))
        delivery = notifier.submit(note(other.url(), 'other')).result(10)
        self.assertTrue(delivery.ok, delivery)
        self.assertEqual('other', other.received[0].body['alarm_id'])
        # The first consumer still holds its POST: nothing of its lane ended.
        self.assertFalse(stuck.done())
        self.assertFalse(queued.done())
        self.consumer.release()
        self.assertTrue(stuck.result(10).ok)
        self.assertTrue(queued.result(10).ok)
        self.assertEqual(['stuck', 'queued'],
                         [r.body['alarm_id'] for r in self.consumer.received])

    def test_refused_consumer_does_not_delay_another(self):
        other = self.useFixture(lab_consumer.ConsumerFixture()).consumer
        notifier = self.notifier(retry_backoff=5.0, retry_backoff_max=5.0,
                                 max_retries=1)
        dead_url = self.consumer.url()
        self.consumer.refuse()
        dead = notifier.submit(note(dead_url, 'dead'))
        self.assertTrue(notifier.submit(note(other.url())).result(10).ok)
        # The dead consumer's notification waits for its backoff (2.5-5 s).
        self.assertFalse(dead.done())


class TestRetries(NotifierTestCase):

    def test_retry_on_500_then_success(self):
        self.consumer.respond(500, times=2)
        notifier = self.notifier()
        delivery = self.deliver(notifier, note(self.consumer.url()))
        self.assertEqual((True, 200, 3, None),
                         (delivery.ok, delivery.status, delivery.attempts,
                          delivery.error))
        received = self.consumer.received
        self.assertEqual([500, 500, 200], [r.status for r in received])
        # One notification, one request id, whatever the attempt.
        self.assertEqual({delivery.request_id},
                         {r.headers['x-openstack-request-id']
                          for r in received})

    def test_bounded_retries_then_failure(self):
        self.consumer.respond(503)
        notifier = self.notifier(max_retries=2)
        delivery = self.deliver(notifier, note(self.consumer.url()))
        self.assertFalse(delivery.ok)
        self.assertEqual(3, delivery.attempts)
        self.assertEqual(503, delivery.status)
        self.assertIn('HTTP 503', delivery.error)
        self.assertIn(self.consumer.url(), delivery.error)
        self.assertEqual(3, self.consumer.count())

    def test_default_max_retries(self):
        self.consumer.respond(500)
        delivery = self.deliver(self.notifier(), note(self.consumer.url()))
        self.assertEqual((False, 4), (delivery.ok, delivery.attempts))
        self.assertEqual(4, self.consumer.count())

    def test_no_retries(self):
        self.consumer.respond(502)
        notifier = self.notifier(max_retries=0)
        delivery = self.deliver(notifier, note(self.consumer.url()))
        self.assertEqual((False, 1, 502),
                         (delivery.ok, delivery.attempts, delivery.status))

    def test_4xx_not_retried(self):
        notifier = self.notifier()
        for status in (400, 404, 429):
            self.consumer.clear()
            self.consumer.respond(status)
            delivery = self.deliver(notifier, note(self.consumer.url()))
            self.assertEqual((False, status, 1),
                             (delivery.ok, delivery.status,
                              delivery.attempts))
            self.assertIn('HTTP %d' % status, delivery.error)
            self.assertTrue(notifier.flush(10))
            self.assertEqual(1, self.consumer.count())

    def test_read_timeout_retried(self):
        self.consumer.hang()
        notifier = self.notifier(read_timeout=0.2, max_retries=1)
        delivery = self.deliver(notifier, note(self.consumer.url()))
        self.assertEqual((False, 2, None),
                         (delivery.ok, delivery.attempts, delivery.status))
        self.assertIn('read_timeout', delivery.error)
        self.assertEqual(2, self.consumer.count())

    def test_refused_consumer_fails_fast_after_retries(self):
        url = self.consumer.url()
        self.consumer.refuse()
        notifier = self.notifier(max_retries=3)
        delivery = self.deliver(notifier, note(url))
        self.assertFalse(delivery.ok)
        self.assertEqual(4, delivery.attempts)
        self.assertIsNone(delivery.status)
        self.assertIn('ConnectionRefusedError', delivery.error)
        self.assertIn(url, delivery.error)
        # Four refused connects and three backoffs of at most 5 ms, not
        # timeouts.
        self.assertLess(delivery.finished_at - delivery.sent_at, 1.0)

    def test_refused_after_keep_alive(self):
        notifier = self.notifier(max_retries=2)
        self.assertTrue(self.deliver(notifier, note(self.consumer.url())).ok)
        self.consumer.refuse()
        delivery = self.deliver(notifier, note(self.consumer.url()))
        # The dead kept connection is not counted: 3 refused attempts.
        self.assertEqual((False, 3), (delivery.ok, delivery.attempts))
        self.assertIn('ConnectionRefusedError', delivery.error)
        self.consumer.start()
        delivery = self.deliver(notifier, note(self.consumer.url()))
        self.assertEqual((True, 1), (delivery.ok, delivery.attempts))

    def test_backoff_grows_and_is_bounded(self):
        notifier = self.notifier(retry_backoff=0.1, retry_backoff_max=0.3)
        delays = [[notifier.poster._delay(retry) for _ in range(50)]
                  for retry in (1, 2, 3, 4)]
        for bounds, values in zip([(0.05, 0.1), (0.1, 0.2), (0.15, 0.3),
                                   (0.15, 0.3)], delays):
            self.assertTrue(all(bounds[0] <= v <= bounds[1] for v in values),
                            (bounds, values))
            self.assertGreater(len(set(values)), 1)  # jitter


class TestLogging(NotifierTestCase):

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(
            level=logging.DEBUG, format='%(levelname)s %(message)s'))

    def secret_url(self):
        return ('http://alice:s3cr3t@127.0.0.1:%d/failure?token=t0k3n&x=1'
                % self.consumer.port)

    def test_credentials_masked_in_failure_logs(self):
        self.consumer.respond(500)
        notifier = self.notifier(max_retries=1)
        delivery = self.deliver(notifier, note(self.secret_url(), 'al-42'))
        self.assertFalse(delivery.ok)
        output = self.logger.output
        self.assertIn('WARNING', output)
        self.assertIn('ERROR', output)
        self.assertIn('al-42', output)
        self.assertIn('http://alice:***@127.0.0.1:%d/failure?token=***&x=1'
                      % self.consumer.port, output)
        for text in (output, delivery.error, delivery.url):
            self.assertNotIn('s3cr3t', text)
            self.assertNotIn('t0k3n', text)
        # The consumer itself gets the credentials, as from Aodh (requests
        # turns user:password@ into basic auth).
        received = self.consumer.received[0]
        self.assertEqual('Basic ' + base64.b64encode(
            b'alice:s3cr3t').decode(), received.headers['authorization'])
        self.assertEqual('token=t0k3n&x=1', received.query)

    def test_success_logged_at_debug_only_and_masked(self):
        notifier = self.notifier()
        self.assertTrue(self.deliver(notifier, note(self.secret_url())).ok)
        self.assertTrue(notifier.flush(10))
        lines = [line for line in self.logger.output.splitlines()
                 if 'alarm-1' in line]
        self.assertEqual(1, len(lines), lines)
        self.assertTrue(lines[0].startswith('DEBUG '), lines)
        self.assertIn('alice:***@', lines[0])
        self.assertNotIn('s3cr3t', self.logger.output)

    def test_masked_in_bad_url_errors(self):
        notifier = self.notifier()
        delivery = self.deliver(notifier, note('http://bob:pw123@[::1/x'))
        self.assertFalse(delivery.ok)
        self.assertIn('http://bob:***@[::1/x', delivery.error)
        self.assertNotIn('pw123', delivery.error)
        self.assertNotIn('pw123', self.logger.output)
        self.assertIn('ERROR', self.logger.output)


class TestBadActions(NotifierTestCase):

    def assertNextDelivered(self, notifier):
        delivery = self.deliver(notifier, note(self.consumer.url(), 'next'))
        self.assertTrue(delivery.ok, delivery)
        self.assertEqual('next', self.consumer.received[-1].body['alarm_id'])

    def test_unknown_scheme(self):
        logger = self.useFixture(fixtures.FakeLogger())
        notifier = self.notifier(aodh_conf=make_aodh_conf())
        future = notifier.submit(note('nosuch://vnfm/alarm', 'al-7'))
        self.assertTrue(future.done())
        delivery = future.result()
        self.assertEqual((False, 0, None),
                         (delivery.ok, delivery.attempts, delivery.status))
        self.assertIn("unknown scheme 'nosuch'", delivery.error)
        self.assertIn('nosuch://vnfm/alarm', delivery.error)
        self.assertIn('al-7', logger.output)
        self.assertIn("unknown scheme 'nosuch'", logger.output)
        self.assertNextDelivered(notifier)

    def test_malformed_urls(self):
        notifier = self.notifier()
        port = self.consumer.port
        for url, why in [
                ('http://[::1/x', 'Invalid IPv6 URL'),
                ('http://127.0.0.1:99999/x', 'out of range'),
                ('http://127.0.0.1:http/x', 'Port could not be cast'),
                ('http://127.0.0.1:%d/a b' % port, 'space'),
                ('http:///no-host', 'no host'),
                ('no scheme at all', 'no scheme'),
                ('https://127.0.0.1:%d/?aodh-alarm-ssl-verify=maybe' % port,
                 'aodh-alarm-ssl-verify=maybe'),
                ('', 'empty'),
                (None, 'empty or not a string')]:
            future = notifier.submit(note(url))
            self.assertTrue(future.done(), url)
            delivery = future.result()
            self.assertEqual((False, 0), (delivery.ok, delivery.attempts),
                             url)
            self.assertIn(why, delivery.error, url)
            self.assertIn(repr(notifier_http.mask_url(url)), delivery.error)
        self.assertNextDelivered(notifier)
        self.assertEqual(1, self.consumer.count())

    def test_aodh_conf_read_from_option(self):
        # No aodh_conf given: it is read from [doctor_notifier]
        # aodh_config_file, and a bad file is a clear error.
        notifier = self.notifier(aodh_config_file='/nonexistent/aodh.conf')
        delivery = self.deliver(notifier, note('log://'))
        self.assertFalse(delivery.ok)
        self.assertIn('Aodh configuration cannot be read', delivery.error)
        self.assertIn("'log'", delivery.error)
        self.assertNextDelivered(notifier)

    def test_aodh_defaults_without_a_file(self):
        logger = self.useFixture(fixtures.FakeLogger(
            format='%(name)s %(message)s'))
        notifier = self.notifier()
        delivery = self.deliver(notifier, note('log://'))
        self.assertTrue(delivery.ok, delivery.error)
        self.assertIn('aodh.notifier.log', logger.output)


class TestAodhPlugins(NotifierTestCase):

    def test_log_delegated_to_aodh(self):
        logger = self.useFixture(fixtures.FakeLogger(
            format='%(name)s %(message)s'))
        notifier = self.notifier(aodh_conf=make_aodh_conf())
        delivery = self.deliver(notifier, note('log://vnfm/x', 'al-9'))
        self.assertEqual((True, 1, None, 'log://vnfm/x'),
                         (delivery.ok, delivery.attempts, delivery.error,
                          delivery.url))
        self.assertIn('aodh.notifier.log Notifying alarm host-down al-9 of '
                      'critical priority from ok to alarm with action '
                      'log://vnfm/x because Event hits the query.',
                      logger.output)

    def test_plugin_gets_aodh_arguments(self):
        notify = self.useFixture(fixtures.MockPatch(
            'aodh.notifier.test.TestAlarmNotifier.notify',
            autospec=True)).mock
        aodh_conf = make_aodh_conf()
        notifier = self.notifier(aodh_conf=aodh_conf)
        delivery = self.deliver(notifier, note('test://vnfm/x?y=1', 'al-3'))
        self.assertTrue(delivery.ok, delivery)
        self.assertEqual(1, notify.call_count)
        plugin, action = notify.call_args[0][:2]
        self.assertIs(aodh_conf, plugin.conf)
        self.assertEqual(('test', 'vnfm', '/x', 'y=1'),
                         (action.scheme, action.netloc, action.path,
                          action.query))
        self.assertEqual(('al-3', 'host-down', 'critical', 'ok', 'alarm',
                          'Event hits the query', REASON_DATA),
                         notify.call_args[0][2:])

    def test_plugin_failure(self):
        self.useFixture(fixtures.MockPatch(
            'aodh.notifier.log.LogAlarmNotifier.notify',
            side_effect=RuntimeError('boom')))
        notifier = self.notifier(aodh_conf=make_aodh_conf())
        delivery = self.deliver(notifier, note('log://'))
        self.assertEqual((False, 1), (delivery.ok, delivery.attempts))
        self.assertIn("Aodh notifier plugin 'log' failed", delivery.error)
        self.assertIn('RuntimeError: boom', delivery.error)


class TestHttps(NotifierTestCase):

    def setUp(self):
        super().setUp()
        self.certs = _Certificates(self.useFixture(fixtures.TempDir()).path)
        self.tls = self.useFixture(lab_consumer.ConsumerFixture(
            ssl_context=self.certs.server_context())).consumer

    def test_verified_with_ca_file(self):
        notifier = self.notifier(ca_file=self.certs.ca_file)
        delivery = self.deliver(notifier, note(self.tls.url()))
        self.assertTrue(delivery.ok, delivery)
        self.assertTrue(self.tls.url().startswith('https://'))
        self.assertEqual('alarm-1', self.tls.received[0].body['alarm_id'])

    def test_untrusted_certificate_fails_without_retry(self):
        notifier = self.notifier()
        delivery = self.deliver(notifier, note(self.tls.url()))
        self.assertEqual((False, 1), (delivery.ok, delivery.attempts))
        self.assertIn('CERTIFICATE_VERIFY_FAILED', delivery.error)
        self.assertEqual(0, self.tls.count())

    def test_verify_off_by_query_parameter(self):
        notifier = self.notifier()
        url = self.tls.url() + '?aodh-alarm-ssl-verify=0'
        delivery = self.deliver(notifier, note(url))
        self.assertTrue(delivery.ok, delivery)
        self.assertEqual('aodh-alarm-ssl-verify=0',
                         self.tls.received[0].query)

    def test_verify_option_off_and_on_by_query_parameter(self):
        notifier = self.notifier(ssl_verify=False)
        self.assertTrue(self.deliver(notifier, note(self.tls.url())).ok)
        delivery = self.deliver(notifier, note(
            self.tls.url() + '?aodh-alarm-ssl-verify=1'))
        self.assertFalse(delivery.ok)
        self.assertIn('CERTIFICATE_VERIFY_FAILED', delivery.error)

    def test_client_certificate(self):
        mutual = self.useFixture(lab_consumer.ConsumerFixture(
            ssl_context=self.certs.server_context(
                require_client_cert=True))).consumer
        without = self.notifier(ca_file=self.certs.ca_file, max_retries=0)
        self.assertFalse(self.deliver(without, note(mutual.url())).ok)
        self.assertEqual(0, mutual.count())
        with_cert = self.notifier(ca_file=self.certs.ca_file,
                                  cert_file=self.certs.client_cert,
                                  key_file=self.certs.client_key)
        delivery = self.deliver(with_cert, note(mutual.url()))
        self.assertTrue(delivery.ok, delivery)
        self.assertEqual(1, mutual.count())

    def test_bad_ca_file(self):
        notifier = self.notifier(ca_file='/nonexistent/ca.pem')
        delivery = self.deliver(notifier, note(self.tls.url()))
        self.assertFalse(delivery.ok)
        self.assertIn('TLS configuration error', delivery.error)
        self.assertIn(self.tls.url(), delivery.error)


class TestFlushAndStop(NotifierTestCase):

    def test_flush(self):
        notifier = self.notifier()
        self.assertTrue(notifier.flush(0))
        self.consumer.hang()
        futures = [notifier.submit(note(self.consumer.url(), 'a%d' % i))
                   for i in range(3)]
        self.assertTrue(self.consumer.wait_for(1))
        self.assertFalse(notifier.flush(timeout=0.1))
        self.consumer.release()
        self.assertTrue(notifier.flush(timeout=10))
        self.assertTrue(all(f.done() and f.result().ok for f in futures))

    def test_stop_fails_in_flight_and_queued(self):
        notifier = self.notifier(max_connections_per_consumer=1)
        self.consumer.hang()
        in_flight = notifier.submit(note(self.consumer.url(), 'a'))
        self.assertTrue(self.consumer.wait_for(1))
        queued = notifier.submit(note(self.consumer.url(), 'b'))
        notifier.stop()
        for future in (in_flight, queued):
            delivery = future.result(10)
            self.assertFalse(delivery.ok)
            self.assertIn('stopped', delivery.error)
        later = notifier.submit(note(self.consumer.url(), 'c'))
        self.assertTrue(later.done())
        self.assertIn('stopped', later.result().error)
        self.assertEqual(1, self.consumer.count())

    def test_cancelled_notification_not_sent(self):
        notifier = self.notifier(max_connections_per_consumer=1)
        self.consumer.hang()
        first = notifier.submit(note(self.consumer.url(), 'first'))
        self.assertTrue(self.consumer.wait_for(1))
        cancelled = notifier.submit(note(self.consumer.url(), 'cancelled'))
        self.assertTrue(cancelled.cancel())
        last = notifier.submit(note(self.consumer.url(), 'last'))
        self.consumer.release()
        self.assertTrue(first.result(10).ok)
        self.assertTrue(last.result(10).ok)
        self.assertEqual(['first', 'last'],
                         [r.body['alarm_id'] for r in self.consumer.received])
