"""Scenario 5 on real Nova: nova-api held, then refused, during a failure.

The catalog's compute endpoint of the suite's real cloud (tests/realnova)
is a TCP proxy in front of nova-api. A host fails while the proxy holds
every byte (Nova slow: the owners are told on time, the force-down waits
and lands once Nova answers again), then another host fails while the proxy
refuses connections (Nova down: the owners are told on time, the fencing
failure is logged after its bounded retries and Nova is left untouched).
"""

import re
import time

from tests.faults import base
from tests.realnova import testcase

RETRIES = 2


class TestNovaUnreachableOnRealNova(testcase.RealNovaTest, base.FaultTest):

    agent_options = {'doctor_nova': {'max_retries': str(RETRIES),
                                     'retry_backoff': '0.1',
                                     'call_timeout': '20'}}

    def fault(self, host, scenario, fault):
        vms = self.servers_on(host)
        tally = base.Tally(scenario, fault)
        tally.expected = set(self.doctor_alarms(vms).values())
        return vms, tally

    def report(self, host, tally):
        sent = time.time()
        self.reporter.report(host)
        tally.sent = 1
        self.wait_alarms(tally.expected, 10)
        last = max(r.time for r in self.received()
                   if r.body['alarm_id'] in tally.expected)
        tally.extra['last_owner_ms'] = round((last - sent) * 1000, 1)
        return sent

    def fenced(self, agent, host, timeout=90):
        pattern = re.compile(r'Host %s fenced: forced down=(True|False)'
                             % re.escape(host))
        found = base.poll(lambda: pattern.search(self.log_of(agent)),
                          timeout, 'the fencing outcome of %s' % host)
        return found.group(1) == 'True'

    def test_owners_on_time_while_nova_held_then_refused(self):
        proxy = self.cloud.proxy
        self.addCleanup(proxy.restore)
        self.give_back('compute-1', 'compute-2')
        slow, slow_tally = self.fault('compute-2', 'real-nova-held',
                                      'nova-api held (real Nova)')
        gone, gone_tally = self.fault('compute-1', 'real-nova-refused',
                                      'nova-api refused (real Nova)')
        agent = self.start_agent()

        # 1. nova-api answers nothing: connections accepted, bytes held.
        proxy.hang()
        sent = self.report('compute-2', slow_tally)
        base.poll(lambda: proxy.held, 15, 'the agent to call Nova')
        self.assertFalse(self.cloud.service('compute-2')['forced_down'])
        proxy.restore()
        self.assertTrue(self.fenced(agent, 'compute-2'))
        slow_tally.recover = time.time() - sent
        slow_tally.recover_what = 'report -> host fenced once Nova answers'
        self.record(slow_tally.count(self.received(), sent))
        self.assertEqual(0, slow_tally.lost)
        self.assertEqual(0, slow_tally.duplicated)
        self.assertTrue(self.cloud.service('compute-2')['forced_down'])
        self.wait_status(slow, 'ERROR')

        # 2. nova-api refuses connections.
        proxy.cut()
        sent = self.report('compute-1', gone_tally)
        self.assertFalse(self.fenced(agent, 'compute-1'))
        gone_tally.recover = time.time() - sent
        gone_tally.recover_what = 'report -> fencing failure logged'
        proxy.restore()
        self.record(gone_tally.count(self.received(), sent))
        self.assertEqual(0, gone_tally.lost)
        self.assertEqual(0, gone_tally.duplicated)
        self.assertFalse(self.cloud.service('compute-1')['forced_down'])
        self.assertTrue(all(self.cloud.server(vm)['status'] == 'ACTIVE'
                            for vm in gone))
