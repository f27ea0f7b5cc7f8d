"""``doctor-ext-demo --power-fencing``: the fault demo, with power fencing.

The services of the fault demo, plus sushy-tools' Redfish emulator (fake
driver) as the BMC of both compute hosts, named in the agent's BMC file.
Each owner has Doctor's alarm on its VM (``/failure``) and a second Aodh
event alarm on ``compute.instance.fenced`` for it (``/fenced``), as the
usage guide shows.

The host fails (its link goes down, or a report if no network namespace can
be made). The timeline shows the two phases: the owners are told at once
(``fencing=pending``); the host is powered off through its BMC and the
power state read back ``Off``; only then is it forced down in Nova; then
the owners are told it is fenced (``outcome=powered_off``). ``--json FILE``
writes the timeline and the checks.
"""

import json
import os
import tempfile
import time

from doctor_ext_lab import demo as demo_mod

CHECKPOINTS = [
    ('P00', 'fault injected (host link down)'),
    ('P01', 'fault detected by the monitor'),
    ('P02', 'last owner told of the fault (fencing=pending)'),
    ('P03', 'host powered off, state Off read back (BMC)'),
    ('P04', 'host forced down (Nova)'),
    ('P05', 'first owner told: fenced (outcome=powered_off)'),
    ('P06', 'last owner told: fenced'),
]
FENCED_PATH = '/fenced'
say = demo_mod.say


def fenced_rule(instance_id):
    """The owner's second alarm: its VM's host is powered off."""
    return {'event_type': 'compute.instance.fenced',
            'query': [{'field': 'traits.instance_id', 'op': 'eq',
                       'type': 'string', 'value': instance_id},
                      {'field': 'traits.outcome', 'op': 'eq',
                       'type': 'string', 'value': 'powered_off'}]}


class PowerDemo(demo_mod.Demo):

    def __init__(self, args):
        super().__init__(args)
        self.emulator = None

    def agent_options(self):
        from doctor_ext_lab import redfish
        say('starting the Redfish emulator (sushy-tools, fake driver): one '
            'system per compute host')
        self.emulator = redfish.RedfishEmulator(
            ['compute-1', 'compute-2'],
            workdir=tempfile.mkdtemp(prefix='doctor-redfish-')).start()
        self.emulator._own_workdir = True
        bmc_file = os.path.join(self.emulator.workdir, 'bmc.yaml')
        self.emulator.write_bmc_file(bmc_file)
        return {'doctor_fencing': {'power': 'True', 'bmc_file': bmc_file,
                                   'power_poll_interval': '0.1'}}

    def create_alarms(self):
        super().create_alarms()
        say('creating %d "fenced" alarms (compute.instance.fenced, outcome '
            'powered_off) through the Aodh API' % len(self.vms))
        for vm, p in self.vms.items():
            self.stack.aodh('POST', '/v2/alarms', p, {
                'name': 'fenced-%s' % vm, 'type': 'event',
                'severity': 'critical',
                'alarm_actions': [self.consumers[p].url(FENCED_PATH)],
                'event_rule': fenced_rule(vm)})

    def posts(self, path):
        return [r for c in self.consumers.values() for r in c.received
                if r.path == path]

    def run_fault(self):
        expected = len(self.vms)
        say('failing %s (%d VMs of %d projects)' % (
            self.failing, expected, len(self.projects)))
        t00 = time.time()
        if self.host is not None:
            self.host.fail()
        else:
            self.reporter.send(self._report())
        deadline = time.monotonic() + max(self.args.timeout, 60.0)
        while time.monotonic() < deadline:
            if len(self.posts(FENCED_PATH)) >= expected:
                break
            time.sleep(0.02)
        return self.collect_power(t00, expected)

    def collect_power(self, t00, expected):
        def ms(t):
            return round((t - t00) * 1000.0, 1) if t else None
        detected = t00
        if self.monitor is not None:
            detected = self.monitor.detected_at.get(self.failing) or t00
        hosts, _ = demo_mod.parse_timelines(self.stack.agents[0].log_file)
        fault = hosts[-1] if hosts else {}
        failures, fenced = self.posts('/failure'), self.posts(FENCED_PATH)
        forces = [c for c in self.nova.calls
                  if c['method'] == 'PUT' and 'os-services' in c['path']]
        powered_off = fault.get('powered_off')
        timeline = {
            'P00': 0.0, 'P01': ms(detected),
            'P02': ms(max((r.time for r in failures), default=None)),
            'P03': ms(float(powered_off)) if powered_off else None,
            'P04': ms(min((c['time'] for c in forces), default=None)),
            'P05': ms(min((r.time for r in fenced), default=None)),
            'P06': ms(max((r.time for r in fenced), default=None)),
        }
        steps = [timeline[k] for k in ('P02', 'P03', 'P04', 'P05')]
        return {
            'vms': expected, 'projects': len(self.projects),
            'owners_told_fault': len(failures),
            'owners_told_fenced': len(fenced), 'expected': expected,
            'fencing_trait_at_fault': sorted({_trait(r, 'fencing')
                                              for r in failures}),
            'outcomes': sorted({_trait(r, 'outcome') for r in fenced}),
            'power_state': {h: self.emulator.power_state(h)
                            for h in self.emulator.hosts},
            'in_order': None not in steps and steps == sorted(steps),
            'timeline': timeline,
        }

    def teardown(self):
        super().teardown()
        if self.emulator is not None:
            self.emulator.stop()


def _trait(received, name):
    try:
        for key, _, value in received.body['reason_data']['event']['traits']:
            if key == name:
                return value
    except (KeyError, TypeError, ValueError):
        return None
    return None


def print_timeline(result):
    print()
    print('Power fencing timeline: %d VMs of %d projects on the failing '
          'host' % (result['vms'], result['projects']))
    print('-' * 68)
    for key, label in CHECKPOINTS:
        value = result['timeline'].get(key)
        shown = '%10.1f ms' % value if value is not None else '    (none)'
        print('%s  %-50s %s' % (key, label, shown))
    print('-' * 68)
    print('phase 1: %d of %d owners told of the fault, fencing trait %s'
          % (result['owners_told_fault'], result['expected'],
             '/'.join(result['fencing_trait_at_fault'])))
    print('phase 2: %d of %d owners told it is fenced, outcome %s; power '
          'state on the BMC: %s' % (
              result['owners_told_fenced'], result['expected'],
              '/'.join(result['outcomes']) or '-',
              ', '.join('%s %s' % kv for kv in sorted(
                  result['power_state'].items()))))
    ok = (result['in_order'] and
          result['owners_told_fault'] == result['expected'] and
          result['owners_told_fenced'] == result['expected'] and
          result['outcomes'] == ['powered_off'] and
          result['power_state'] == {'compute-1': 'Off', 'compute-2': 'On'})
    verdict = 'PASS' if ok else 'FAIL'
    print('owners told, then powered off, then forced down, then owners '
          'told it is fenced: %s' % verdict)
    return verdict


def main(args):
    demo = PowerDemo(args)
    result, code = demo_mod.run(demo, demo.run_fault)
    if code is not None:
        return code
    verdict = print_timeline(result)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2, sort_keys=True)
        say('wrote %s' % args.json)
    return 0 if verdict == 'PASS' else 1
