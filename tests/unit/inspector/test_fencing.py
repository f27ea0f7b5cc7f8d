"""The fencer against the Nova double, over real HTTP, through openstacksdk."""

import json
import logging
import time
import uuid

from ceilometer import keystone_client
import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslotest import base

from doctor_ext.inspector import fencing
from doctor_ext.inspector import nova_connection
from doctor_ext_lab import nova as nova_double


class FencerTestCase(base.BaseTestCase):

    double_kwargs = {}
    user = 'admin'

    def setUp(self):
        super().setUp()
        self.nova = self.useFixture(
            nova_double.NovaDoubleFixture(**self.double_kwargs)).nova
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-ext-test')
        self.cfg = self.useFixture(config_fixture.Config(self.conf))
        nova_connection.register_opts(self.conf)
        self.nova.configure(self.conf, nova_connection.GROUP, user=self.user)
        self.cfg.config(group=nova_connection.GROUP, retry_backoff=0.01,
                        call_timeout=5.0)
        self.nova.add_host('compute-1')
        self.nova.add_host('compute-2')

    def fencer(self, **overrides):
        if overrides:
            self.cfg.config(group=nova_connection.GROUP, **overrides)
        fencer = fencing.NovaFencer(self.conf)
        self.addCleanup(fencer.close)
        return fencer


class TestOptions(base.BaseTestCase):

    def test_opts(self):
        names = {o.dest for o in nova_connection.OPTS}
        self.assertEqual({'max_parallel_resets', 'call_timeout',
                          'max_retries', 'retry_backoff', 'region_name',
                          'interface'}, names)
        conf = cfg.ConfigOpts()
        nova_connection.register_opts(conf)
        nova_connection.register_opts(conf)  # idempotent
        group = conf[nova_connection.GROUP]
        self.assertEqual((32, 10.0, 3, 0.2),
                         (group.max_parallel_resets, group.call_timeout,
                          group.max_retries, group.retry_backoff))
        self.assertEqual('doctor_nova', nova_connection.GROUP)

    def test_list_auth_opts(self):
        opts = nova_connection.list_auth_opts()
        names = [o.dest for o in opts]
        self.assertEqual(len(names), len(set(names)))
        for name in ('auth_type', 'auth_section', 'auth_url', 'username',
                     'password', 'project_name', 'user_domain_name',
                     'cafile', 'insecure', 'timeout', 'valid_interfaces',
                     'endpoint_override'):
            self.assertIn(name, names)
        # Nothing listed twice for the config generator.
        self.assertEqual(set(), set(names) & {
            o.dest for o in nova_connection.OPTS})
        self.assertTrue([o for o in opts if o.dest == 'password'][0].secret)

    def test_no_credentials_is_a_clear_error(self):
        conf = cfg.ConfigOpts()
        conf([])
        fencer = fencing.NovaFencer(conf)
        self.addCleanup(fencer.close)
        exc = self.assertRaises(fencing.FencingError,
                                fencer.servers_on_host, 'compute-9')
        self.assertIn('[doctor_nova]', str(exc))
        self.assertIn('auth_type', str(exc))


class TestQueries(FencerTestCase):

    def test_constructing_touches_no_network(self):
        fencing.NovaFencer(self.conf)
        self.assertEqual([], self.nova.calls)

    def test_servers_on_host(self):
        mine = {self.nova.add_server('compute-1', 'p%d' % i,
                                     user_id='u%d' % i, name='vm%d' % i)
                for i in range(3)}
        self.nova.add_server('compute-2', 'p0')
        refs = self.fencer().servers_on_host('compute-1')
        self.assertEqual(mine, {r.id for r in refs})
        ref = [r for r in refs if r.name == 'vm1'][0]
        self.assertEqual(('p1', 'u1', 'compute-1', 'ACTIVE'),
                         (ref.project_id, ref.user_id, ref.host, ref.status))
        listing = self.nova.calls_to('/servers/detail$')[-1]
        self.assertIn('host=compute-1', listing.query)
        self.assertIn('all_tenants', listing.query)

    def test_all_servers_paginates(self):
        self.nova.max_limit = 10
        ids = {self.nova.add_server('compute-%d' % (i % 2 + 1), 'p%d' % i)
               for i in range(25)}
        refs = self.fencer().all_servers()
        self.assertEqual(ids, {r.id for r in refs})
        self.assertEqual(25, len(refs))
        self.assertGreaterEqual(len(self.nova.calls_to('/servers/detail$')),
                                3)

    def test_listing_retries_then_names_the_host(self):
        self.nova.add_server('compute-1', 'p')
        self.nova.fail(503, count=1, path_regex='/servers/detail$')
        self.assertEqual(1, len(self.fencer().servers_on_host('compute-1')))
        self.nova.fail(500, path_regex='/servers/detail$')
        exc = self.assertRaises(fencing.FencingError,
                                self.fencer(max_retries=1).servers_on_host,
                                'compute-1')
        self.assertIn('compute-1', str(exc))
        self.assertIn('HTTP 500', str(exc))

    def test_version_discovery_failure_retried(self):
        self.nova.add_server('compute-1', 'p')
        self.nova.fail(503, count=2, path_regex=r'^/compute/v2\.1/?$')
        self.assertEqual(1, len(self.fencer().servers_on_host('compute-1')))
        self.assertEqual([503, 503, 200],
                         [c.status for c in self.nova.calls_to(
                             r'^/compute/v2\.1/?$')])


class TestForceDown(FencerTestCase):

    def test_by_uuid_at_253(self):
        self.assertTrue(self.fencer().force_down('compute-1'))
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        self.assertFalse(self.nova.service('compute-2')['forced_down'])
        puts = self.nova.calls_to('/os-services/', method='PUT')
        self.assertEqual(
            ['/compute/v2.1/os-services/%s'
             % self.nova.service('compute-1')['uuid']],
            [c.path for c in puts])
        version = tuple(int(x) for x in puts[0].microversion.split('.'))
        self.assertGreaterEqual(version, (2, 53))
        self.assertEqual(200, puts[0].status)

    def test_unknown_host(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.assertFalse(self.fencer().force_down('compute-404'))
        self.assertIn('compute-404', logger.output)
        self.assertIn('no nova-compute service', logger.output)
        self.assertEqual([], self.nova.calls_to('/os-services/',
                                                method='PUT'))

    def test_retried_on_503(self):
        self.nova.fail(503, count=2, path_regex='/os-services/', method='PUT')
        self.assertTrue(self.fencer().force_down('compute-1'))
        self.assertEqual([503, 503, 200],
                         [c.status for c in self.nova.calls_to(
                             '/os-services/', method='PUT')])

    def test_hung_call_times_out(self):
        self.nova.hang('/os-services')
        fencer = self.fencer(call_timeout=0.3, max_retries=0)
        started = time.monotonic()
        self.assertFalse(fencer.force_down('compute-1'))
        self.assertLess(time.monotonic() - started, 0.3 + 3.0)
        self.assertEqual(1, self.nova.held)


class TestForceDownFallback(FencerTestCase):

    double_kwargs = {'max_version': '2.52'}

    def test_falls_back_to_211_force_down(self):
        self.assertTrue(self.fencer().force_down('compute-1'))
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        puts = self.nova.calls_to('/os-services/', method='PUT')
        self.assertEqual(
            [('/compute/v2.1/os-services/force-down', '2.11', 200)],
            [(c.path, c.microversion, c.status) for c in puts])
        self.assertEqual({'host': 'compute-1', 'binary': 'nova-compute',
                          'forced_down': True},
                         json.loads(puts[0]['body']))


class TestForceDownUnsupported(FencerTestCase):

    double_kwargs = {'max_version': '2.10'}

    def test_no_force_down_before_211(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.assertFalse(self.fencer().force_down('compute-1'))
        self.assertIn('2.11', logger.output)
        self.assertIn('compute-1', logger.output)
        self.assertFalse(self.nova.service('compute-1')['forced_down'])


class TestReset(FencerTestCase):

    def test_200_servers_in_parallel_bounded(self):
        ids = [self.nova.add_server('compute-1', 'p%d' % (i % 5))
               for i in range(200)]
        self.nova.set_latency(0.05, path_regex='/action$')
        fencer = self.fencer(max_parallel_resets=16)
        fencer.servers_on_host('compute-1')  # authenticate, discover
        self.nova.clear_calls()
        started = time.monotonic()
        results = fencer.reset_to_error(ids)
        elapsed = time.monotonic() - started
        self.assertEqual({i: fencing.OK for i in ids}, results)
        self.assertEqual(200, sum(
            1 for s in self.nova.servers_on('compute-1')
            if s['status'] == 'ERROR'))
        self.assertEqual(200, len(self.nova.calls_to('/action$')))
        # In parallel, never more than max_parallel_resets at once.
        self.assertGreater(self.nova.peak_inflight, 1)
        self.assertLessEqual(self.nova.peak_inflight, 16)
        # 200 x 50 ms one by one would be 10 s.
        self.assertLess(elapsed, 5.0)

    def test_500_retried_then_ok(self):
        server = self.nova.add_server('compute-1', 'p')
        self.nova.fail(500, count=2, path_regex='/%s/action$' % server)
        results = self.fencer(max_retries=3).reset_to_error([server])
        self.assertEqual({server: fencing.OK}, results)
        self.assertEqual([500, 500, 202],
                         [c.status for c in self.nova.calls_to('/action$')])
        self.assertEqual('ERROR', self.nova.server(server)['status'])

    def test_bounded_retries_then_clear_failure(self):
        bad = self.nova.add_server('compute-1', 'p')
        good = self.nova.add_server('compute-1', 'p')
        self.nova.fail(503, path_regex='/%s/action$' % bad)
        results = self.fencer(max_retries=2).reset_to_error([bad, good])
        self.assertEqual(fencing.OK, results[good])
        self.assertIn(bad, results[bad])
        self.assertIn('HTTP 503', results[bad])
        self.assertIn('after 3 attempts', results[bad])
        self.assertEqual(3, len(self.nova.calls_to('/%s/action$' % bad)))
        self.assertEqual('ACTIVE', self.nova.server(bad)['status'])

    def test_connection_drop_retried(self):
        server = self.nova.add_server('compute-1', 'p')
        self.nova.disconnect(count=1, path_regex='/action$')
        results = self.fencer().reset_to_error([server])
        self.assertEqual({server: fencing.OK}, results)
        self.assertEqual([0, 202],
                         [c.status for c in self.nova.calls_to('/action$')])

    def test_gone_server_not_retried(self):
        gone = str(uuid.uuid4())
        results = self.fencer().reset_to_error([gone])
        self.assertIn(gone, results[gone])
        self.assertIn('404', results[gone])
        self.assertIn('gone', results[gone])
        self.assertEqual(1, len(self.nova.calls_to('/action$')))

    def test_hung_call_times_out_within_call_timeout(self):
        server = self.nova.add_server('compute-1', 'p')
        fencer = self.fencer(call_timeout=0.3, max_retries=1)
        fencer.servers_on_host('compute-1')  # not held: authenticate first
        self.nova.hang('/action$')
        started = time.monotonic()
        results = fencer.reset_to_error([server])
        elapsed = time.monotonic() - started
        self.assertIn('call_timeout=0.3', results[server])
        self.assertIn(server, results[server])
        # Two attempts of 0.3 s (and a 10 ms backoff), not a hang.
        self.assertGreaterEqual(elapsed, 0.6)
        self.assertLess(elapsed, 0.6 + 3.0)
        self.assertEqual(2, self.nova.held)

    def test_reauthenticates_after_token_revoked(self):
        server = self.nova.add_server('compute-1', 'p')
        fencer = self.fencer()
        fencer.servers_on_host('compute-1')
        self.nova.revoke_tokens()
        self.assertEqual({server: fencing.OK}, fencer.reset_to_error([server]))
        self.assertEqual(2, len(self.nova.calls_to('/auth/tokens$', 'POST')))

    def test_empty_and_duplicate_ids(self):
        fencer = self.fencer()
        self.assertEqual({}, fencer.reset_to_error([]))
        self.assertEqual([], self.nova.calls)
        server = self.nova.add_server('compute-1', 'p')
        self.assertEqual({server: fencing.OK},
                         fencer.reset_to_error([server, server]))
        self.assertEqual(1, len(self.nova.calls_to('/action$')))


class TestMemberUser(FencerTestCase):

    user = 'demo'

    def test_clear_errors_without_admin_role(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        server = self.nova.add_server('compute-1', 'p')
        fencer = self.fencer()
        exc = self.assertRaises(fencing.FencingError,
                                fencer.servers_on_host, 'compute-1')
        self.assertIn('compute-1', str(exc))
        self.assertIn('HTTP 403', str(exc))
        self.assertIn('admin role', str(exc))
        self.assertFalse(fencer.force_down('compute-1'))
        self.assertIn('force-down of nova-compute on host compute-1 failed',
                      logger.output)
        own = self.nova.add_server('compute-1', self.nova.member.project_id)
        results = fencer.reset_to_error([server, own])
        # Its own project's server: the reset-state policy refuses.
        self.assertIn('HTTP 403', results[own])
        self.assertIn(own, results[own])
        # Another project's: Nova hides it (404).
        self.assertIn('HTTP 404', results[server])
        self.assertIn('not visible', results[server])
        # 4xx are not retried.
        self.assertEqual(2, len(self.nova.calls_to('/action$')))
        self.assertFalse(self.nova.service('compute-1')['forced_down'])
        self.assertEqual('ACTIVE', self.nova.server(server)['status'])
        self.assertEqual('ACTIVE', self.nova.server(own)['status'])


class TestCredentials(FencerTestCase):

    def test_wrong_password(self):
        self.cfg.config(group=nova_connection.GROUP, password='not-it')
        exc = self.assertRaises(fencing.FencingError,
                                self.fencer().servers_on_host, 'compute-1')
        self.assertIn('HTTP 401', str(exc))
        self.assertIn('credentials', str(exc))
        self.assertNotIn('not-it', str(exc))

    def test_no_token_or_password_in_logs(self):
        password = 'pw-%s' % uuid.uuid4().hex
        self.nova.add_user('fencer', password, 'admin', roles=('admin',))
        self.cfg.config(group=nova_connection.GROUP, username='fencer',
                        password=password)
        logger = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        # oslo.log's default_log_levels (set up by other tests of the same
        # process) quiet keystoneauth: see its DEBUG traffic here.
        ks_logger = logging.getLogger('keystoneauth')
        self.addCleanup(ks_logger.setLevel, ks_logger.level)
        ks_logger.setLevel(logging.DEBUG)
        server = self.nova.add_server('compute-1', 'p')
        self.nova.fail(500, count=1, path_regex='/action$')
        fencer = self.fencer()
        self.assertEqual(1, len(fencer.servers_on_host('compute-1')))
        self.assertTrue(fencer.force_down('compute-1'))
        self.assertEqual({server: fencing.OK},
                         fencer.reset_to_error([server]))
        self.nova.revoke_tokens()
        fencer.reset_to_error([server])
        tokens = self.nova.issued_tokens
        self.assertEqual(2, len(tokens))
        output = logger.output
        # The capture did see the HTTP traffic (at DEBUG) and our messages.
        self.assertIn('X-Auth-Token', output)
        self.assertIn('Forced down nova-compute on host compute-1', output)
        for secret in tokens + [password]:
            self.assertNotIn(secret, output)

    def test_auth_section_reuses_service_credentials(self):
        # Ceilometer's own [service_credentials] options, as the agent has.
        keystone_client.register_keystoneauth_opts(self.conf)
        self.nova.configure(self.conf, 'service_credentials')
        self.cfg.config(group='service_credentials', interface='internal',
                        region_name='RegionOne')
        for name in ('auth_url', 'username', 'password', 'project_name'):
            self.conf.clear_override(name, group=nova_connection.GROUP)
        self.conf.clear_override('auth_type', group=nova_connection.GROUP)
        self.cfg.config(group=nova_connection.GROUP,
                        auth_section='service_credentials')
        self.nova.add_server('compute-1', 'p')
        self.assertEqual(1,
                         len(self.fencer().servers_on_host('compute-1')))
