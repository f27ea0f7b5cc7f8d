"""Host maintenance: the tracker, its wiring in the inspector, the fencer."""

import io
import json
import logging
import os
import threading
import time
from unittest import mock
import uuid

from ceilometer.event import converter
from ceilometer import service as ceilometer_service
import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslotest import base
from stevedore import extension

from doctor_ext.cmd import maintenance_status
from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import core
from doctor_ext.inspector import faults
from doctor_ext.inspector import fencing
from doctor_ext.inspector import maintenance
from doctor_ext.inspector import maintenance_events as mevents
from doctor_ext.inspector import maintenance_state
from doctor_ext.inspector import nova_connection
from doctor_ext.inspector import report_check
from doctor_ext.inspector import resource_map
from doctor_ext import opts
from doctor_ext_lab import nova as nova_double
from tests import fixtures as doctor_fixtures

DEFINITIONS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))), 'etc', 'ceilometer',
    'event_definitions.yaml')


class RecordingEngine:
    """Keeps the events it is asked to evaluate; can refuse them."""

    owner = 'agent-test'

    def __init__(self, store=None):
        self.store = store
        self.events = []
        self.refuse = None
        self.lock = threading.Lock()

    def evaluate(self, evs, received=None):
        if self.refuse is not None:
            raise self.refuse
        with self.lock:
            self.events.extend(evs)
        return []

    def of_type(self, event_type):
        with self.lock:
            return [e for e in self.events if e.event_type == event_type]


class FakeFencer:
    def __init__(self, servers=(), refuse=()):
        self.servers = list(servers)
        self.refuse = set(refuse)
        self.migrated = []
        self.migrated_at = None
        self.called = threading.Event()

    def servers_on_host(self, host):
        return [s for s in self.servers if s.host == host]

    def all_servers(self):
        return list(self.servers)

    def live_migrate(self, ids):
        self.migrated.extend(ids)
        self.migrated_at = time.time()
        self.called.set()
        return {i: ('live migration of server %s failed: HTTP 409' % i
                    if i in self.refuse else fencing.OK) for i in ids}

    def force_down(self, host):
        return True

    def reset_to_error(self, ids):
        return {i: fencing.OK for i in ids}


def service_update(host, disabled, reason=None, forced_down=0,
                   binary='nova-compute', project=None):
    return events.make_event('service.update', {
        'host': host, 'binary': binary, 'disabled': disabled,
        'disabled_reason': reason, 'forced_down': forced_down,
        'tenant_id': project})


def instance_event(event_type, vm, host, project, state='active'):
    return events.make_event(event_type, {
        'instance_id': vm, 'tenant_id': project, 'user_id': 'u-' + project,
        'host': host, 'state': state})


def traits(event):
    return dict(event.traits)


class MaintenanceTestCase(base.BaseTestCase):
    ADMIN = 'admin-project'

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-ext-test')
        self.cfg = self.useFixture(config_fixture.Config(self.conf))
        maintenance.register_opts(self.conf)
        # Maintenance here; the report check has its own tests.
        report_check.register_opts(self.conf)
        self.cfg.config(group=report_check.GROUP, verify=False)
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.cfg.config(group=maintenance.GROUP, state_dir=self.state_dir,
                        admin_project_id=self.ADMIN, check_interval=0.05)
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        # The shared tables (instance map, fault journal) on PostgreSQL.
        db = self.useFixture(doctor_fixtures.AodhDatabase())
        self.store = store_mod.AodhStore(doctor_fixtures.store_conf(db.url))
        self.addCleanup(self.store.dispose)
        self.engine = RecordingEngine(self.store)
        self.fencer = FakeFencer()
        self.map = resource_map.ResourceMap()
        self.map.replace_all([
            resource_map.Instance('a1', 'pa', 'ua', 'compute-1'),
            resource_map.Instance('a2', 'pa', 'ua', 'compute-1'),
            resource_map.Instance('b1', 'pb', 'ub', 'compute-1'),
            resource_map.Instance('c1', 'pc', 'uc', 'compute-1'),
            resource_map.Instance('a9', 'pa', 'ua', 'compute-2'),
        ])
        self.inspector = core.Inspector(self.conf, self.engine, self.fencer,
                                        rmap=self.map)
        self.addCleanup(self.inspector.stop)
        self.tracker = self.inspector.maintenance

    def owners(self, state=mevents.IN_MAINTENANCE):
        return {e.traits['instance_id']: e.traits['tenant_id']
                for e in self.engine.of_type(mevents.OWNER_EVENT)
                if e.traits['state'] == state}

    def admin_events(self, event_type=mevents.HOST_EMPTY_EVENT):
        return self.engine.of_type(event_type)

    def disable(self, host='compute-1', reason='firmware upgrade'):
        return self.inspector.handle(service_update(host, 1, reason))

    def state(self, host='compute-1'):
        states = maintenance_state.read_states(self.state_dir, [host])
        return states[0] if states else None


class TestEnter(MaintenanceTestCase):

    def test_disabled_with_reason_warns_each_owner_of_its_instances(self):
        self.assertIsNone(self.disable())
        self.assertTrue(self.tracker.in_maintenance('compute-1'))
        self.assertEqual({'a1': 'pa', 'a2': 'pa', 'b1': 'pb', 'c1': 'pc'},
                         self.owners())
        event = next(e for e in self.engine.of_type(mevents.OWNER_EVENT)
                     if e.traits['instance_id'] == 'b1')
        t = traits(event)
        self.assertEqual('pb', event.project)
        self.assertEqual('compute-1', t['host'])
        self.assertEqual('firmware upgrade', t['reason'])
        self.assertEqual('ub', t['user_id'])
        self.assertEqual(events.DATETIME_TYPE,
                         event.trait_types['window_start'])
        self.assertNotIn('window_end', t)      # not known for a disable
        self.assertNotIn('migrate_at', t)      # no deadline by default
        sessions = {e.traits['session_id']
                    for e in self.engine.of_type(mevents.OWNER_EVENT)}
        self.assertEqual(1, len(sessions))
        # Not empty: the administrator is not told anything yet.
        self.assertEqual([], self.admin_events())
        self.assertIn('Host compute-1 in maintenance (firmware upgrade',
                      self.log.output)

    def test_repeated_disable_warns_once(self):
        self.disable()
        self.disable(reason='another reason')
        self.assertEqual(4, len(self.engine.of_type(
            mevents.OWNER_EVENT)))
        self.assertIn('already in maintenance', self.log.output)

    def test_not_a_maintenance(self):
        cases = [
            service_update('compute-1', 1, None),             # no reason
            service_update('compute-1', 1, '   '),
            service_update('compute-1', 1, 'None'),
            service_update('compute-1', 1, 'AUTO: Connection to libvirt '
                           'lost: 1'),
            service_update('compute-1', 1, 'Auto-disabled due to 10 '
                           'build failures'),
            service_update('compute-1', 1, 'disk', binary='nova-conductor'),
            service_update('compute-1', 0, None),
            events.make_event('service.update', {'host': 'compute-1'}),
        ]
        for event in cases:
            self.assertIsNone(self.tracker.host_state(event))
        self.assertFalse(self.tracker.in_maintenance('compute-1'))
        self.assertEqual([], self.engine.events)

    def test_forced_down_stays_a_fault(self):
        fault = self.inspector.handle(service_update(
            'compute-1', 1, 'broken', forced_down=1))
        self.assertIsInstance(fault, faults.HostFault)
        self.assertFalse(self.tracker.in_maintenance('compute-1'))
        # The fault events, not maintenance ones.
        self.assertEqual([], self.engine.of_type(mevents.OWNER_EVENT))
        self.assertEqual(4, len(self.engine.of_type(
            'compute.instance.update')))

    def test_maintenance_host_event(self):
        event = events.make_event('maintenance.host', {
            'host': 'compute-1', 'session_id': 's-1', 'reason': 'BIOS',
            'state': 'IN_MAINTENANCE', 'project_id': 'ops',
            'tenant_id': 'ops',
            'window_start': '2030-01-01T10:00:00',
            'window_end': '2030-01-01T12:00:00'})
        self.cfg.config(group=maintenance.GROUP, admin_project_id=None)
        self.inspector.handle(event)
        self.assertEqual(4, len(self.owners()))
        t = traits(self.engine.of_type(mevents.OWNER_EVENT)[0])
        self.assertEqual('s-1', t['session_id'])
        self.assertEqual('BIOS', t['reason'])
        self.assertEqual('2030-01-01T12:00:00', t['window_end'].isoformat())
        # No admin_project_id: the maintenance event's project is used.
        for vm, host in (('a1', 'compute-2'), ('a2', 'compute-2'),
                         ('b1', 'compute-3'), ('c1', 'compute-3')):
            self.inspector.handle(instance_event(
                'compute.instance.update', vm, host, 'x'))
        (empty,) = self.admin_events()
        self.assertEqual('ops', empty.project)
        self.assertEqual('s-1', empty.traits['session_id'])
        self.inspector.handle(events.make_event('maintenance.host.end', {
            'host': 'compute-1', 'tenant_id': 'ops'}))
        self.assertFalse(self.tracker.in_maintenance('compute-1'))
        self.assertEqual(1, len(self.admin_events(
            mevents.HOST_COMPLETE_EVENT)))

    def test_fenix_complete_state_ends(self):
        self.disable()
        self.inspector.handle(events.make_event('maintenance.host', {
            'host': 'compute-1', 'state': 'MAINTENANCE_COMPLETE'}))
        self.assertFalse(self.tracker.in_maintenance('compute-1'))

    def test_empty_at_start_admin_told_at_once(self):
        self.inspector.handle(service_update('compute-7', 1, 'retire'))
        self.assertEqual({}, self.owners())
        (empty,) = self.admin_events()
        self.assertEqual(self.ADMIN, empty.project)
        self.assertEqual('compute-7', empty.traits['host'])
        self.assertEqual(0, empty.traits['instances'])

    def test_owners_not_told_then_retried(self):
        self.engine.refuse = engine_mod.NotReady('alarms not loaded')
        self.assertRaises(engine_mod.NotReady, self.disable)
        self.assertFalse(self.tracker.in_maintenance('compute-1'))
        self.assertIsNone(self.state())
        # Ceilometer delivers the notification again.
        self.engine.refuse = None
        self.disable()
        self.assertEqual(4, len(self.owners()))

    def test_map_not_loaded_owners_from_nova_never_empty_early(self):
        self.fencer.servers = [
            fencing.ServerRef('x1', 'px', 'ux', 'compute-1', 'ACTIVE', 'x1')]
        inspector = core.Inspector(self.conf, self.engine, self.fencer)
        self.addCleanup(inspector.stop)
        self.map = inspector.map     # a new map, not loaded from Nova yet
        self.assertFalse(self.map.loaded.is_set())
        inspector.handle(service_update('compute-1', 1, 'swap disks'))
        self.assertEqual({'x1': 'px'}, self.owners())
        # The map says nothing yet: that is not "empty".
        inspector.maintenance.check()
        self.assertEqual([], self.admin_events())
        self.map.replace_all([resource_map.Instance('x1', 'px', 'ux',
                                                    'compute-1')])
        inspector.maintenance.check()
        self.assertEqual([], self.admin_events())
        self.map.replace_all([])
        inspector.maintenance.check()
        self.assertEqual(1, len(self.admin_events()))

    def test_instances_the_map_did_not_know_are_warned_later(self):
        inspector = core.Inspector(self.conf, self.engine, self.fencer)
        self.addCleanup(inspector.stop)
        self.fencer.servers_on_host = mock.Mock(
            side_effect=fencing.FencingError('Nova is down'))
        inspector.handle(service_update('compute-1', 1, 'swap disks'))
        self.assertEqual({}, self.owners())
        self.assertIn('Nova cannot list the instances of compute-1',
                      self.log.output)
        inspector.map.replace_all([
            resource_map.Instance('x1', 'px', 'ux', 'compute-1'),
            resource_map.Instance('y1', 'py', 'uy', 'compute-2')])
        inspector.maintenance.check()
        self.assertEqual({'x1': 'px'}, self.owners())
        self.assertIn('1 instance(s) found on host compute-1',
                      self.log.output)
        inspector.maintenance.check()
        self.assertEqual(1, len(self.engine.of_type(
            mevents.OWNER_EVENT)))
        self.assertEqual([], self.admin_events())
        inspector.handle(instance_event(
            'compute.instance.delete.end', 'x1', 'compute-1', 'px',
            state='deleted'))
        (empty,) = self.admin_events()
        self.assertEqual(1, empty.traits['instances'])


class TestHostEmptied(MaintenanceTestCase):

    def test_admin_told_once_when_the_last_instance_leaves(self):
        self.disable()
        moves = [
            instance_event('compute.instance.update', 'a1', 'compute-2',
                           'pa'),                           # live migrated
            instance_event('compute.instance.delete.start', 'b1',
                           'compute-1', 'pb'),
            instance_event('compute.instance.delete.end', 'b1', 'compute-1',
                           'pb', state='deleted'),
            instance_event('compute.instance.update', 'a9', 'compute-3',
                           'pa'),                           # elsewhere
            instance_event('compute.instance.finish_resize.end', 'c1',
                           'compute-3', 'pc'),              # migrated
        ]
        for event in moves:
            self.inspector.handle(event)
            self.assertEqual([], self.admin_events(), event.event_type)
        self.assertEqual(['a2'], [r['instance_id']
                                  for r in self.state()['remaining']])
        self.inspector.handle(instance_event(
            'compute.instance.delete.end', 'a2', 'compute-1', 'pa',
            state='deleted'))
        (empty,) = self.admin_events()
        self.assertEqual(self.ADMIN, empty.project)
        t = traits(empty)
        self.assertEqual('compute-1', t['host'])
        self.assertEqual('empty', t['state'])
        self.assertEqual(4, t['instances'])
        self.assertEqual(3, t['projects'])
        self.assertEqual('firmware upgrade', t['reason'])
        # A repeated notification, a periodic check: not told again.
        self.inspector.handle(instance_event(
            'compute.instance.delete.end', 'a2', 'compute-1', 'pa',
            state='deleted'))
        self.tracker.check()
        self.assertEqual(1, len(self.admin_events()))
        state = self.state()
        self.assertEqual('empty', state['state'])
        self.assertIsNotNone(state['admin_notified'])
        self.assertEqual([], state['remaining'])

    def test_instance_arriving_warns_its_owner_and_delays_empty(self):
        self.disable()
        for vm in ('a1', 'a2', 'b1', 'c1'):
            self.inspector.handle(instance_event(
                'compute.instance.update', vm, 'compute-2', 'x'))
        self.assertEqual(1, len(self.admin_events()))
        self.inspector.handle(instance_event(
            'compute.instance.create.end', 'n1', 'compute-1', 'pn'))
        self.assertEqual('pn', self.owners()['n1'])
        self.assertIn('arrived on host compute-1', self.log.output)
        self.assertEqual('maintenance', self.state()['state'])
        self.inspector.handle(instance_event(
            'compute.instance.delete.end', 'n1', 'compute-1', 'pn',
            state='deleted'))
        self.assertEqual(2, len(self.admin_events()))

    def test_empty_after_a_map_reload_found_by_the_check(self):
        self.disable()
        self.map.replace_all([resource_map.Instance('a9', 'pa', 'ua',
                                                    'compute-2')])
        self.assertEqual([], self.admin_events())
        self.tracker.check()
        self.assertEqual(1, len(self.admin_events()))

    def test_failed_admin_notification_retried_by_the_check(self):
        self.disable()
        self.engine.refuse = RuntimeError('database gone')
        self.map.replace_all([])
        self.tracker.check()
        self.assertEqual([], self.admin_events())
        self.engine.refuse = None
        self.tracker.check()
        self.assertEqual(1, len(self.admin_events()))

    def test_no_admin_project_log_only(self):
        self.cfg.config(group=maintenance.GROUP, admin_project_id=None)
        self.disable()
        self.map.replace_all([])
        self.tracker.check()
        self.assertEqual([], self.admin_events())
        self.assertIn('no admin project known', self.log.output)
        self.assertEqual('empty', self.state()['state'])


class TestEnd(MaintenanceTestCase):

    def test_enabled_ends_tells_admin_and_owners_left(self):
        self.disable()
        self.inspector.handle(instance_event(
            'compute.instance.delete.end', 'a1', 'compute-1', 'pa',
            state='deleted'))
        self.assertIsNotNone(self.state())
        self.inspector.handle(service_update('compute-1', 0, None))
        self.assertFalse(self.tracker.in_maintenance('compute-1'))
        self.assertEqual({'a2': 'pa', 'b1': 'pb', 'c1': 'pc'},
                         self.owners(mevents.COMPLETE))
        (done,) = self.admin_events(mevents.HOST_COMPLETE_EVENT)
        self.assertEqual(self.ADMIN, done.project)
        self.assertEqual(3, done.traits['remaining'])
        self.assertEqual([], self.admin_events())
        self.assertIsNone(self.state())
        # Later moves of these instances are nobody's business.
        told = len(self.engine.events)
        self.inspector.handle(instance_event(
            'compute.instance.delete.end', 'a2', 'compute-1', 'pa',
            state='deleted'))
        self.tracker.check()
        self.assertEqual(told, len(self.engine.events))

    def test_enabled_still_clears_a_remembered_fault(self):
        first = self.inspector.handle(events.make_event(
            'compute.host.down', {'hostname': 'compute-1'}))
        self.assertIsNotNone(first)
        self.assertTrue(first.done.wait(5))
        self.inspector.handle(service_update('compute-1', 0, None))
        again = self.inspector.handle(events.make_event(
            'compute.host.down', {'hostname': 'compute-1'}))
        self.assertIsNotNone(again)
        self.assertTrue(again.done.wait(5))

    def test_end_refused_by_the_evaluator_is_retried(self):
        self.disable()
        self.engine.refuse = engine_mod.NotReady('x')
        self.assertRaises(engine_mod.NotReady, self.inspector.handle,
                          service_update('compute-1', 0, None))
        self.assertTrue(self.tracker.in_maintenance('compute-1'))
        self.engine.refuse = None
        self.inspector.handle(service_update('compute-1', 0, None))
        self.assertFalse(self.tracker.in_maintenance('compute-1'))

    def test_end_of_a_host_not_in_maintenance(self):
        self.inspector.handle(events.make_event('maintenance.host.end', {
            'host': 'compute-1'}))
        self.assertEqual([], self.engine.events)


class TestStateFiles(MaintenanceTestCase):

    def test_status_api_file_and_cli(self):
        self.disable()
        self.inspector.handle(instance_event(
            'compute.instance.delete.end', 'c1', 'compute-1', 'pc',
            state='deleted'))
        (live,) = self.tracker.status()
        self.assertEqual({'pa': ['a1', 'a2'], 'pb': ['b1']},
                         live['remaining_by_project'])
        self.assertEqual(4, live['instances_warned'])
        saved = self.state()
        self.assertEqual(live['remaining'], saved['remaining'])
        self.assertEqual('firmware upgrade', saved['reason'])

        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            self.assertEqual(0, maintenance_status.main(
                ['--state-dir', self.state_dir]))
        text = out.getvalue()
        self.assertIn('compute-1: in maintenance since', text)
        self.assertIn('remaining: 3 instance(s) of 2 project(s)', text)
        self.assertIn('project pa: a1 a2', text)

        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            maintenance_status.main(['--state-dir', self.state_dir,
                                     '--json', 'compute-1'])
        (data,) = json.loads(out.getvalue())
        self.assertEqual('maintenance', data['state'])

        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            maintenance_status.main(['--state-dir', self.state_dir,
                                     'compute-2'])
        self.assertEqual('compute-2: not in maintenance\n', out.getvalue())

    def test_cli_reads_state_dir_from_the_agent_config(self):
        conf_file = os.path.join(self.state_dir, 'ceilometer.conf')
        other = os.path.join(self.state_dir, 'elsewhere')
        with open(conf_file, 'w') as f:
            f.write('[doctor_maintenance]\nstate_dir = %s\n' % other)
        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            maintenance_status.main(['--config-file', conf_file])
        self.assertEqual('no host in maintenance (%s)\n' % other,
                         out.getvalue())

    def test_restored_after_a_restart_without_warning_owners_again(self):
        self.disable()
        session = self.state()['session_id']
        self.inspector.stop()
        engine = RecordingEngine(self.store)
        inspector = core.Inspector(self.conf, engine, self.fencer,
                                   rmap=self.map)
        self.addCleanup(inspector.stop)
        inspector.maintenance.start()
        self.assertTrue(inspector.maintenance.in_maintenance('compute-1'))
        self.assertIn('still in maintenance', self.log.output)
        for vm in ('a1', 'a2', 'b1', 'c1'):
            inspector.handle(instance_event(
                'compute.instance.update', vm, 'compute-2', 'x'))
        self.assertEqual([], engine.of_type(mevents.OWNER_EVENT))
        (empty,) = engine.of_type(mevents.HOST_EMPTY_EVENT)
        self.assertEqual(session, empty.traits['session_id'])
        self.assertEqual(4, empty.traits['instances'])

    def test_unwritable_state_dir_does_not_stop_the_maintenance(self):
        blocker = os.path.join(self.state_dir, 'file')
        open(blocker, 'w').close()
        self.cfg.config(group=maintenance.GROUP,
                        state_dir=os.path.join(blocker, 'sub'))
        self.disable()
        self.assertEqual(4, len(self.owners()))
        self.assertIn('Cannot write the maintenance state',
                      self.log.output)


class TestMigrateAfter(MaintenanceTestCase):

    def test_deadline_live_migrates_what_is_left_and_logs_it(self):
        self.cfg.config(group=maintenance.GROUP, migrate_after=0.3,
                        project_migrate_after={'pc': '0'})
        self.fencer.refuse = {'b1'}
        self.tracker.start()
        self.disable()
        started = time.time()
        by_vm = {e.traits['instance_id']: e for e in
                 self.engine.of_type(mevents.OWNER_EVENT)}
        self.assertIn('migrate_at', by_vm['a1'].traits)
        self.assertNotIn('migrate_at', by_vm['c1'].traits)
        self.inspector.handle(instance_event(
            'compute.instance.delete.end', 'a2', 'compute-1', 'pa',
            state='deleted'))
        self.assertTrue(self.fencer.called.wait(10))
        self.assertGreaterEqual(self.fencer.migrated_at, started + 0.25)
        # What was left, except the project that opted out.
        self.assertEqual(['a1', 'b1'], sorted(self.fencer.migrated))
        self.assertIn('deadline passed; asking Nova to live-migrate the 2 '
                      'instance(s)', self.log.output)
        self.assertIn('Nova refused to live-migrate 1 of 2', self.log.output)
        self.assertIn('b1: live migration of server b1 failed',
                      self.log.output)
        state = doctor_fixtures.poll(
            lambda: (self.state()['migrations'].get('a1') not in
                     (None, 'requested')) and self.state(),
            10, 'the state file to show the migration')
        self.assertEqual(fencing.OK, state['migrations']['a1'])
        self.assertIn('HTTP 409', state['migrations']['b1'])
        self.assertIsNotNone(state['migration_requested'])
        # Asked once, even though they are still on the host.
        self.tracker.check()
        self.assertEqual(2, len(self.fencer.migrated))

    def test_no_deadline_no_migration(self):
        self.disable()
        self.tracker.check()
        self.assertEqual([], self.fencer.migrated)


class TestOptions(base.BaseTestCase):

    def test_listed_for_the_generator(self):
        groups = dict(opts.list_opts())
        self.assertIs(maintenance.OPTS, groups[maintenance.GROUP])


class TestLiveMigrate(base.BaseTestCase):
    """NovaFencer.live_migrate against the Nova double."""

    def setUp(self):
        super().setUp()
        self.nova = self.useFixture(nova_double.NovaDoubleFixture()).nova
        conf = cfg.ConfigOpts()
        conf([], project='doctor-ext-test')
        self.useFixture(config_fixture.Config(conf))
        nova_connection.register_opts(conf)
        self.nova.configure(conf, nova_connection.GROUP)
        conf.set_override('retry_backoff', 0.01, group=nova_connection.GROUP)
        self.fencer = fencing.NovaFencer(conf)
        self.addCleanup(self.fencer.close)
        for host in ('compute-1', 'compute-2', 'compute-3'):
            self.nova.add_host(host)

    def admin_sdk(self):
        import openstack
        creds = self.nova.credentials()
        conn = openstack.connection.Connection(
            auth_type='password', region_name=self.nova.region,
            auth={k: v for k, v in creds.items() if k != 'auth_type'})
        self.addCleanup(conn.close)
        return conn

    def test_moves_to_an_enabled_host_reports_refusals(self):
        moving = [self.nova.add_server('compute-1', 'p') for _ in range(3)]
        stopped = self.nova.add_server('compute-1', 'p', vm_state='stopped')
        # compute-2 is disabled (in maintenance too): never a destination.
        sdk = self.admin_sdk()
        (svc,) = sdk.compute.services(host='compute-2',
                                      binary='nova-compute')
        sdk.compute.disable_service(svc, disabled_reason='maintenance')
        self.assertEqual('disabled', self.nova.service('compute-2')['status'])
        results = self.fencer.live_migrate(moving + [stopped])
        self.assertEqual({v: fencing.OK for v in moving},
                         {v: results[v] for v in moving})
        self.assertIn('409', results[stopped])
        self.assertIn(stopped, results[stopped])
        for vm in moving:
            self.assertEqual('compute-3', self.nova.server(vm)['host'])
        self.assertEqual('compute-1', self.nova.server(stopped)['host'])
        bodies = [json.loads(c.body) for c in self.nova.calls_to('/action$')]
        self.assertTrue(all('os-migrateLive' in b for b in bodies))
        self.assertEqual({}, self.fencer.live_migrate([]))


class TestNovaNotificationsToEvents(MaintenanceTestCase):
    """What the Nova double emits, through our event definitions."""

    def setUp(self):
        super().setUp()
        self.nova = self.useFixture(nova_double.NovaDoubleFixture()).nova
        conf = ceilometer_service.prepare_service(argv=[], config_files=[])
        conf.set_override('definitions_cfg_file', DEFINITIONS,
                          group='event')
        self.converter = converter.setup_events(
            conf, extension.ExtensionManager(
                namespace='ceilometer.event.trait_plugin'))
        self.seen = 0

    def sdk(self, user='admin'):
        import openstack
        creds = self.nova.credentials(user)
        conn = openstack.connection.Connection(
            auth_type='password', region_name=self.nova.region,
            auth={k: v for k, v in creds.items() if k != 'auth_type'})
        self.addCleanup(conn.close)
        return conn

    def deliver(self):
        """Nova's new notifications, as the agent's events, to the hook."""
        out = []
        for n in self.nova.notifications[self.seen:]:
            event = self.converter.to_event('info', {
                'ctxt': {}, 'publisher_id': n['publisher_id'],
                'event_type': n['event_type'], 'payload': n['payload'],
                'metadata': {'message_id': str(uuid.uuid4()),
                             'timestamp': '2024-05-01 12:00:01.000000'}})
            parsed = events.from_ceilometer(event)
            self.inspector.handle(parsed)
            out.append(parsed)
        self.seen = len(self.nova.notifications)
        return out

    def test_disable_move_delete_enable(self):
        for host in ('compute-1', 'compute-2', 'compute-3'):
            self.nova.add_host(host)
        vms = {self.nova.add_server('compute-1', p): p
               for p in ('pa', 'pa', 'pb')}
        self.map.replace_all(
            resource_map.Instance(s['id'], s['project_id'], s['user_id'],
                                  s['host'])
            for s in self.nova.servers_on('compute-1'))
        admin = self.sdk()
        (svc,) = admin.compute.services(host='compute-1',
                                        binary='nova-compute')
        admin.compute.disable_service(svc, disabled_reason='new disks')
        (update,) = self.deliver()
        self.assertEqual('service.update', update.event_type)
        self.assertEqual(('compute-1', 1, 'new disks', 0), tuple(
            update.traits[k] for k in ('host', 'disabled',
                                       'disabled_reason', 'forced_down')))
        self.assertEqual(vms, self.owners())

        first, second, third = vms
        admin.compute.live_migrate_server(first)
        admin.compute.migrate_server(second)
        (moved, migrated) = self.deliver()
        for event, vm in ((moved, first), (migrated, second)):
            self.assertEqual('compute.instance.update', event.event_type)
            self.assertEqual((vm, 'compute-2', vms[vm]), (
                event.traits['instance_id'], event.traits['host'],
                event.traits['tenant_id']))
        self.assertEqual([], self.admin_events())
        admin.compute.delete_server(third)
        start, end = self.deliver()
        self.assertEqual(['compute.instance.delete.start',
                          'compute.instance.delete.end'],
                         [start.event_type, end.event_type])
        self.assertEqual((third, 'compute-1', 'deleted'), (
            end.traits['instance_id'], end.traits['host'],
            end.traits['state']))
        (empty,) = self.admin_events()
        self.assertEqual(3, empty.traits['instances'])

        admin.compute.enable_service(svc)
        (update,) = self.deliver()
        self.assertEqual(0, update.traits['disabled'])
        self.assertFalse(self.tracker.in_maintenance('compute-1'))
        self.assertEqual(1, len(self.admin_events(
            mevents.HOST_COMPLETE_EVENT)))
