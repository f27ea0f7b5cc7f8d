"""Scenario 5: Nova answers 5xx, is slow, is down; and the fencing policy.

Four hosts of 10 instances fail one after the other while Nova misbehaves
in a different way for each. The owners must be told on time whatever Nova
does; fencing is retried within its bound and its outcome logged; a fault
the policy says not to fence (severity ``minor``, not in
``[doctor_inspector] fence_severities``) never reaches Nova.
"""

import re
import time

from tests.faults import base

RETRIES = 3


class TestNovaMisbehaves(base.FaultTest):

    agent_options = {'doctor_nova': {'max_retries': str(RETRIES),
                                     'retry_backoff': '0.1',
                                     'call_timeout': '5'}}

    def fault(self, host, vms, scenario, fault, **report):
        """Report ``host`` down; check its owners are told in time."""
        tally = base.Tally(scenario, fault)
        tally.expected = {a for _, a in vms.values()}
        sent = time.time()
        self.reporter.report(host, **report)
        tally.sent = 1
        self.wait_alarms(tally.expected, 10)
        last = max(r.time for r in self.received()
                   if r.body['alarm_id'] in tally.expected)
        tally.extra['last_owner_ms'] = round((last - sent) * 1000, 1)
        return tally, sent

    def fenced(self, agent, host, timeout=60):
        """Wait for the fencing outcome of ``host`` in the log."""
        pattern = re.compile(r'Host %s fenced: forced down=(True|False)'
                             % re.escape(host))
        found = base.poll(lambda: pattern.search(self.log_of(agent)),
                          timeout, 'the fencing outcome of %s' % host)
        return found.group(1) == 'True'

    def test_owners_on_time_fencing_bounded_policy_kept(self):
        hosts = {h: self.add_vms(h, 10) for h in ('bad-gw', 'slow',
                                                  'minor', 'gone')}
        agent = self.start_agent()

        # 1. Nova answers 503 to every compute call.
        self.nova.fail(503, path_regex='os-services|/action')
        tally, sent = self.fault('bad-gw', hosts['bad-gw'], 'nova-503',
                                 'Nova answers 503 to every call')
        self.assertFalse(self.fenced(agent, 'bad-gw'))
        tally.recover = time.time() - sent
        tally.recover_what = 'report -> fencing failure logged'
        # (the service lookup before the force-down already fails)
        puts = self.nova.calls_to('os-services')
        resets = self.nova.calls_to('/action')
        tally.extra['nova_calls'] = {'force_down': len(puts),
                                     'reset': len(resets)}
        self.record(tally.count(self.received(), sent))
        self.assertEqual(0, tally.lost)
        # Bounded: one call and RETRIES retries, per operation.
        self.assertEqual(RETRIES + 1, len(puts))
        self.assertEqual(10 * (RETRIES + 1), len(resets))
        self.assertIn('force-down of nova-compute on host bad-gw failed '
                      'after %d attempts' % (RETRIES + 1),
                      self.log_of(agent))
        self.nova.clear_faults()
        self.nova.clear_calls()

        # 2. Nova takes 2 s for every compute call.
        self.nova.set_latency(2.0)
        tally, sent = self.fault('slow', hosts['slow'], 'nova-slow',
                                 'Nova slow (2 s per call)')
        self.assertTrue(self.fenced(agent, 'slow'))
        tally.recover = time.time() - sent
        tally.recover_what = 'report -> host fenced'
        self.record(tally.count(self.received(), sent))
        self.assertEqual(0, tally.lost)
        self.assertTrue(self.nova.service('slow')['forced_down'])
        self.assertTrue(all(self.nova.server(vm)['status'] == 'ERROR'
                            for vm in hosts['slow']))
        self.nova.clear_faults()
        self.nova.clear_calls()

        # 3. A minor fault: owners told, the host never fenced; a critical
        # one reported after it is fenced (so the policy was applied).
        minor_uuid = self.nova.service('minor')['uuid']
        tally, sent = self.fault('minor', hosts['minor'], 'nova-policy',
                                 'minor report (fence_severities = '
                                 'critical, major)', severity='minor')
        control = self.add_vms('control', 1)
        self.reporter.report('control')
        self.assertTrue(self.fenced(agent, 'control'))
        tally.recover_what = 'never fenced'
        touched = [c for c in self.nova.calls
                   if minor_uuid in c.path or
                   any(vm in c.path for vm in hosts['minor'])]
        tally.extra['nova_calls'] = len(touched)
        self.record(tally.count(self.received(), sent))
        self.assertEqual(0, tally.lost)
        self.assertEqual([], touched)
        self.assertFalse(self.nova.service('minor')['forced_down'])
        self.assertNotIn('Host minor fenced', self.log_of(agent))
        self.assertTrue(control)

        # 4. Nova is gone (connection refused).
        self.nova.stop()
        tally, sent = self.fault('gone', hosts['gone'], 'nova-down',
                                 'Nova down (connection refused)')
        self.assertFalse(self.fenced(agent, 'gone'))
        tally.recover = time.time() - sent
        tally.recover_what = 'report -> fencing failure logged'
        self.record(tally.count(self.received(), sent))
        self.assertEqual(0, tally.lost)
        self.assertEqual(RETRIES, self.log_of(agent).count(
            'force-down of nova-compute on host gone: connection failed'))
