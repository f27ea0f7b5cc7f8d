"""Scenario 9: forged, unsigned and replayed host reports, on the real stack.

Anyone with bus credentials can put a ``compute.host.down`` on the monitor's
exchange. Four hosts, two VMs each in the Nova double, one repeating
Doctor alarm per VM (a report handled twice would notify twice):

* ``replayed-host``: a report signed with the agents' secret is sent, and
  handled (owners told, host fenced); the monitor then reports the host up
  (the agent forgets the fault), and the same signed payload is sent again
  as a new message: a replay;
* ``forged-host``: a report signed with a guessed secret;
* ``unsigned-host``: a report without a signature;
* ``signed-host``: a report from the monitor, signed with the secret.

The forged, unsigned and replayed reports fence nothing and notify nobody;
the signed ones do both. Each refusal is one line in the agent's log.

With two agents, the replay is refused by the agent that never saw the
original (the replay memory is in the database they share).
"""

import time

from oslo_config import cfg
import oslo_messaging

from doctor_ext.monitor import report
from doctor_ext.monitor import signing
from tests.faults import base

HOSTS = ('replayed-host', 'forged-host', 'unsigned-host', 'signed-host')
VMS_PER_HOST = 2


class TestSignedReports(base.FaultTest):

    def send(self, payload):
        """Put a payload on the monitor's exchange as a new message."""
        conf = cfg.ConfigOpts()
        conf([], project='doctor-faults')
        transport = report.get_transport(conf, url=self.broker.url)
        self.addCleanup(transport.cleanup)
        oslo_messaging.Notifier(
            transport, driver='messagingv2', topics=['notifications'],
            publisher_id='doctor-monitor.lab').error(
                {}, payload['type'], payload)

    def forced_down_calls(self, host):
        uuid = self.nova.service(host)['uuid']
        return self.nova.calls_to('os-services/%s$' % uuid, 'PUT')

    def resets(self, vms):
        return [c for vm in vms
                for c in self.nova.calls_to('servers/%s/action$' % vm)]

    def handled_then_up(self, vms, alarms, agent=None):
        """A signed report of replayed-host handled, then the host up.

        Returns the report's payload, to be replayed.
        """
        genuine = report.build_report('replayed-host', monitor='ping')
        genuine = signing.sign(self.stack.report_secret, genuine['type'],
                               genuine)
        self.send(genuine)
        self.wait_alarms(alarms, 20)
        base.poll(lambda: len(self.resets(vms)) == VMS_PER_HOST, 20,
                  'replayed-host fenced')
        # Nova's own notifications of the fence are handled, then the host
        # comes back: a replay would be handled as a new fault.
        self.assertTrue(self.nova.flush_notifications(20))
        self.wait_drained()
        self.reporter.report('replayed-host', status='up')
        self.wait_for_log('Host replayed-host is back', agent=agent)
        return genuine

    def test_only_signed_reports_fence_and_notify(self):
        vms = {h: self.add_vms(h, VMS_PER_HOST, repeat=True) for h in HOSTS}
        alarms = {h: {a for _, a in v.values()} for h, v in vms.items()}
        agent = self.start_agent()
        tally = base.Tally('signed-reports', 'a forged, an unsigned and a '
                           'replayed compute.host.down beside signed ones')
        tally.expected = alarms['replayed-host'] | alarms['signed-host']
        started = time.monotonic()

        genuine = self.handled_then_up(vms['replayed-host'],
                                       alarms['replayed-host'])

        self.send(genuine)
        self.make_reporter('guessed-secret').report('forged-host')
        self.make_reporter('').report('unsigned-host')
        self.reporter.report('signed-host')
        tally.sent = 6
        self.wait_alarms(alarms['signed-host'], 20)
        base.poll(lambda: len(self.resets(vms['signed-host'])) ==
                  VMS_PER_HOST, 20, 'signed-host fenced')
        self.wait_for_log('Refused compute.host.down report', 20)
        base.poll(lambda: self.log_of(agent).count('Refused ') >= 3, 20,
                  'three refusals')
        self.assertTrue(self.nova.flush_notifications(20))
        self.wait_drained()
        tally.recover = time.monotonic() - started
        tally.recover_what = 'first report -> queues drained'
        log = self.log_of(agent)
        refusals = [line for line in log.splitlines() if 'Refused ' in line]
        tally.extra = {'refused': len(refusals)}
        self.record(tally.count(self.received()))

        # The signed reports: every owner told once, the host fenced once.
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        for host in ('replayed-host', 'signed-host'):
            self.assertEqual(1, len(self.forced_down_calls(host)), host)
            self.assertEqual(VMS_PER_HOST, len(self.resets(vms[host])))
        # The others: nobody told, nothing fenced.
        self.assertEqual(0, tally.unexpected)
        for host in ('forged-host', 'unsigned-host'):
            self.assertFalse(self.nova.service(host)['forced_down'], host)
            self.assertEqual([], self.resets(vms[host]))
            self.assertEqual({'ACTIVE'}, {s['status'] for s in
                                          self.nova.servers_on(host)})
        self.assertEqual(3, len(refusals), refusals)
        for host, reason in (('replayed-host', 'replayed'),
                             ('forged-host', 'bad signature'),
                             ('unsigned-host', 'unsigned')):
            self.assertEqual(1, sum(
                'from publisher doctor-monitor.' in line and
                '(host %s,' % host in line and '): %s' % reason in line
                for line in refusals), refusals)
        self.assertTrue(agent.alive())

    def test_a_replay_reaching_another_agent_is_refused(self):
        """Two agents: the replay reaches the one that never saw it."""
        vms = {h: self.add_vms(h, VMS_PER_HOST, repeat=True)
               for h in ('replayed-host', 'signed-host')}
        alarms = {h: {a for _, a in v.values()} for h, v in vms.items()}
        first = self.start_agent()
        tally = base.Tally('shared-replays', 'a signed report replayed to '
                           'another agent than the one that handled it')
        tally.expected = alarms['replayed-host'] | alarms['signed-host']
        started = time.monotonic()
        genuine = self.handled_then_up(vms['replayed-host'],
                                       alarms['replayed-host'], first)
        # The other agent alone from now on: it never saw the original.
        second = self.start_agent()
        first.stop()
        self.stack.processes.remove(first)
        self.stack.agents.remove(first)
        self.send(genuine)
        self.reporter.report('signed-host')
        tally.sent = 4
        self.wait_alarms(alarms['signed-host'], 20)
        base.poll(lambda: 'replayed' in self.log_of(second), 20,
                  'the replay refused')
        self.assertTrue(self.nova.flush_notifications(20))
        self.wait_drained()
        tally.recover = time.monotonic() - started
        tally.recover_what = 'first report -> queues drained'
        self.record(tally.count(self.received()))
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertEqual(0, tally.unexpected)
        self.assertEqual(1, len(self.forced_down_calls('replayed-host')))
        self.assertEqual(VMS_PER_HOST, len(self.resets(vms['replayed-host'])))
        refusals = [line for line in self.log_of(second).splitlines()
                    if 'Refused ' in line]
        self.assertEqual(1, len(refusals), refusals)
        self.assertIn('(host replayed-host,', refusals[0])
        self.assertIn('): replayed', refusals[0])
