"""The egress policy: refusals by default, operator lists, resolution."""

import ipaddress
import logging
import socket
import threading

import fixtures
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts
from oslotest import base

from doctor_ext.evaluator import store
from doctor_ext.inspector import nova_connection
from doctor_ext.notifier import client
from doctor_ext.notifier import egress
from doctor_ext.notifier import http as notifier_http
from doctor_ext.notifier import models
from doctor_ext_lab import consumer as lab_consumer
from tests import fixtures as doctor_fixtures


def ip(text):
    return ipaddress.ip_address(text)


def note(url, alarm_id='alarm-1'):
    return notifier_http.Notification(url, alarm_id, 'host-down', 'critical',
                                      'ok', 'alarm', 'r', {}, 'p1')


class EgressTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.options = self.useFixture(doctor_fixtures.NotifierConf())
        self.conf, self.config = self.options.conf, self.options.config
        self.options.set(retry_backoff=0.001, retry_backoff_max=0.002)

    def policy(self, **options):
        self.options.set(**options)
        return egress.EgressPolicy(self.conf)


class TestDefaults(EgressTestCase):

    def test_refused_by_default(self):
        policy = self.policy()
        for address, why in [
                ('127.0.0.1', 'loopback'), ('127.9.9.9', 'loopback'),
                ('::1', 'loopback'), ('::ffff:127.0.0.1', 'loopback'),
                ('0.0.0.0', 'unspecified'), ('::', 'unspecified'),
                ('169.254.169.254', 'link-local'),
                ('fe80::1', 'link-local')]:
            self.assertIn(why, policy.why_refused(egress.ip_of(address)),
                          address)

    def test_other_addresses_allowed(self):
        policy = self.policy()
        for address in ('192.0.2.10', '10.1.2.3', '2001:db8::1',
                        '172.16.0.1'):
            self.assertIsNone(policy.why_refused(ip(address)), address)

    def test_own_endpoints_refused(self):
        store.register_opts(self.conf)
        nova_connection.register_opts(self.conf)
        self.conf.register_opts(dict(messaging_opts.list_opts())[None])
        self.config.config(group='doctor_evaluator',
                           aodh_connection='postgresql://aodh:pw@192.0.2.10'
                                           ':5432/aodh')
        self.config.config(transport_url='rabbit://u:p@192.0.2.11:5672,'
                                         'u:p@192.0.2.12:5672/')
        self.config.config(group='doctor_nova', auth_type='password',
                           endpoint_override='http://192.0.2.14:8774/v2.1')
        # The auth plugin's options exist once it is loaded, as in the
        # fencer.
        self.conf.register_opts(
            nova_connection.ks_loading.get_auth_plugin_conf_options(
                'password'),
            group='doctor_nova')
        self.config.config(group='doctor_nova',
                           auth_url='http://192.0.2.13:5000/v3')
        policy = self.policy()
        for address in ('192.0.2.10', '192.0.2.11', '192.0.2.12',
                        '192.0.2.13', '192.0.2.14'):
            why = policy.why_refused(ip(address))
            self.assertIsNotNone(why, address)
            self.assertIn('an endpoint of this agent', why)
        self.assertIsNone(policy.why_refused(ip('192.0.2.15')))

    def test_own_endpoint_by_name(self):
        store.register_opts(self.conf)
        self.config.config(group='doctor_evaluator',
                           aodh_connection='mysql+pymysql://a:b@localhost/x')
        policy = self.policy(egress_allow=['127.0.0.2/32'])
        # localhost's address is the database's, and loopback.
        self.assertIn('loopback', policy.why_refused(ip('127.0.0.1')))
        self.assertIsNone(policy.why_refused(ip('127.0.0.2')))


class TestOperatorLists(EgressTestCase):

    def test_most_specific_entry_decides(self):
        policy = self.policy(egress_allow=['10.0.0.0/8', '198.51.100.7/32'],
                             egress_deny=['10.1.0.0/16', '198.51.100.0/24'])
        self.assertIsNone(policy.why_refused(ip('10.2.0.1')))
        self.assertIn('egress_deny (10.1.0.0/16)',
                      policy.why_refused(ip('10.1.2.3')))
        self.assertIsNone(policy.why_refused(ip('198.51.100.7')))
        self.assertIsNotNone(policy.why_refused(ip('198.51.100.8')))

    def test_deny_everything_but(self):
        policy = self.policy(egress_deny=['0.0.0.0/0', '::/0'],
                             egress_allow=['192.0.2.0/24'])
        self.assertIsNone(policy.why_refused(ip('192.0.2.5')))
        self.assertIsNotNone(policy.why_refused(ip('198.51.100.1')))
        self.assertIsNotNone(policy.why_refused(ip('2001:db8::1')))

    def test_deny_wins_a_tie(self):
        policy = self.policy(egress_allow=['192.0.2.0/24'],
                             egress_deny=['192.0.2.0/24'])
        self.assertIsNotNone(policy.why_refused(ip('192.0.2.5')))

    def test_allow_overrides_the_defaults(self):
        policy = self.policy(egress_allow=['127.0.0.0/8', 'fe80::/10'])
        self.assertIsNone(policy.why_refused(ip('127.0.0.1')))
        self.assertIsNone(policy.why_refused(ip('fe80::1')))
        self.assertIsNotNone(policy.why_refused(ip('::1')))

    def test_bad_cidr_named_in_the_error(self):
        path = self.useFixture(fixtures.TempDir()).join('agent.conf')
        with open(path, 'w') as f:
            f.write('[doctor_notifier]\negress_allow = 10.0.0.0/8, '
                    '10.0.0.0/33\n')
        conf = cfg.ConfigOpts()
        conf(['--config-file', path])
        notifier_http.register_opts(conf)
        error = self.assertRaises(cfg.ConfigFileValueError,
                                  lambda: conf.doctor_notifier.egress_allow)
        self.assertIn('10.0.0.0/33', str(error))
        self.assertIn('egress_allow', str(error))


class TestResolution(EgressTestCase):

    def test_addresses_checked_after_resolution(self):
        policy = self.policy()
        error = self.assertRaises(egress.EgressRefused, policy.addresses,
                                  'localhost', 80)
        self.assertIn('localhost (127.0.0.1) is a loopback address',
                      str(error))

    def test_connection_goes_to_the_checked_address(self):
        # A name that cannot resolve: the connection can only reach the
        # consumer through the address its resolver returned.
        consumer = self.useFixture(lab_consumer.ConsumerFixture()).consumer
        checked = socket.getaddrinfo('127.0.0.1', consumer.port,
                                     type=socket.SOCK_STREAM)
        conn = client.Connection('vnfm.invalid', consumer.port, None, 5, 5,
                                 resolve=lambda host, port: checked)
        self.addCleanup(conn.close)
        conn.connect()
        status, _ = conn.exchange(b'POST /x HTTP/1.1\r\nHost: vnfm\r\n'
                                  b'content-length: 2\r\n\r\n{}')
        self.assertEqual(200, status)
        self.assertEqual(1, consumer.count())


class TestNotifierRefusals(EgressTestCase):

    def setUp(self):
        super().setUp()
        self.consumer = self.useFixture(
            lab_consumer.ConsumerFixture()).consumer
        self.logger = self.useFixture(fixtures.FakeLogger(
            level=logging.DEBUG, format='%(levelname)s %(message)s'))

    def notifier(self):
        notifier = notifier_http.HttpNotifier(self.conf)
        self.addCleanup(notifier.stop)
        return notifier

    def test_literal_refused_at_submit_and_logged_once_per_alarm(self):
        notifier = self.notifier()
        url = 'http://bob:pw@169.254.169.254/latest/meta-data?token=t'
        first = notifier.submit(note(url, 'al-1'))
        again = notifier.submit(note(url, 'al-1'))
        other = notifier.submit(note(self.consumer.url(), 'al-2'))
        for future in (first, again, other):
            self.assertTrue(future.done())
            delivery = future.result()
            self.assertEqual((False, models.REFUSED, 0),
                             (delivery.ok, delivery.outcome,
                              delivery.attempts))
            self.assertIn('refused by the egress policy', delivery.error)
        self.assertIn('http://bob:***@169.254.169.254/latest/meta-data?'
                      'token=***', first.result().error)
        errors = [line for line in self.logger.output.splitlines()
                  if line.startswith('ERROR')]
        self.assertEqual(1, sum('al-1' in line for line in errors), errors)
        self.assertEqual(1, sum('al-2' in line for line in errors), errors)
        self.assertNotIn(':pw@', self.logger.output)
        self.assertEqual(3, notifier.counters[models.REFUSED])
        self.assertEqual(0, self.consumer.count())

    def test_name_resolving_inside_refused_without_retry(self):
        notifier = self.notifier()
        delivery = notifier.submit(note(
            'http://localhost:%d/x' % self.consumer.port)).result(10)
        self.assertEqual((False, models.REFUSED, 0),
                         (delivery.ok, delivery.outcome, delivery.attempts))
        self.assertIn('localhost (127.0.0.1) is a loopback address',
                      delivery.error)
        self.assertEqual(0, self.consumer.count())

    def test_allowed_by_the_operator(self):
        self.options.set(egress_allow=['127.0.0.0/8'])
        notifier = self.notifier()
        for host in ('127.0.0.1', 'localhost'):
            url = 'http://%s:%d/x' % (host, self.consumer.port)
            self.assertTrue(notifier.submit(note(url)).result(10).ok, host)
        self.assertEqual(2, self.consumer.count())


class _Redirector:
    """Answers every request with a 307 to ``location``."""

    def __init__(self, location):
        self.requests = 0
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.answer = ('HTTP/1.1 307 Temporary Redirect\r\nLocation: %s\r\n'
                       'Content-Length: 0\r\n\r\n' % location).encode()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b''
                while b'\r\n\r\n' not in data:
                    data += conn.recv(65536)
                self.requests += 1
                conn.sendall(self.answer)

    def close(self):
        self.sock.close()


class TestRedirects(EgressTestCase):

    def test_redirect_not_followed(self):
        self.options.set(egress_allow=['127.0.0.0/8'])
        consumer = self.useFixture(lab_consumer.ConsumerFixture()).consumer
        redirector = _Redirector(consumer.url('/elsewhere'))
        self.addCleanup(redirector.close)
        notifier = notifier_http.HttpNotifier(self.conf)
        self.addCleanup(notifier.stop)
        delivery = notifier.submit(note(
            'http://127.0.0.1:%d/x' % redirector.port)).result(10)
        self.assertEqual((False, 307, 1),
                         (delivery.ok, delivery.status, delivery.attempts))
        self.assertIn('redirects are not followed', delivery.error)
        self.assertEqual(1, redirector.requests)
        self.assertEqual(0, consumer.count())
