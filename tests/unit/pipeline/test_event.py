"""doctor_event: Ceilometer's event pipeline, bad notifications dropped.

Ceilometer's own event converter with etc/ceilometer/event_definitions.yaml,
and Ceilometer's in-memory ``test://`` publisher behind it.
"""

import fixtures
import oslo_messaging
from oslotest import base
from stevedore import extension

from doctor_ext.pipeline import event as pipeline_event
from tests import fixtures as doctor_fixtures

PIPELINE = """---
sources:
  - name: everything
    events: ['*']
    sinks: [memory]
sinks:
  - name: memory
    publishers: ['%s']
"""


def notification(event_type='compute.host.down', message_id='m-1',
                 timestamp='2026-11-24 06:00:00.000000', payload=None):
    metadata = {'message_id': message_id}
    if timestamp is not None:
        metadata['timestamp'] = timestamp
    return {'event_type': event_type, 'priority': 'info',
            'publisher_id': 'doctor.monitor', 'ctxt': {}, 'metadata': metadata,
            'payload': payload if payload is not None else {
                'details': {'hostname': 'compute-1', 'status': 'down',
                            'severity': 'critical'}}}


class TestDoctorEventPipeline(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = doctor_fixtures.ceilometer_conf()
        self.conf.set_override('pipelines', ['meter', pipeline_event.NAME],
                               group='notification')
        self.log = self.useFixture(fixtures.FakeLogger(level='INFO'))

    def manager(self, publisher='test://', cls=None):
        """A pipeline manager whose one sink publishes to ``publisher``."""
        path = self.useFixture(fixtures.TempDir()).join('pipeline.yaml')
        with open(path, 'w') as f:
            f.write(PIPELINE % publisher)
        self.conf.set_override('event_pipeline_cfg_file', path)
        return (cls or pipeline_event.EventPipelineManager)(self.conf)

    def test_loaded_by_ceilometer_by_name(self):
        mgr = extension.ExtensionManager(
            namespace='ceilometer.notification.pipeline')
        self.assertIs(pipeline_event.EventPipelineManager,
                      mgr[pipeline_event.NAME].plugin)

    def test_bad_notifications_dropped_alone_and_named(self):
        manager = self.manager()
        (endpoint,) = manager.get_main_endpoints()
        memory = manager.pipelines[0].sink.publishers[0]
        batch = [
            notification(message_id='no-timestamp', timestamp=None),
            notification(message_id='bad-timestamp', timestamp='yesterday'),
            notification(message_id='not-a-string', event_type=['x']),
            # A typed trait of a stock definition that is not of its type.
            notification(message_id='bad-created-at',
                         event_type='volume.create.end',
                         payload={'created_at': 'not a date'}),
            notification(message_id='good'),
        ]
        result = endpoint.info(batch)
        self.assertEqual(oslo_messaging.NotificationResult.HANDLED, result)
        self.assertEqual(['good'], [e.message_id for e in memory.events])
        log = self.log.output
        for message_id, event_type in [
                ('no-timestamp', "'compute.host.down'"),
                ('bad-timestamp', "'compute.host.down'"),
                ('not-a-string', "['x']"),
                ('bad-created-at', "'volume.create.end'")]:
            self.assertIn('Dropping notification %s (event_type %s): it '
                          'cannot be converted to an event'
                          % (message_id, event_type), log)

    def test_stock_endpoint_requeues_them_for_ever(self):
        """What doctor_event changes: the stock endpoint's answer."""
        from ceilometer.pipeline import event as ceilometer_event
        (endpoint,) = self.manager(
            cls=ceilometer_event.EventPipelineManager).get_main_endpoints()
        self.assertEqual(oslo_messaging.NotificationResult.REQUEUE,
                         endpoint.info([notification(timestamp=None)]))

    def test_a_publisher_error_still_requeues(self):
        # doctor:// with the alarms not loaded (Aodh's database is not
        # there) refuses the event: it must come back later.
        from doctor_ext.evaluator import engine as engine_mod
        from doctor_ext.inspector import report_check
        self.addCleanup(engine_mod.reset_engine)
        self.addCleanup(report_check.reset_check)
        doctor_fixtures.aodh_unreachable(self.conf)
        self.conf.set_override('startup_wait', 0.01,
                               group='doctor_evaluator')
        (endpoint,) = self.manager('doctor://').get_main_endpoints()
        self.assertEqual(oslo_messaging.NotificationResult.REQUEUE,
                         endpoint.info([notification(
                             event_type='compute.instance.update',
                             payload={'instance_id': 'vm-1',
                                      'tenant_id': 'p1',
                                      'state': 'error'})]))
        self.assertIn("Requeueing notification m-1 (event_type "
                      "'compute.instance.update'): a publisher failed",
                      self.log.output)

    def test_enabled_beside_event_says_so(self):
        self.manager()
        self.assertNotIn('published twice', self.log.output)
        self.conf.set_override('pipelines', ['meter', 'event', 'doctor_event'],
                               group='notification')
        self.manager()
        self.assertIn('[notification] pipelines names both "event" and '
                      '"doctor_event": every event is published twice',
                      self.log.output)
