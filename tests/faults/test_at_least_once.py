"""The product changes behind the fault scenarios, one by one.

Engine-level (a real Aodh schema on PostgreSQL, no services): a
redelivered event fires nothing new, and what it owed is delivered through
the outbox when its agent died (at-least-once), concurrent events of one
alarm in one agent fire it exactly once, a failed claim opens the breaker
until the database takes a write again; the inspector's fault events have
ids derived from the report; the ``doctor_typed`` trait plugin keeps a
notification with bad typed values instead of failing it.
"""

import concurrent.futures
import os
import threading
import uuid

from ceilometer.event import converter
from ceilometer import service
import fixtures
from hypothesis import given
from hypothesis import settings
from oslo_config import cfg
from oslotest import base
from stevedore import extension

from doctor_ext.data import trait_plugins
from doctor_ext.db import leases
from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import core
from doctor_ext.inspector import faults
from doctor_ext.inspector import journal
from doctor_ext.inspector import resource_map
from doctor_ext_lab import services
from tests.faults import fuzz
from tests import fixtures as doctor_fixtures


def doctor_query(vm):
    return [{'field': 'traits.state', 'op': 'eq', 'value': 'error'},
            {'field': 'traits.instance_id', 'op': 'eq', 'value': vm}]


def vm_event(vm, project='p1', message_id=None):
    return events.make_event('compute.instance.update', {
        'instance_id': vm, 'tenant_id': project, 'state': 'error'},
        message_id=message_id)


class EngineTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase())
        self.conf = doctor_fixtures.store_conf(self.db.url)

    def engine(self, store=None):
        """A loaded engine: what an agent (re)started now would have."""
        return doctor_fixtures.engine(self, self.conf, store, loaded=True)


class TestRedelivery(EngineTest):

    def test_redelivered_event_notified_once_through_the_outbox(self):
        alarm = self.db.add_alarm(query=doctor_query('vm-1'))
        leases.register_opts(self.conf)
        self.conf.set_override('lease_time', 0.5, 'doctor_state')
        first = self.engine()
        # The first agent claims and owes the notification, then dies
        # before anything is delivered.
        first.notifier = Stuck()
        event = vm_event('vm-1', message_id='msg-1')
        self.assertEqual(1, len(first.evaluate([event])))
        # The notification is redelivered to a new agent: nothing new
        # fires (the claim holds) ...
        second = self.engine()
        self.assertEqual([], second.evaluate([event]))
        # ... and the owed notification is delivered once the dead
        # agent's lease runs out.
        doctor_fixtures.poll(second.outbox.take_expired, 10, 'the takeover')
        sent, = second.notifier.sent
        self.assertEqual((alarm, 'ok', 'alarm'),
                         (sent.alarm_id, sent.previous, sent.current))
        self.assertEqual(0, second.outbox.take_expired())
        # Aodh saw one transition: the history row id comes from the
        # alarm and the event.
        self.assertTrue(second.recorder.wait_idle(10))
        self.assertTrue(first.recorder.wait_idle(10))
        self.assertEqual(1, len(self.db.history(alarm)))
        self.assertEqual('alarm', self.db.state(alarm))

    def test_alarm_moved_by_someone_else_not_fired(self):
        alarm = self.db.add_alarm(query=doctor_query('vm-1'))
        with self.db.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE alarm SET state = 'alarm', state_reason = "
                "'Manually set via API' WHERE alarm_id = %(a)s",
                {'a': alarm})
        event = vm_event('vm-1', message_id='msg-1')
        self.assertEqual([], self.engine().evaluate([event]))


class Stuck:
    """A notifier that never finishes: its agent was killed."""

    sent = ()

    def submit(self, notification):
        return concurrent.futures.Future()


class TestConcurrentEvents(EngineTest):

    def test_two_events_of_one_alarm_at_once_fire_it_once(self):
        """The loser of the claim must not hide the winner's firing."""
        alarm = self.db.add_alarm(query=doctor_query('vm-1'))
        real = store_mod.AodhStore(self.conf)
        self.addCleanup(real.dispose)
        calls = []
        engine = None

        class Store:
            def __getattr__(self, name):
                return getattr(real, name)

            def claim(self, transitions, owed=(), lease=None, history=()):
                won = real.claim(transitions, owed, lease, history)
                calls.append(won)
                if won:
                    # The winner is slow: the loser's event arrives while
                    # its claim is in flight.
                    doctor_fixtures.poll(
                        lambda: engine.claims.queued, 10,
                        'the second event to wait for its claim')
                return won

        engine = self.engine(Store())
        results = {}

        def run(name, event):
            results[name] = engine.evaluate([event])
        winner = threading.Thread(target=run, args=(
            'winner', vm_event('vm-1', message_id='e1')))
        winner.start()
        while not calls:
            winner.join(0.01)
        loser = threading.Thread(target=run, args=(
            'loser', vm_event('vm-1', message_id='e2')))
        loser.start()
        loser.join(10)
        winner.join(10)
        self.assertEqual([], results['loser'])
        self.assertEqual([alarm], [f.alarm.alarm_id
                                   for f in results['winner']])
        # The first claim moved the alarm (and wrote its outbox row), the
        # second nothing.
        self.assertEqual([True, False], [alarm in c for c in calls])
        self.assertEqual(set(), calls[1])


class TestBreaker(EngineTest):

    def test_failed_claim_then_local_until_the_database_writes(self):
        a1 = self.db.add_alarm(query=doctor_query('vm-1'))
        a2 = self.db.add_alarm(query=doctor_query('vm-2'))
        a3 = self.db.add_alarm(query=doctor_query('vm-3'))
        real = store_mod.AodhStore(self.conf)
        self.addCleanup(real.dispose)
        down = threading.Event()
        down.set()
        claims = []

        class Store:
            def __getattr__(self, name):
                if down.is_set():
                    def unavailable(*args, **kwargs):
                        raise store_mod.StoreUnavailable('down')
                    return unavailable
                return getattr(real, name)

            def claim(self, transitions, owed=(), lease=None, history=()):
                # The engine's claims (the recorder retries its own).
                if threading.current_thread().name != 'doctor-recorder':
                    claims.append([i for i, _ in transitions])
                if down.is_set():
                    raise store_mod.StoreUnavailable('down')
                return real.claim(transitions, owed, lease, history)

        engine = self.engine(real)
        engine.store = engine.recorder._store = Store()
        engine.recorder._backoff = 0.01
        self.assertEqual(1, len(engine.evaluate([vm_event('vm-1')])))
        self.assertEqual(1, len(engine.evaluate([vm_event('vm-2')])))
        # The second event did not wait for the database.
        self.assertEqual([[a1]], claims)
        down.clear()
        self.assertTrue(engine.recorder.wait_idle(10))
        self.assertTrue(engine.recorder.healthy)
        # The deferred claims were written; the next event claims again.
        self.assertEqual(1, len(engine.evaluate([vm_event('vm-3')])))
        self.assertEqual([a3], claims[-1])
        for a in (a1, a2, a3):
            self.assertEqual('alarm', self.db.state(a))


class TestFaultEventIds(base.BaseTestCase):

    def test_derived_from_the_report_and_the_instance(self):
        conf = cfg.ConfigOpts()
        conf([], project='doctor-test')
        inspector = core.Inspector(conf, engine=None, fencer=None,
                                   rmap=resource_map.ResourceMap(),
                                   journal=object())
        self.addCleanup(inspector.stop)
        vms = [resource_map.Instance('vm-%d' % i, 'p1', 'u1', 'compute-1',
                                     'ACTIVE') for i in range(3)]

        def make(message_id):
            return faults.HostFault(journal.Fault(
                host='compute-1', message_id=message_id, instances=vms))
        fault = make('report-1')
        ids = [e.message_id for e in inspector.fault_events(fault)]
        self.assertEqual(ids, [e.message_id
                               for e in inspector.fault_events(fault)])
        self.assertEqual(3, len(set(ids)))
        other = make('report-2')
        self.assertFalse(set(ids) & {e.message_id
                                     for e in inspector.fault_events(other)})
        for i in ids:
            uuid.UUID(i)


class TestTypedTraits(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        conf = service.prepare_service(argv=[], config_files=[])
        conf.set_override('definitions_cfg_file', os.path.join(
            services.REPO, 'etc', 'ceilometer', 'event_definitions.yaml'),
            group='event')
        self.converter = converter.setup_events(
            conf, extension.ExtensionManager(
                namespace='ceilometer.event.trait_plugin'))

    def convert(self, event_type, payload):
        return self.converter.to_event('info', {
            'ctxt': {}, 'publisher_id': 'test', 'event_type': event_type,
            'payload': payload,
            'metadata': {'message_id': str(uuid.uuid4()),
                         'timestamp': '2026-01-01 00:00:00.000000'}})

    def test_bad_values_give_no_trait_and_a_warning(self):
        log = self.useFixture(fixtures.FakeLogger())
        event = self.convert('compute.host.down', {
            'time': 'yesterday', 'details': {'hostname': 'compute-1'}})
        traits = {t.name: t.value for t in event.traits}
        self.assertEqual('compute-1', traits['hostname'])
        self.assertNotIn('fault_time', traits)
        self.assertIn('payload.time', log.output)
        event = self.convert('service.update', {'nova_object.data': {
            'host': 'compute-1', 'forced_down': {'a': 1}, 'disabled': [],
            'last_seen_up': 17}})
        traits = {t.name: t.value for t in event.traits}
        self.assertEqual('compute-1', traits['host'])
        self.assertFalse({'forced_down', 'disabled',
                          'last_seen_up'} & set(traits))
        event = self.convert('compute.instance.update', {
            'instance_id': 'vm-1', 'memory_mb': 'lots', 'vcpus': 1e400,
            'launched_at': '', 'state': 'error'})
        traits = {t.name: t.value for t in event.traits}
        self.assertEqual('error', traits['state'])
        self.assertNotIn('memory_mb', traits)
        self.assertNotIn('launched_at', traits)

    def test_good_values_kept(self):
        event = self.convert('service.update', {'nova_object.data': {
            'host': 'compute-1', 'forced_down': True, 'disabled': 'False',
            'last_seen_up': '2026-01-01T00:00:00Z'}})
        traits = {t.name: t.value for t in event.traits}
        self.assertEqual(1, traits['forced_down'])
        self.assertEqual(0, traits['disabled'])
        self.assertEqual(2026, traits['last_seen_up'].year)

    @settings(max_examples=300, deadline=None)
    @given(fuzz.notifications.filter(
        lambda n: n['event_type'] in fuzz.OUR_TYPES))
    def test_our_event_types_never_fail_conversion(self, n):
        self.convert(n['event_type'], n['payload'])

    def test_plugin_parameters_checked(self):
        self.assertRaises(ValueError, trait_plugins.TypedTraitPlugin,
                          type='boolean')
        self.assertRaises(ValueError, trait_plugins.TypedTraitPlugin,
                          type='int', values=[1])
