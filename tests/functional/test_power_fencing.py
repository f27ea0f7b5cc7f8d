"""Power fencing across the real services, with a real Redfish peer.

sushy-tools' emulator (fake driver) serves one system per compute host;
the agent powers the failing host off through it with sushy. Owners who
asked for it get a second notification, ``compute.instance.fenced``, once
the host is really fenced; Doctor's own alarm works as before.
"""

import os

from doctor_ext_lab import redfish
from tests.functional import base

HOSTS = ('compute-1', 'compute-2')


def fenced_rule(instance_id, outcome=None):
    """The event rule of an owner's "fenced" alarm (usage guide)."""
    query = [{'field': 'traits.instance_id', 'op': 'eq', 'type': 'string',
              'value': instance_id}]
    if outcome:
        query.append({'field': 'traits.outcome', 'op': 'eq',
                      'type': 'string', 'value': outcome})
    return {'event_type': 'compute.instance.fenced', 'query': query}


def trait(received, name):
    for key, _, value in received.body['reason_data']['event']['traits']:
        if key == name:
            return value
    return None


class PowerFencingTest(base.FunctionalTest):
    """A stack whose agents power off through the emulator's BMCs."""

    HOSTS = HOSTS
    BMC_HOSTS = HOSTS
    fencing_options = {}

    def setUp(self):
        super().setUp()
        self.emulator = self.useFixture(redfish.RedfishEmulatorFixture(
            self.HOSTS)).emulator
        self.bmc_file = os.path.join(self.stack.workdir, 'bmc.yaml')
        self.write_bmc_file()
        options = {k: dict(v) for k, v in self.stack.agent_options.items()}
        fencing = options.setdefault('doctor_fencing', {})
        fencing.update({'power': 'True', 'bmc_file': self.bmc_file,
                        'power_poll_interval': '0.1',
                        'bmc_retry_backoff': '0.05'})
        fencing.update(self.fencing_options)
        self.stack.agent_options = options

    def write_bmc_file(self, addresses=None):
        self.emulator.write_bmc_file(self.bmc_file, self.BMC_HOSTS,
                                     addresses)

    def create_fenced_alarm(self, project, vm, outcome=None):
        return self.stack.aodh('POST', '/v2/alarms', project, {
            'name': 'fenced-%s' % vm, 'type': 'event',
            'severity': 'critical', 'repeat_actions': False,
            'alarm_actions': [self.consumers[project].url('/fenced')],
            'event_rule': fenced_rule(vm, outcome)})

    def fenced_notices(self, project=None):
        return [r for r in self.received(project) if r.path == '/fenced']


class TestPowerFencing(PowerFencingTest):

    def test_failing_host_powered_off_owners_told_twice(self):
        failing = self.add_vms('compute-1', 3)
        healthy = self.add_vms('compute-2', 3)
        # Owners of project-a and project-b ask to be told when it is
        # safe; project-c's owner keeps Doctor's alarm only.
        asked = {vm: p for vm, (p, _) in {**failing, **healthy}.items()
                 if p != 'project-c'}
        for vm, p in asked.items():
            self.create_fenced_alarm(p, vm)
        self.start_agent()
        self.reporter.report('compute-1')

        self.wait_notified(len(failing))
        fenced = [vm for vm in failing if vm in asked]
        notices = base.poll(
            lambda: len(self.fenced_notices()) >= len(fenced) and
            self.fenced_notices(), 60, 'the fenced notifications')
        # Exactly the failing host is off, on the BMC.
        self.assertEqual('Off', self.emulator.power_state('compute-1'))
        self.assertEqual('On', self.emulator.power_state('compute-2'))
        self.assertTrue(self.nova.service('compute-1')['forced_down'])
        self.assertFalse(self.nova.service('compute-2')['forced_down'])
        # Doctor's alarm: each owner, its instances, fencing pending.
        failures = [r for r in self.received() if r.path == '/failure']
        self.assertEqual(sorted(failing),
                         sorted(base.instance_of(r) for r in failures))
        self.assertEqual({'pending'}, {trait(r, 'fencing')
                                       for r in failures})
        # The fenced alarm: only the owners that asked, after Doctor's.
        self.assertEqual(sorted(fenced),
                         sorted(base.instance_of(r) for r in notices))
        for r in notices:
            self.assertEqual(asked[base.instance_of(r)],
                             failing[base.instance_of(r)][0])
            self.assertEqual(('power', 'powered_off', 'compute-1'),
                             (trait(r, 'method'), trait(r, 'outcome'),
                              trait(r, 'host')))
        self.assertLess(max(r.time for r in failures),
                        min(r.time for r in notices))
        self.assertEqual([], self.fenced_notices('project-c'))
        log = self.wait_for_log('told the owners of 3 instance(s) fencing '
                                'is powered_off')
        self.assertIn('Host compute-1 powered off: ForceOff', log)
