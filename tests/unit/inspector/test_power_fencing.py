"""Power fencing in the inspector: the sushy-tools emulator as the BMCs,
the Nova double over HTTP, the shared tables on a real PostgreSQL.

What is checked is what the BMC, Nova and the owners end up with, and in
which order: power off confirmed, then Nova's force-down, then the owners'
``compute.instance.fenced`` events.
"""

import fixtures
from oslo_config import cfg
from oslotest import base

from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import core
from doctor_ext.inspector import fencing
from doctor_ext.inspector import guard
from doctor_ext.inspector import instances
from doctor_ext.inspector import journal as journal_mod
from doctor_ext.inspector import nova_connection
from doctor_ext.inspector import power as power_mod
from doctor_ext.inspector import power_fencing
from doctor_ext.inspector import recovery
from doctor_ext.inspector import report_check
from doctor_ext_lab import nova as nova_mod
from doctor_ext_lab import redfish
from tests import fixtures as doctor_fixtures
from tests.unit.inspector import test_hook

HOSTS = ('compute-1', 'compute-2', 'compute-3')


def host_down(host, severity='critical'):
    return test_hook.host_down(host, severity=severity)


class PowerFencingTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.nova = self.useFixture(nova_mod.NovaDoubleFixture()).nova
        self.emulator = self.useFixture(redfish.RedfishEmulatorFixture(
            HOSTS)).emulator
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-test')
        nova_connection.register_opts(self.conf)
        self.nova.configure(self.conf, nova_connection.GROUP)
        report_check.register_opts(self.conf)
        self.conf.set_override('verify', False, report_check.GROUP)
        self.bmc_file = self.useFixture(fixtures.TempDir()).join('bmc.yaml')
        # compute-3 has no BMC.
        self.emulator.write_bmc_file(self.bmc_file, HOSTS[:2])
        power_fencing.register_opts(self.conf)
        recovery.register_opts(self.conf)
        guard.register_opts(self.conf)
        power_mod.register_opts(self.conf)
        for key, value in (('power', True), ('bmc_file', self.bmc_file),
                           ('power_poll_interval', 0.1),
                           ('bmc_retry_backoff', 0.01)):
            self.conf.set_override(key, value, power_fencing.GROUP)
        self.vms = {h: {self.nova.add_server(h, 'p%d' % i): 'p%d' % i
                        for i in range(2)} for h in HOSTS}
        self.db = self.useFixture(doctor_fixtures.AodhDatabase())
        store_mod.register_opts(self.conf)
        self.conf.set_override('aodh_connection', self.db.url,
                               'doctor_evaluator')
        self.store = store_mod.AodhStore(self.conf)
        self.addCleanup(self.store.dispose)
        self.engine = test_hook.RecordingEngine(store=self.store)
        self.journal = journal_mod.FaultJournal(self.store, 'agent-a',
                                                lease=0.5)

    def make(self, **overrides):
        for k, v in overrides.items():
            self.conf.set_override(k, v, power_fencing.GROUP)
        fencer = fencing.NovaFencer(self.conf)
        self.addCleanup(fencer.close)
        inspector = core.Inspector(self.conf, self.engine, fencer,
                                   instances.SharedResourceMap(self.store),
                                   self.journal)
        self.addCleanup(inspector.stop)
        inspector.start()
        self.assertTrue(inspector.map.loaded.wait(10))
        return inspector

    def fenced_events(self, host):
        return [e for batch in self.engine.owner_batches for e in batch
                if e.event_type == 'compute.instance.fenced' and
                e.traits['host'] == host]

    def force_down_calls(self):
        return self.nova.calls_to('force-down|os-services/[0-9a-f-]+$',
                                  'PUT')

    def test_power_off_confirmed_then_forced_down_then_owners_told(self):
        inspector = self.make()
        fault = inspector.handle(host_down('compute-1'))
        self.assertTrue(fault.done.wait(60))
        # The BMC: exactly the failing host is off.
        self.assertEqual(['Off', 'On', 'On'],
                         [self.emulator.power_state(h) for h in HOSTS])
        # Nova's force-down came after the power-off was confirmed.
        call, = self.force_down_calls()
        self.assertLess(fault.times['powered_off'], call.time)
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        # Owners: told first (pending), then powered_off, per instance.
        first, = self.engine.batches
        self.assertEqual({'pending'}, {e.traits['fencing'] for e in first})
        told = self.fenced_events('compute-1')
        self.assertEqual(self.vms['compute-1'],
                         {e.traits['instance_id']: e.project for e in told})
        self.assertEqual({('power', 'powered_off')},
                         {(e.traits['method'], e.traits['outcome'])
                          for e in told})
        self.assertLess(call.time, fault.times['fenced_told'])
        row = inspector.power.ledger.get(fault.record.fault_id)
        self.assertEqual(('power', 'powered_off'),
                         (row['method'], row['state']))

    def test_host_without_bmc_fenced_logically_and_says_so(self):
        log = self.useFixture(fixtures.FakeLogger(
            name='doctor_ext.inspector'))
        inspector = self.make()
        fault = inspector.handle(host_down('compute-3'))
        self.assertTrue(fault.done.wait(30))
        self.assertIn('Host compute-3 has no BMC in the BMC file: fenced '
                      'logically only', log.output)
        self.assertTrue(self.nova.service('compute-3')['forced_down'])
        self.assertEqual({('logical', 'logical')},
                         {(e.traits['method'], e.traits['outcome'])
                          for e in self.fenced_events('compute-3')})
        self.assertEqual(['On', 'On'],
                         [self.emulator.power_state(h) for h in HOSTS[:2]])

    def test_policy_minor_fault_not_powered_off(self):
        inspector = self.make()
        self.conf.set_override('fence_severities', ['critical', 'minor'],
                               core.GROUP)
        fault = inspector.handle(host_down('compute-2', severity='minor'))
        self.assertTrue(fault.done.wait(30))
        self.assertEqual('On', self.emulator.power_state('compute-2'))
        self.assertTrue(self.nova.service('compute-2')['forced_down'])
        self.assertEqual({'logical'}, {e.traits['outcome'] for e in
                                       self.fenced_events('compute-2')})

    def test_held_by_the_guard_until_an_operator_confirms(self):
        log = self.useFixture(fixtures.FakeLogger(
            name='doctor_ext.inspector'))
        inspector = self.make(storm_max_hosts=0)
        fault = inspector.handle(host_down('compute-1'))
        self.assertTrue(fault.done.wait(30))
        self.assertIn('doctor-ext-fence confirm compute-1', log.output)
        # Nothing powered off, nothing forced down, no fenced event.
        self.assertEqual('On', self.emulator.power_state('compute-1'))
        self.assertEqual([], self.force_down_calls())
        self.assertEqual([], self.fenced_events('compute-1'))
        self.assertEqual(guard.HELD,
                         self.journal.get(fault.record.fault_id).fence)
        # The operator confirms; the next sweep powers the host off.
        self.assertEqual(1, guard.confirm(self.store, 'compute-1', 'ops'))
        doctor_fixtures.poll(lambda: (inspector.sweep(), self.fenced_events(
            'compute-1'))[1], 60, 'the confirmed host fenced')
        self.assertEqual('Off', self.emulator.power_state('compute-1'))
        self.assertTrue(self.nova.service('compute-1')['forced_down'])

    def test_recovery_power_on_after_hold(self):
        inspector = self.make(recovery='power_on', recovery_hold_time=0)
        fault = inspector.handle(host_down('compute-1'))
        self.assertTrue(fault.done.wait(60))
        self.assertEqual('Off', self.emulator.power_state('compute-1'))
        inspector.handle(events.make_event('compute.host.up', {
            'hostname': 'compute-1'}))
        inspector.recovery.sweep()
        self.assertEqual('On', self.emulator.power_state('compute-1'))
        self.assertFalse(self.nova.service('compute-1')['forced_down'])
        recovered = [e for b in self.engine.owner_batches for e in b
                     if e.event_type == 'compute.instance.recovered']
        self.assertEqual(self.vms['compute-1'],
                         {e.traits['instance_id']: e.project
                          for e in recovered})
        # Done once: a second sweep gives nothing back again.
        inspector.recovery.sweep()
        self.assertEqual(len(recovered), sum(
            1 for b in self.engine.owner_batches for e in b
            if e.event_type == 'compute.instance.recovered'))

    def test_recovery_leave_keeps_the_host_fenced(self):
        inspector = self.make(recovery_hold_time=0)
        fault = inspector.handle(host_down('compute-3'))
        self.assertTrue(fault.done.wait(30))
        inspector.handle(events.make_event('compute.host.up', {
            'hostname': 'compute-3'}))
        inspector.recovery.sweep()
        self.assertTrue(self.nova.service('compute-3')['forced_down'])

    def test_new_fault_during_the_hold_cancels_the_recovery(self):
        inspector = self.make(recovery='power_on', recovery_hold_time=0)
        fault = inspector.handle(host_down('compute-3'))
        self.assertTrue(fault.done.wait(30))
        inspector.handle(events.make_event('compute.host.up', {
            'hostname': 'compute-3'}))
        again = inspector.handle(host_down('compute-3'))
        self.assertTrue(again.done.wait(30))
        inspector.recovery.sweep()
        self.assertTrue(self.nova.service('compute-3')['forced_down'])
        self.assertEqual([], [e for b in self.engine.owner_batches
                              for e in b
                              if e.event_type == 'compute.instance.recovered'])
        row = inspector.power.ledger.get(fault.record.fault_id)
        self.assertEqual(('logical', None), (row['state'],
                                             row['recover_at']))
