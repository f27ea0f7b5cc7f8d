"""The doctor publisher and inspector hook inside Ceilometer's pipeline.

Ceilometer's own loader builds the sinks from etc/ceilometer/
event_pipeline.yaml (stevedore loads our entry points), and Ceilometer's
own EventEndpoint turns notifications into events with our event
definitions. The evaluator behind is real: Aodh's schema on PostgreSQL and
HTTP POSTs to a consumer on loopback.
"""

import datetime
import uuid

from ceilometer.event import models
from ceilometer.pipeline import event as event_pipeline
import fixtures
import oslo_messaging
from oslotest import base

from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events
from doctor_ext.inspector import core
from doctor_ext.inspector import hook
from doctor_ext.inspector import journal
from doctor_ext.inspector import report_check
from doctor_ext.inspector import resource_map
from doctor_ext.monitor import report
from doctor_ext.monitor import signing
from doctor_ext.publisher import direct
from doctor_ext_lab import consumer as consumer_mod
from tests import fixtures as doctor_fixtures


class _AgentTest(base.BaseTestCase):
    """Ceilometer's configuration, with our etc/ceilometer files."""

    def setUp(self):
        super().setUp()
        self.conf = doctor_fixtures.ceilometer_conf()
        self.log = self.useFixture(fixtures.FakeLogger(level='INFO'))
        self.addCleanup(hook.reset_inspector)
        self.addCleanup(report_check.reset_check)
        self.addCleanup(engine_mod.reset_engine)

    def unreachable(self):
        doctor_fixtures.aodh_unreachable(self.conf)

    def manager(self):
        return event_pipeline.EventPipelineManager(self.conf)

    def publishers(self, manager):
        return {p.sink.name: p.sink.publishers for p in manager.pipelines}


class PipelineTest(_AgentTest):

    def test_loader_builds_sinks_with_our_plugins(self):
        self.unreachable()
        mgr = self.manager()
        sinks = self.publishers(mgr)
        flat = [p for pubs in sinks.values() for p in pubs]
        self.assertEqual(1, sum(isinstance(p, direct.DirectPublisher)
                                for p in flat))
        self.assertEqual(1, sum(isinstance(p, hook.InspectorHook)
                                for p in flat))
        # One publisher per sink, so that a failure is not swallowed.
        for name, pubs in sinks.items():
            self.assertEqual(1, len(pubs), name)

    def test_loading_does_not_block_on_unreachable_services(self):
        self.unreachable()
        self.manager()
        engine = engine_mod.get_engine(self.conf)
        self.assertFalse(engine.sync.loaded.is_set())
        self.assertIsNotNone(hook._INSPECTOR)

        def said_so():
            out = self.log.output
            return ('Cannot load event alarms yet, retrying' in out and
                    'Cannot load the instance map from Nova yet' in out)
        doctor_fixtures.poll(said_so, 20, 'the agent to say so')
        self.assertNotIn('nobody@', self.log.output.replace(
            'postgresql://nobody@127.0.0.1:1/none', ''))

    def test_unloaded_alarms_requeue_the_notification(self):
        self.unreachable()
        self.conf.set_override('startup_wait', 0.01,
                               group='doctor_evaluator')
        endpoint = self.manager().get_main_endpoints()[0]
        result = endpoint.process_notifications('info', [nova_update(
            'vm-1', 'p1')])
        self.assertEqual(oslo_messaging.NotificationResult.REQUEUE, result)


def nova_update(vm, project, state='error', host='compute-1'):
    """A legacy compute.instance.update as Nova sends it."""
    return {
        'ctxt': {}, 'publisher_id': 'nova-api:api-1',
        'event_type': 'compute.instance.update',
        'priority': 'INFO',
        'metadata': {'message_id': str(uuid.uuid4()),
                     'timestamp': '2026-11-24 00:00:00.000000'},
        'payload': {'instance_id': vm, 'tenant_id': project,
                    'user_id': 'u1', 'state': state,
                    'old_state': 'active', 'host': host,
                    'node': host, 'display_name': vm,
                    'state_description': ''},
    }


class DeliveryTest(_AgentTest):
    """From a Nova notification to the consumer, in one process."""

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase())
        self.consumer = self.useFixture(consumer_mod.ConsumerFixture())
        direct.register_opts(self.conf)
        from doctor_ext.evaluator import store
        store.register_opts(self.conf)
        self.conf.set_override('aodh_connection', self.db.url,
                               group='doctor_evaluator')

    def alarm(self, vm, project='p1', repeat=False):
        return self.db.add_alarm(
            project_id=project, event_type='compute.instance.update',
            query=[{'field': 'traits.state', 'op': 'eq', 'value': 'error'},
                   {'field': 'traits.instance_id', 'op': 'eq',
                    'value': vm}],
            actions=[self.consumer.url('/failure')], repeat_actions=repeat)

    def endpoint(self):
        ep = self.manager().get_main_endpoints()[0]
        self.assertTrue(engine_mod.get_engine(self.conf).wait_ready(30))
        return ep

    def test_notification_reaches_consumer_in_aodh_format(self):
        a = self.alarm('vm-1')
        ep = self.endpoint()
        self.assertEqual(oslo_messaging.NotificationResult.HANDLED,
                         ep.process_notifications('info', [nova_update(
                             'vm-1', 'p1')]))
        self.assertTrue(self.consumer.consumer.wait_for(1, timeout=10))
        body = self.consumer.consumer.received[0].body
        self.assertEqual({'alarm_name', 'alarm_id', 'severity', 'previous',
                          'current', 'reason', 'reason_data'}, set(body))
        self.assertEqual((a, 'ok', 'alarm'), (body['alarm_id'],
                                              body['previous'],
                                              body['current']))
        traits = {t[0]: t[2] for t in body['reason_data']['event']['traits']}
        self.assertEqual(('vm-1', 'compute-1', 'p1'),
                         (traits['instance_id'], traits['host'],
                          traits['tenant_id']))

    def test_bad_event_dropped_alone(self):
        self.alarm('vm-1')
        self.endpoint()
        pub = engine_mod.get_engine(self.conf)
        self.assertIsNotNone(pub)
        publisher = [p for pubs in self.publishers(self.manager()).values()
                     for p in pubs if isinstance(p, direct.DirectPublisher)][0]
        bad = models.Event('m-bad', 'compute.instance.update',
                           datetime.datetime(2026, 11, 24),
                           [models.Trait('vcpus', 2, 'many')], {})
        good = models.Event('m-good', 'compute.instance.update',
                            datetime.datetime(2026, 11, 24),
                            [models.Trait('instance_id', 1, 'vm-1'),
                             models.Trait('tenant_id', 1, 'p1'),
                             models.Trait('state', 1, 'error')], {})
        firings = publisher.publish_events([bad, good])
        self.assertEqual(1, len(firings))
        self.assertIn("Dropping event m-bad: trait 'vcpus'", self.log.output)
        self.assertTrue(self.consumer.consumer.wait_for(1, timeout=10))

    def test_nova_echo_of_inspector_fault_not_notified_twice(self):
        self.alarm('vm-1', repeat=True)
        ep = self.endpoint()
        # The inspector reported vm-1 in a fault of its host (any agent).
        journal.FaultJournal(engine_mod.get_engine(self.conf).store,
                             'another-agent').open(
            'compute-1', events.make_event('compute.host.down', {
                'hostname': 'compute-1'}),
            [resource_map.Instance('vm-1', 'p1', 'u1', 'compute-1')],
            fence=False, memory=3600)
        ep.process_notifications('info', [nova_update('vm-1', 'p1')])
        ep.process_notifications('info', [nova_update('vm-1', 'p1')])
        self.assertTrue(self.consumer.consumer.wait_for(1, timeout=10))
        engine_mod.get_engine(self.conf).notifier.flush(10)
        self.assertEqual(1, len(self.consumer.consumer.received))

    def test_refused_report_notifies_nobody(self):
        # An administrator's alarm on the reports themselves (doctor://).
        self.db.add_alarm(project_id='', event_type='compute.host.down',
                          actions=[self.consumer.url('/host')],
                          repeat_actions=True)
        report_check.register_opts(self.conf)
        core.register_opts(self.conf)
        self.conf.set_override('secret', 'shared', report_check.GROUP)
        self.conf.set_override('fence', False, core.GROUP)
        ep = self.endpoint()

        def down(host, secret=None):
            r = report.build_report(host)
            if secret:
                r = signing.sign(secret, r['type'], r)
            return doctor_fixtures.report_notification(r['type'], r)
        for n in (down('compute-1'), down('compute-2', 'guessed'),
                  down('compute-3', 'shared')):
            self.assertEqual(oslo_messaging.NotificationResult.HANDLED,
                             ep.process_notifications('info', [n]))
        self.assertTrue(self.consumer.consumer.wait_for(1, timeout=10))
        engine_mod.get_engine(self.conf).notifier.flush(10)
        hosts = [{t[0]: t[2] for t in r.body['reason_data']['event'][
            'traits']}['hostname'] for r in self.consumer.consumer.received]
        self.assertEqual(['compute-3'], hosts)
        # Checked by the inspector and doctor://, logged once each.
        self.assertEqual(2, self.log.output.count('Refused '))
