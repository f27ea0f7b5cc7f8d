"""What doctor-ext asks of Nova, asked of the Nova double and of real Nova.

The double (doctor_ext/lab/nova.py) stays where real Nova cannot serve (see
doc/source/contributor/testing.rst); everything it still does for the
inspector is checked here against real Nova: the same calls, through the
inspector's own :class:`~doctor_ext.inspector.fencing.NovaFencer` and
Keystone's catalog, and the same assertions on the answers and on the
notifications Nova sends for them. A difference fails on one side only.
"""

import threading
import uuid

import fixtures
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
import oslo_messaging
from oslotest import base as oslo_base

from doctor_ext.inspector import fencing
from doctor_ext.inspector import nova_connection
from doctor_ext.monitor import report
from doctor_ext_lab import nova as nova_mod
from doctor_ext_lab import services
from tests.functional import base
from tests.realnova import cloud as cloud_mod
from tests.realnova import testcase


class Notifications:
    """Nova's legacy and versioned notifications, heard on a pool queue."""

    def __init__(self, url):
        conf = cfg.ConfigOpts()
        conf([], project='doctor-contract')
        self.transport = report.get_transport(conf, url=url)
        self.pool = 'doctor-contract-%s' % uuid.uuid4().hex[:8]
        self.heard = []
        self._lock = threading.Lock()
        targets = [oslo_messaging.Target(topic=t, exchange='nova')
                   for t in ('notifications', 'versioned_notifications')]
        self.listener = oslo_messaging.get_notification_listener(
            self.transport, targets, [self], executor='threading',
            pool=self.pool)
        self.listener.start()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self._lock:
            self.heard.append((publisher_id, event_type, payload))

    def of(self, event_type):
        with self._lock:
            return [(p, pl) for p, e, pl in self.heard if e == event_type]

    def close(self):
        self.listener.stop()
        self.listener.wait()
        self.transport.cleanup()


class NovaContract:
    """The scenarios; a subclass gives the Nova (:meth:`given`)."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(300, gentle=True))
        self.host, self.mine, self.other_host = self.given()
        conf = cfg.ConfigOpts()
        conf([], project='doctor-contract')
        nova_connection.register_opts(conf)
        conf.register_opts(ks_loading.get_auth_plugin_conf_options(
            'password'), group=nova_connection.GROUP)
        for k, v in self.credentials.items():
            conf.set_override(k, v, group=nova_connection.GROUP)
        conf.set_override('retry_backoff', 0.05, group=nova_connection.GROUP)
        self.fencer = fencing.NovaFencer(conf)
        self.addCleanup(self.fencer.close)

    def test_listing_a_hosts_servers_across_projects(self):
        refs = self.fencer.servers_on_host(self.host)
        self.assertEqual(self.mine, {r.id: r.project_id for r in refs})
        self.assertEqual({self.host}, {r.host for r in refs})
        everything = {r.id: r.host for r in self.fencer.all_servers()}
        for vm in self.mine:
            self.assertEqual(self.host, everything[vm])
        self.assertEqual([], self.fencer.servers_on_host('no-such-host'))

    def test_force_down_then_reset_to_error(self):
        self.assertTrue(self.fencer.force_down(self.host))
        svc = self.service(self.host)
        self.assertTrue(svc['forced_down'])
        self.assertFalse(self.service(self.other_host)['forced_down'])
        # Nova's versioned service.update, from the compute's own record.
        (publisher, payload), = base.poll(
            lambda: self.notes.of('service.update'), 10, 'service.update')
        self.assertEqual('nova-compute:%s' % self.host, publisher)
        data = payload['nova_object.data']
        self.assertEqual((self.host, True), (data['host'],
                                             data['forced_down']))

        results = self.fencer.reset_to_error(list(self.mine))
        self.assertEqual({vm: fencing.OK for vm in self.mine}, results)
        for vm in self.mine:
            self.assertEqual('ERROR', self.status(vm))

        # One compute.instance.update per reset, published by the API
        # host, with the instance's own host in its payload.
        def reset_updates():
            got = [u for u in self.notes.of('compute.instance.update')
                   if u[1]['instance_id'] in self.mine and
                   u[1]['state'] == 'error']
            return got if len(got) >= len(self.mine) else None
        updates = base.poll(reset_updates, 10, 'the reset updates')
        self.assertEqual(sorted(self.mine),
                         sorted(u[1]['instance_id'] for u in updates))
        self.assertEqual({'compute.%s' % self.api_host},
                         {p for p, _ in updates})
        self.assertEqual({self.host}, {u[1]['host'] for u in updates})
        self.assertEqual({'active'}, {u[1]['old_state'] for u in updates})
        self.assertEqual(set(self.mine.values()),
                         {u[1]['tenant_id'] for u in updates})

    def test_unknown_host_and_server(self):
        self.assertFalse(self.fencer.force_down('no-such-host'))
        gone = str(uuid.uuid4())
        result = self.fencer.reset_to_error([gone])[gone]
        self.assertIn(gone, result)
        self.assertIn('the server is gone', result)


class TestContractOnDouble(NovaContract, oslo_base.BaseTestCase):

    def given(self):
        broker = services.Broker().start()
        self.addCleanup(broker.stop)
        nova = self.useFixture(nova_mod.NovaDoubleFixture(
            transport_url=broker.url)).nova
        self.notes = Notifications(broker.url)
        self.addCleanup(self.notes.close)
        self.api_host = nova.api_host
        self.credentials = dict(nova.credentials(), region_name=nova.region)
        self.service = nova.service
        self.status = lambda vm: nova.server(vm)['status']
        nova.add_host('compute-2')
        mine = {nova.add_server('compute-1', p): p
                for p in ('project-a', 'project-a', 'project-b')}
        nova.add_server('compute-2', 'project-c')
        return 'compute-1', mine, 'compute-2'


class TestContractOnRealNova(NovaContract, oslo_base.BaseTestCase):
    HOST = 'compute-2'

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cloud = testcase.RealNovaTest.cloud = cloud_mod.shared()
        testcase.RealNovaTest.suite_servers()

    def given(self):
        cloud = self.cloud
        self.notes = Notifications(cloud.broker.url)
        self.addCleanup(self.notes.close)
        self.addCleanup(cloud.restore, self.HOST)
        self.api_host = cloud_mod.API_HOST
        self.credentials = cloud.credentials()
        self.service = cloud.service
        self.status = lambda vm: cloud.server(vm)['status']
        mine = {s['id']: s['tenant_id'] for s in cloud.servers(self.HOST)}
        return self.HOST, mine, 'compute-1'
