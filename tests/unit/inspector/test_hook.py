"""The inspector: host faults to per-instance events, and fencing in Nova.

Nova is the Nova double over HTTP, reached through the real fencer
(openstacksdk); the instance map and the fault journal are the shared
tables on a real PostgreSQL; the evaluator is a recorder of what it was
handed.
"""

import logging
import threading

import fixtures

from oslo_config import cfg
from oslotest import base

from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import core
from doctor_ext.inspector import fencing
from doctor_ext.inspector import instances
from doctor_ext.inspector import journal as journal_mod
from doctor_ext.inspector import nova_connection
from doctor_ext.inspector import report_check
from doctor_ext.monitor import report
from doctor_ext.monitor import signing
from doctor_ext_lab import nova as nova_mod
from tests import fixtures as doctor_fixtures


class RecordingEngine:
    """The events handed over.

    Fault events in ``batches``; the owner events of fencing and recovery
    apart, in ``owner_batches``.
    """

    def __init__(self, fail=False, store=None):
        self.batches = []
        self.owner_batches = []
        self.fail = fail
        self.called = threading.Event()
        if store is not None:
            self.store = store

    def evaluate(self, evs, received=None):
        self.called.set()
        if self.fail:
            raise RuntimeError('alarms not loaded')
        evs = list(evs)
        if evs and evs[0].event_type != 'compute.instance.update':
            self.owner_batches.append(evs)
        else:
            self.batches.append(evs)
        return []


def host_down(host='compute-1', severity='critical',
              event_type='compute.host.down'):
    return events.make_event(event_type, {
        'hostname': host, 'status': 'down', 'monitor': 'ping',
        'monitor_event_id': 'mon-1', 'severity': severity,
        'cause': 'link down'})


class InspectorTest(base.BaseTestCase):
    def setUp(self):
        super().setUp()
        self.nova = self.useFixture(nova_mod.NovaDoubleFixture()).nova
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-test')
        nova_connection.register_opts(self.conf)
        self.nova.configure(self.conf, nova_connection.GROUP)
        self.conf.set_override('retry_backoff', 0.01, nova_connection.GROUP)
        # Fault handling here; the report check has its tests (below, and
        # test_report_check).
        report_check.register_opts(self.conf)
        self.conf.set_override('verify', False, report_check.GROUP)
        self.vms = {}
        for i in range(6):
            p = 'p%d' % (i % 3)
            self.vms[self.nova.add_server('compute-1', p)] = p
        self.other = self.nova.add_server('compute-2', 'p0')
        self.engine = RecordingEngine()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase())
        store_mod.register_opts(self.conf)
        self.conf.set_override('aodh_connection', self.db.url,
                               'doctor_evaluator')
        self.store = store_mod.AodhStore(self.conf)
        self.addCleanup(self.store.dispose)
        self.journal = journal_mod.FaultJournal(self.store, 'agent-a')
        self.inspector = self.make()

    def make(self, engine=None, journal=None, **overrides):
        for k, v in overrides.items():
            self.conf.set_override(k, v, core.GROUP)
        fencer = fencing.NovaFencer(self.conf)
        self.addCleanup(fencer.close)
        inspector = core.Inspector(self.conf, engine or self.engine, fencer,
                                   instances.SharedResourceMap(self.store),
                                   journal or self.journal)
        self.addCleanup(inspector.stop)
        inspector.start()
        self.assertTrue(inspector.map.loaded.wait(10))
        return inspector

    def test_fault_events_per_instance_then_fence(self):
        fault = self.inspector.handle(host_down())
        self.assertTrue(fault.done.wait(20))
        batch, = self.engine.batches
        got = {e.traits['instance_id']: e for e in batch}
        self.assertEqual(set(self.vms), set(got))
        for vm, e in got.items():
            self.assertEqual('compute.instance.update', e.event_type)
            self.assertEqual(self.vms[vm], e.project)
            self.assertEqual(('error', 'compute-1', 'mon-1', 'active'),
                             (e.traits['state'], e.traits['host'],
                              e.traits['monitor_event_id'],
                              e.traits['old_state']))
            # Shortcut mode: owners hear before fencing is done.
            self.assertEqual('pending', e.traits['fencing'])
        # Then one compute.instance.fenced per instance, to its owner.
        fenced, = self.engine.owner_batches
        self.assertEqual({(vm, p, 'compute.instance.fenced', 'logical',
                           'logical') for vm, p in self.vms.items()},
                         {(e.traits['instance_id'], e.project, e.event_type,
                           e.traits['method'], e.traits['outcome'])
                          for e in fenced})
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        self.assertFalse(self.nova.service('compute-2')['forced_down'])
        self.assertEqual({'ERROR'}, {self.nova.server(vm)['status']
                                     for vm in self.vms})
        self.assertEqual('ACTIVE', self.nova.server(self.other)['status'])
        # Nova's own update of the reset is recognised, once, by any agent.
        other = journal_mod.FaultJournal(self.store, 'agent-b')
        vm = next(iter(self.vms))
        self.assertTrue(other.nova_update_seen(vm))
        self.assertFalse(self.journal.nova_update_seen(vm))
        self.assertFalse(other.nova_update_seen(self.other))
        # The journal says how far fencing got.
        record = self.journal.get(fault.record.fault_id)
        self.assertEqual((journal_mod.NOTIFIED, journal_mod.DONE,
                          journal_mod.DONE),
                         (record.state, record.fence, record.forced_down))
        self.assertEqual({journal_mod.DONE}, set(record.resets.values()))

    def test_repeated_reports_handled_once_until_recovery(self):
        first = self.inspector.handle(host_down())
        self.assertTrue(first.done.wait(20))
        self.assertIsNone(self.inspector.handle(host_down()))
        self.assertEqual(1, len(self.engine.batches))
        self.assertEqual(1, len(self.nova.calls_to('force-down|os-services/'
                                                   '[0-9a-f-]+$', 'PUT')))
        self.inspector.handle(events.make_event('compute.host.up', {
            'hostname': 'compute-1'}))
        again = self.inspector.handle(host_down())
        self.assertIsNotNone(again)
        self.assertTrue(again.done.wait(20))
        self.assertEqual(2, len(self.engine.batches))

    def test_policy_minor_fault_notifies_without_fencing(self):
        fault = self.inspector.handle(host_down(severity='minor'))
        self.assertTrue(fault.done.wait(5))
        self.assertEqual(6, len(self.engine.batches[0]))
        self.assertFalse(self.nova.service('compute-1')['forced_down'])
        self.assertEqual([], self.nova.calls_to('/action$'))

    def test_fencing_disabled(self):
        inspector = self.make(fence=False)
        fault = inspector.handle(host_down())
        self.assertTrue(fault.done.wait(5))
        self.assertFalse(self.nova.service('compute-1')['forced_down'])

    def test_conservative_mode_fences_before_notifying(self):
        inspector = self.make(mode='conservative')
        fault = inspector.handle(host_down())
        self.assertEqual(6, len(self.engine.batches[0]))
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        self.assertLessEqual(fault.times['reset'], fault.times['events'])

    def test_failed_evaluation_resumed_by_the_redelivered_report(self):
        inspector = self.make(engine=RecordingEngine(fail=True))
        report = host_down()
        self.assertRaises(RuntimeError, inspector.handle, report)
        # Recorded before the failure: another report is a repeat ...
        self.assertIsNone(inspector.handle(host_down()))
        # ... and the requeued report itself resumes the fault.
        inspector.engine = self.engine
        fault = inspector.handle(report)
        self.assertIsNotNone(fault)
        self.assertTrue(fault.done.wait(20))
        self.assertEqual(6, len(self.engine.batches[0]))
        self.assertIsNone(inspector.handle(report))

    def test_fault_of_a_dead_agent_taken_over_by_another(self):
        dead = self.make(engine=RecordingEngine(fail=True),
                         journal=journal_mod.FaultJournal(
                             self.store, 'agent-dead', lease=0.2))
        self.assertRaises(RuntimeError, dead.handle, host_down())
        dead.stop()
        self.assertEqual([], self.engine.batches)
        # The live agent's sweep takes the fault once the lease ran out.
        live = self.inspector

        def swept():
            live.sweep()
            return self.engine.batches
        batch, = doctor_fixtures.poll(swept, 20, 'the fault taken over')
        self.assertEqual(set(self.vms),
                         {e.traits['instance_id'] for e in batch})
        doctor_fixtures.poll(lambda: self.nova.service(
            'compute-1')['forced_down'], 20, 'the host fenced')

    def test_database_down_fault_handled_in_memory_from_nova(self):
        conf = doctor_fixtures.store_conf(
            'postgresql://nobody@127.0.0.1:1/none')
        conf.set_override('db_timeout', 0.5, 'doctor_evaluator')
        store = store_mod.AodhStore(conf)
        fencer = fencing.NovaFencer(self.conf)
        self.addCleanup(fencer.close)
        inspector = core.Inspector(self.conf, self.engine, fencer,
                                   instances.SharedResourceMap(store),
                                   journal_mod.FaultJournal(store, 'x'))
        self.addCleanup(inspector.stop)
        # An instance event is not refused: the evaluator still sees it.
        self.assertIsNone(inspector.handle(events.make_event(
            'compute.instance.update', {
                'instance_id': 'vm-x', 'tenant_id': 'p9',
                'host': 'compute-3', 'state': 'active'})))
        fault = inspector.handle(host_down())
        self.assertTrue(fault.done.wait(20))
        self.assertIsNone(fault.record.fault_id)
        self.assertEqual(set(self.vms), {e.traits['instance_id']
                                         for e in self.engine.batches[0]})
        self.assertEqual((journal_mod.NOTIFIED, journal_mod.DONE),
                         (fault.record.state, fault.record.fence))
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        # Nova cannot tell either: refused, to be requeued.
        self.nova.fail(503, path_regex='/servers/detail', method='GET')
        self.assertRaises(store_mod.StoreUnavailable, inspector.handle,
                          host_down('compute-2'))

    def test_unknown_instances_keep_the_fault_pending(self):
        # A map never loaded, Nova unreachable: not handled with nobody
        # told, but kept resolving and retried.
        self.nova.fail(503, path_regex='/servers/detail', method='GET')
        db = self.useFixture(doctor_fixtures.AodhDatabase())
        self.conf.set_override('aodh_connection', db.url, 'doctor_evaluator')
        store = store_mod.AodhStore(self.conf)
        self.addCleanup(store.dispose)
        journal = journal_mod.FaultJournal(store, 'agent-c')
        fencer = fencing.NovaFencer(self.conf)
        self.addCleanup(fencer.close)
        inspector = core.Inspector(self.conf, self.engine, fencer,
                                   instances.SharedResourceMap(store),
                                   journal)
        fault = inspector.handle(host_down('compute-1'))
        self.assertTrue(fault.done.wait(20))
        self.assertEqual([], self.engine.batches)
        record = journal.get(fault.record.fault_id)
        self.assertEqual(journal_mod.RESOLVING, record.state)
        self.assertEqual(1, record.attempts)

    def test_nova_forced_down_by_someone_else_is_a_fault(self):
        inspector = self.make(fence_event_types=['compute.host.down'])
        update = events.make_event('service.update', {
            'host': 'compute-1', 'binary': 'nova-compute',
            'forced_down': 1, 'disabled': 0})
        fault = inspector.handle(update)
        self.assertIsNotNone(fault)
        self.assertTrue(fault.done.wait(5))
        self.assertEqual(6, len(self.engine.batches[0]))
        # Not fenced again: Nova reported it itself.
        self.assertEqual([], self.nova.calls_to('/action$'))

    def test_refused_reports_fence_nothing_notify_nobody(self):
        self.conf.set_override('verify', True, report_check.GROUP)
        self.conf.set_override('secret', 'shared', report_check.GROUP)
        inspector = self.make()

        def down(secret):
            r = report.build_report('compute-1')
            if secret:
                r = signing.sign(secret, r['type'], r)
            return r
        signed = down('shared')
        for payload, message_id in ((down(None), 'unsigned'),
                                    (down('guessed'), 'forged'),
                                    (signed, 'genuine'),
                                    (signed, 'replayed')):
            fault = inspector.handle(doctor_fixtures.report_event(
                'compute.host.down', payload, message_id=message_id))
            if message_id == 'genuine':
                self.assertTrue(fault.done.wait(20))
                # Forget it, so that a replay would be handled again.
                up = report.build_report('compute-1', status='up')
                self.assertIsNone(inspector.handle(
                    doctor_fixtures.report_event('compute.host.up',
                                                 signing.sign(
                                                     'shared', up['type'],
                                                     up))))
            else:
                self.assertIsNone(fault)
        self.assertEqual({'unsigned': 1, 'bad signature': 1, 'replayed': 1},
                         dict(inspector.check.refused))
        # The genuine report alone notified and fenced.
        self.assertEqual(1, len(self.engine.batches))
        self.assertEqual(1, len(self.nova.calls_to('force-down|os-services/'
                                                   '[0-9a-f-]+$', 'PUT')))

    def test_instance_the_database_refuses_dropped_alone(self):
        log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.assertIsNone(self.inspector.handle(events.make_event(
            'compute.instance.update', {
                'instance_id': 'x' * 200, 'tenant_id': 'p9',
                'host': 'compute-3', 'state': 'active'})))
        self.assertIn('Instance map not updated from compute.instance.update',
                      log.output)
        # Not taken for an outage: the next event is written.
        vm = self.nova.add_server('compute-3', 'p9')
        self.inspector.handle(events.make_event(
            'compute.instance.update', {
                'instance_id': vm, 'tenant_id': 'p9', 'host': 'compute-3',
                'state': 'active'}))
        self.assertEqual('compute-3', self.inspector.map.host_of(vm))

    def test_host_without_name_dropped_with_log(self):
        bad = events.make_event('compute.host.down', {'status': 'down'})
        self.assertIsNone(self.inspector.handle(bad))
        self.assertEqual([], self.engine.batches)

    def test_instance_events_keep_the_map(self):
        vm = self.nova.add_server('compute-3', 'p9')
        self.inspector.handle(events.make_event(
            'compute.instance.create.end', {
                'instance_id': vm, 'tenant_id': 'p9', 'host': 'compute-3',
                'state': 'active'}))
        fault = self.inspector.handle(host_down('compute-3'))
        self.assertTrue(fault.done.wait(20))
        self.assertEqual([vm], [e.traits['instance_id']
                                for e in self.engine.batches[0]])
