"""Our event definitions, loaded by Ceilometer's own converter.

etc/ceilometer/event_definitions.yaml is what ceilometer-agent-notification
loads: notifications shaped as the real producers send them (the Doctor
monitor, Nova's versioned and legacy notifications, Glance) must become
events with the traits the inspector and the evaluator use.
"""

import datetime
import importlib.util
import os
import uuid

from ceilometer.event import converter
from ceilometer.pipeline import event as event_pipeline
from ceilometer import service
from oslotest import base
from stevedore import extension
import yaml

from doctor_ext import data
from doctor_ext.monitor import report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ETC = os.path.join(ROOT, 'etc', 'ceilometer')
DEFINITIONS = os.path.join(ETC, 'event_definitions.yaml')
GENERATOR = os.path.join(ROOT, 'tools', 'gen_event_definitions.py')


def load_generator():
    spec = importlib.util.spec_from_file_location('gen_event_definitions',
                                                  GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notification(event_type, payload, publisher_id='doctor-monitor.test',
                 ctxt=None):
    # The shape oslo.messaging's dispatcher hands to Ceilometer's endpoint.
    return {
        'ctxt': ctxt or {},
        'publisher_id': publisher_id,
        'event_type': event_type,
        'payload': payload,
        'metadata': {'message_id': str(uuid.uuid4()),
                     'timestamp': '2024-05-01 12:00:01.000000'},
    }


class EventDefinitionsTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = service.prepare_service(argv=[], config_files=[])
        self.conf.set_override('definitions_cfg_file', DEFINITIONS,
                               group='event')
        self.converter = self.make_converter()

    def make_converter(self):
        return converter.setup_events(
            self.conf,
            extension.ExtensionManager(
                namespace='ceilometer.event.trait_plugin'))

    def to_event(self, event_type, payload, priority='info', **kwargs):
        event = self.converter.to_event(
            priority, notification(event_type, payload, **kwargs))
        self.assertIsNotNone(event)
        self.assertEqual(event_type, event.event_type)
        return event

    @staticmethod
    def traits(event):
        return {t.name: t.value for t in event.traits}

    # Doctor reports ------------------------------------------------------

    def test_doctor_host_down(self):
        r = report.build_report('compute-1', cause='no ping reply',
                                monitor_event_id='ev-1',
                                time='2024-05-01T12:00:00.125Z')
        traits = self.traits(self.to_event('compute.host.down', r,
                                           priority='error'))
        self.assertEqual('compute-1', traits['hostname'])
        self.assertEqual('down', traits['status'])
        self.assertEqual('ping', traits['monitor'])
        self.assertEqual('ev-1', traits['monitor_event_id'])
        self.assertEqual('no ping reply', traits['cause'])
        self.assertEqual('critical', traits['severity'])
        self.assertEqual(datetime.datetime(2024, 5, 1, 12, 0, 0, 125000),
                         traits['fault_time'])
        self.assertEqual('doctor-monitor.test', traits['service'])

    def test_doctor_host_up(self):
        r = report.build_report('compute-1', status='up')
        traits = self.traits(self.to_event('compute.host.up', r))
        self.assertEqual('compute-1', traits['hostname'])
        self.assertEqual('up', traits['status'])
        self.assertEqual('cleared', traits['severity'])
        self.assertNotIn('cause', traits)

    def test_doctor_camel_case_fields(self):
        payload = {'time': '2024-05-01T12:00:00',
                   'type': 'compute.host.down',
                   'details': {'hostName': 'compute-2', 'status': 'down',
                               'monitorEventId': 'ev-2',
                               'monitor': 'other'}}
        traits = self.traits(self.to_event('compute.host.down', payload))
        self.assertEqual('compute-2', traits['hostname'])
        self.assertEqual('ev-2', traits['monitor_event_id'])

    def test_report_without_hostname_does_not_crash(self):
        r = report.build_report('compute-1')
        del r['details']['hostname']
        traits = self.traits(self.to_event('compute.host.down', r))
        self.assertNotIn('hostname', traits)
        self.assertEqual('down', traits['status'])
        for payload in ({}, {'details': None}, {'details': 'x'}, None):
            traits = self.traits(self.to_event('compute.host.down',
                                               payload))
            self.assertNotIn('hostname', traits)

    # Nova ----------------------------------------------------------------

    def service_update(self, **fields):
        data = {'host': 'compute-1', 'binary': 'nova-compute',
                'topic': 'compute', 'report_count': 1234,
                'disabled': False, 'disabled_reason': None,
                'availability_zone': None,
                'last_seen_up': '2024-05-01T11:59:50Z',
                'forced_down': True, 'version': 66,
                'uuid': 'fa69c544-906b-4a6a-a9c6-c1f7a8078c73'}
        data.update(fields)
        return {'nova_object.name': 'ServiceStatusPayload',
                'nova_object.namespace': 'nova',
                'nova_object.version': '1.1',
                'nova_object.data': data}

    def test_nova_service_update_forced_down(self):
        event = self.to_event('service.update', self.service_update(),
                              publisher_id='nova-api:controller',
                              ctxt={'project_id': 'admin-project'})
        traits = self.traits(event)
        self.assertEqual('compute-1', traits['host'])
        self.assertEqual('nova-compute', traits['binary'])
        self.assertEqual(1, traits['forced_down'])
        self.assertEqual(0, traits['disabled'])
        self.assertNotIn('disabled_reason', traits)
        self.assertEqual('fa69c544-906b-4a6a-a9c6-c1f7a8078c73',
                         traits['service_uuid'])
        self.assertEqual(datetime.datetime(2024, 5, 1, 11, 59, 50),
                         traits['last_seen_up'])
        self.assertEqual('admin-project', traits['project_id'])

    def test_nova_service_update_disabled(self):
        traits = self.traits(self.to_event(
            'service.update',
            self.service_update(forced_down=False, disabled=True,
                                disabled_reason='maintenance',
                                last_seen_up=None)))
        self.assertEqual(0, traits['forced_down'])
        self.assertEqual(1, traits['disabled'])
        self.assertEqual('maintenance', traits['disabled_reason'])
        self.assertNotIn('last_seen_up', traits)

    def test_nova_service_update_odd_boolean_gives_no_trait(self):
        traits = self.traits(self.to_event(
            'service.update', self.service_update(forced_down='perhaps',
                                                  disabled='TRUE')))
        self.assertNotIn('forced_down', traits)
        self.assertEqual(1, traits['disabled'])
        self.assertEqual('compute-1', traits['host'])

    def instance_payload(self, **fields):
        payload = {
            'tenant_id': 'project-a', 'user_id': 'user-a',
            'instance_id': '5a1b2c3d-0000-4000-8000-000000000001',
            'display_name': 'vnf-1', 'host': 'compute-1',
            'node': 'compute-1.example', 'state': 'error',
            'old_state': 'active', 'instance_type': 'm1.small',
            'memory_mb': 2048, 'cell_name': '',
            'launched_at': '2024-05-01T10:00:00.000000',
            'image_meta': {'org.openstack__1__architecture': 'x86_64'},
        }
        payload.update(fields)
        return payload

    def test_instance_update_host_from_payload(self):
        # A reset-state: published by nova-api on the API host.
        event = self.to_event('compute.instance.update',
                              self.instance_payload(),
                              publisher_id='nova-api:apihost')
        traits = self.traits(event)
        self.assertEqual('compute-1', traits['host'])
        self.assertEqual('compute-1.example', traits['node'])
        self.assertEqual('5a1b2c3d-0000-4000-8000-000000000001',
                         traits['instance_id'])
        self.assertEqual('project-a', traits['tenant_id'])
        self.assertEqual('project-a', traits['project_id'])
        self.assertEqual('user-a', traits['user_id'])
        self.assertEqual('error', traits['state'])
        self.assertEqual('active', traits['old_state'])
        self.assertEqual('vnf-1', traits['display_name'])
        # Stock traits are kept.
        self.assertEqual('m1.small', traits['instance_type'])
        self.assertEqual(2048, traits['memory_mb'])
        self.assertEqual('x86_64', traits['os_architecture'])
        self.assertEqual(datetime.datetime(2024, 5, 1, 10, 0),
                         traits['launched_at'])

    def test_legacy_publisher_id_not_used_for_host(self):
        event = self.to_event('compute.instance.update',
                              self.instance_payload(host=None),
                              publisher_id='api.apihost')
        self.assertNotIn('host', self.traits(event))

    def test_instance_events_of_the_resource_map(self):
        for event_type, extra in (
                ('compute.instance.create.end', 'availability_zone'),
                ('compute.instance.delete.end', None),
                ('compute.instance.live_migration._post.end', None),
                ('compute.instance.live_migration.post.dest.end', None),
                ('compute.instance.finish_resize.end', None),
                ('compute.instance.resize.confirm.end', None),
                ('compute.instance.resize.revert.end', None),
                ('compute.instance.rebuild.end', None),
                ('compute.instance.exists', 'audit_period_beginning')):
            payload = self.instance_payload(
                host='compute-2', availability_zone='nova',
                audit_period_beginning='2024-05-01T00:00:00')
            traits = self.traits(self.to_event(
                event_type, payload, publisher_id='compute.compute-1'))
            self.assertEqual('compute-2', traits['host'], event_type)
            self.assertEqual('5a1b2c3d-0000-4000-8000-000000000001',
                             traits['instance_id'], event_type)
            self.assertEqual('project-a', traits['tenant_id'], event_type)
            self.assertEqual('error', traits['state'], event_type)
            self.assertEqual('compute', traits['service'], event_type)
            if extra:
                self.assertIn(extra, traits, event_type)

    # Maintenance ---------------------------------------------------------

    def test_maintenance_host(self):
        payload = {'host': 'compute-3', 'session_id': 'session-1',
                   'state': 'IN_MAINTENANCE', 'reason': 'firmware',
                   'window': {'start': '2024-05-02T01:00:00Z',
                              'end': '2024-05-02T03:00:00Z'},
                   'project_id': 'admin-project'}
        traits = self.traits(self.to_event('maintenance.host', payload,
                                           publisher_id='fenix'))
        self.assertEqual('compute-3', traits['host'])
        self.assertEqual('session-1', traits['session_id'])
        self.assertEqual('IN_MAINTENANCE', traits['state'])
        self.assertEqual('firmware', traits['reason'])
        self.assertEqual(datetime.datetime(2024, 5, 2, 1),
                         traits['window_start'])
        self.assertEqual(datetime.datetime(2024, 5, 2, 3),
                         traits['window_end'])
        self.assertEqual('admin-project', traits['project_id'])
        self.assertEqual('admin-project', traits['tenant_id'])
        payload = {'host': 'compute-3', 'session_id': 'session-1',
                   'state': 'MAINTENANCE_COMPLETE'}
        traits = self.traits(self.to_event('maintenance.host.end', payload,
                                           ctxt={'project_id': 'admin'}))
        self.assertEqual('MAINTENANCE_COMPLETE', traits['state'])
        self.assertEqual('admin', traits['project_id'])
        self.assertNotIn('window_start', traits)

    # Stock definitions ---------------------------------------------------

    def test_stock_events_still_converted(self):
        payload = {'id': 'image-1', 'name': 'cirros', 'status': 'active',
                   'owner': 'project-b', 'size': 1024,
                   'created_at': '2024-05-01T09:00:00Z'}
        traits = self.traits(self.to_event('image.update', payload,
                                           publisher_id='image.glance-1'))
        self.assertEqual('image-1', traits['resource_id'])
        self.assertEqual('cirros', traits['name'])
        self.assertEqual('project-b', traits['project_id'])
        self.assertEqual(1024, traits['size'])
        payload = {'volume_id': 'vol-1', 'tenant_id': 'project-c',
                   'user_id': 'user-c', 'status': 'available',
                   'host': 'cinder-1@lvm', 'size': 1}
        traits = self.traits(self.to_event('volume.create.end', payload))
        self.assertEqual('vol-1', traits['resource_id'])
        self.assertEqual('cinder-1@lvm', traits['host'])

    def test_unknown_event_type_gets_default_traits(self):
        traits = self.traits(self.to_event('something.else', {'a': 1},
                                           ctxt={'project_id': 'p'}))
        self.assertEqual('p', traits['project_id'])

    # The files -----------------------------------------------------------

    def test_committed_file_is_generated(self):
        generator = load_generator()
        with open(DEFINITIONS) as f:
            committed = f.read()
        self.assertEqual(generator.generate(), committed,
                         'etc/ceilometer/event_definitions.yaml is out of '
                         'date: run python tools/gen_event_definitions.py')
        self.assertTrue(committed.startswith('# GENERATED'))
        self.assertEqual(0, generator.main(['--check']))

    def test_generated_file_starts_with_the_stock_definitions(self):
        generator = load_generator()
        with open(generator.stock_definitions_path()) as f:
            stock = yaml.safe_load(f)
        with open(DEFINITIONS) as f:
            generated = yaml.safe_load(f)
        self.assertEqual(stock, generated[:len(stock)])
        self.assertGreater(len(generated), len(stock))

    def test_generator_merges_narrower_stock_definitions(self):
        generator = load_generator()
        stock = [
            {'event_type': 'a.*', 'traits': {'x': {'fields': 'payload.x'},
                                             'h': {'fields': 'publisher_id'}}},
            {'event_type': ['a.b', 'z.b'],
             'traits': {'y': {'fields': 'payload.y'}}},
            {'event_type': 'q.*', 'traits': {'q': {'fields': 'payload.q'}}},
        ]
        ours = [{'event_type': 'a.*', 'traits': {'h': 'payload.host'}},
                {'event_type': ['new.one', 'new.two'],
                 'traits': {'n': 'payload.n'}}]
        self.assertEqual(
            [{'event_type': 'a.*', 'traits': {'x': {'fields': 'payload.x'},
                                              'h': 'payload.host'}},
             {'event_type': 'a.b', 'traits': {'y': {'fields': 'payload.y'},
                                              'h': 'payload.host'}},
             {'event_type': ['new.one', 'new.two'],
              'traits': {'n': 'payload.n'}}],
            generator.merge(stock, ours))

    def test_our_definitions_load_alone(self):
        self.conf.set_override('definitions_cfg_file', data.EVENT_DEFINITIONS,
                               group='event')
        self.converter = self.make_converter()
        traits = self.traits(self.to_event(
            'compute.host.down', report.build_report('compute-1')))
        self.assertEqual('compute-1', traits['hostname'])
        traits = self.traits(self.to_event(
            'compute.instance.update', self.instance_payload(),
            publisher_id='nova-api:apihost'))
        self.assertEqual('compute-1', traits['host'])

    def test_event_pipeline(self):
        with open(os.path.join(ETC, 'event_pipeline.yaml')) as f:
            cfg = yaml.safe_load(f)
        sources = {s['name']: event_pipeline.EventSource(s)
                   for s in cfg['sources']}
        sinks = {s['name']: s['publishers'] for s in cfg['sinks']}
        self.assertEqual({'doctor_inspector_sink': ['doctor-inspector://'],
                          'doctor_sink': ['doctor://']}, sinks)
        inspector = sources['doctor_inspector_source']
        everything = sources['doctor_source']
        self.assertEqual(['doctor_inspector_sink'], inspector.sinks)
        self.assertEqual(['doctor_sink'], everything.sinks)
        for event_type in ('compute.host.down', 'compute.host.up',
                           'service.update', 'compute.instance.update',
                           'maintenance.host'):
            self.assertTrue(inspector.support_event(event_type), event_type)
            self.assertTrue(everything.support_event(event_type), event_type)
        self.assertFalse(inspector.support_event('image.update'))
        self.assertTrue(everything.support_event('image.update'))
