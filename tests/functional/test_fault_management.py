"""Doctor fault management across the real services.

Each test asserts what consumers, Nova and Aodh end up with.
"""

import time

import testtools

from doctor_ext.monitor import ping
from doctor_ext_lab import netns
from tests.functional import base


class TestDoctorDemo(base.FunctionalTest):
    """The OPNFV Doctor demo: one VM, its owner's alarm, a host failure."""

    def test_ping_detected_host_failure(self):
        vms = self.add_vms('compute-1', 1, projects=['project-a'])
        (vm, (project, alarm_id)), = vms.items()
        self.start_agent()
        try:
            host = netns.FaultyHost().create()
        except Exception as e:
            raise testtools.TestCase.skipException(
                'cannot create a network namespace here: %s' % e)
        self.addCleanup(host.destroy)
        monitor = ping.PingMonitor({'compute-1': host.address},
                                   self.reporter, interval=0.05,
                                   timeout=0.05, misses_before_down=3)
        monitor.start()
        self.addCleanup(monitor.stop)
        base.poll(lambda: monitor.state('compute-1') == 'up', 10,
                  'the monitor to see compute-1 up')

        host.fail()
        self.wait_notified(1)
        self.assertIn('compute-1', monitor.detected_at)
        got = self.consumers[project].received
        self.assertEqual(1, len(got))
        self.assertEqual('/failure', got[0].path)
        self.assertEqual(vm, base.instance_of(got[0]))
        self.assertEqual(alarm_id, got[0].body['alarm_id'])
        self.assertEqual('alarm', got[0].body['current'])

        # Nova: the compute service forced down, the VM in error.
        base.poll(lambda: self.nova.service('compute-1')['forced_down'], 10,
                  'compute-1 forced down')
        base.poll(lambda: self.nova.server(vm)['status'] == 'ERROR', 10,
                  'the VM in error')
        # Aodh: state and history tell the truth.
        self.assertEqual('alarm', self.alarm(project, alarm_id)['state'])
        history = base.poll(lambda: [
            h for h in self.history(project, alarm_id)
            if h['type'] == 'state transition'], 10, 'alarm history')
        self.assertIn('"state": "alarm"', history[0]['detail'])


class TestIsolation(base.FunctionalTest):
    def test_owners_get_exactly_their_vms(self):
        failing = self.add_vms('compute-1', 9)
        healthy = self.add_vms('compute-2', 6)
        self.start_agent()
        self.reporter.report('compute-1')
        self.wait_notified(len(failing))
        for project, consumer in self.consumers.items():
            got = sorted(base.instance_of(r) for r in consumer.received)
            mine = sorted(vm for vm, (p, _) in failing.items()
                          if p == project)
            self.assertEqual(mine, got, project)
        notified = {base.instance_of(r) for r in self.received()}
        self.assertFalse(notified & set(healthy))
        # Only the failing host was fenced.
        base.poll(lambda: self.nova.service('compute-1')['forced_down'], 10,
                  'compute-1 forced down')
        self.assertFalse(self.nova.service('compute-2')['forced_down'])
        self.assertTrue(all(self.nova.server(vm)['status'] != 'ERROR'
                            for vm in healthy))


class TestAlarmChanges(base.FunctionalTest):
    """Alarms created, changed and deleted in aodh-api, agent running.

    The agent follows aodh-api's alarm notifications; how soon is a figure
    of the benchmark (alarm freshness), not asserted here.
    """

    WAIT = 30

    def _fire_until_notified(self, vm, consumer, path='/failure'):
        """Send Nova's error update for ``vm`` until its owner hears."""
        def mine():
            return [r for r in consumer.received if r.path == path]
        before = len(mine())

        def heard():
            # Send again every 0.2 s until the alarm is known and fires.
            self.reset_state(vm, 'error')
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                if len(mine()) > before:
                    return True
                time.sleep(0.01)
            return False
        base.poll(heard, self.WAIT, 'a notification for %s' % vm)
        return mine()[-1]

    def test_created_changed_deleted_alarm_honoured(self):
        vms = self.add_vms('compute-1', 2, projects=['project-a'],
                           alarms=False)
        vm1, vm2 = list(vms)
        consumer = self.consumers['project-a']
        self.start_agent()

        alarm = self.stack.create_doctor_alarm(
            'project-a', vm1, consumer.url('/failure'), repeat=True)
        got = self._fire_until_notified(vm1, consumer)
        self.assertEqual(vm1, base.instance_of(got))

        rule = alarm['event_rule']
        rule['query'][1]['value'] = vm2
        update = {k: alarm[k] for k in ('name', 'type', 'severity',
                                        'repeat_actions', 'alarm_actions')}
        update['event_rule'] = rule
        self.stack.aodh('PUT', '/v2/alarms/%s' % alarm['alarm_id'],
                        'project-a', json=update)
        got = self._fire_until_notified(vm2, consumer)
        self.assertEqual(vm2, base.instance_of(got))

        self.stack.aodh('DELETE', '/v2/alarms/%s' % alarm['alarm_id'],
                        'project-a')
        # aodh-api announces the deletion, then this creation, in order:
        # once the control alarm fires, the agent has taken the deletion.
        control_vm = self.nova.add_server('compute-1', 'project-a')
        self.stack.create_doctor_alarm('project-a', control_vm,
                                       consumer.url('/control'),
                                       repeat=True)
        self._fire_until_notified(control_vm, consumer, '/control')
        deleted = len(consumer.received)
        # The VM of the deleted alarm fails, then the control VM: once the
        # control's owner hears again, the agent has taken the first event
        # too.
        self.reset_state(vm2, 'error')
        self._fire_until_notified(control_vm, consumer, '/control')
        late = [r for r in consumer.received[deleted:]
                if r.path == '/failure']
        self.assertEqual([], late)


class TestRepeatedReports(base.FunctionalTest):
    def test_fence_once_notify_once(self):
        vms = self.add_vms('compute-1', 6)
        self.start_agent()
        for _ in range(3):
            self.reporter.report('compute-1')
        self.wait_notified(len(vms))
        base.poll(lambda: self.agent_log().count(
            'fault already handled') >= 2, 10,
            'the agent to ignore the 2 repeated reports')
        base.poll(lambda: all(self.nova.server(vm)['status'] == 'ERROR'
                              for vm in vms), 10, 'VMs in error')
        # Nova's call log is written as each call is answered: poll it.

        def resets():
            return [c for c in self.nova.calls if c.path.endswith('/action')]
        base.poll(lambda: len(resets()) >= len(vms), 10, 'the reset calls')
        self.assertEqual(len(vms), len(resets()))
        force_downs = [c for c in self.nova.calls
                       if c.method == 'PUT' and 'os-services' in c.path]
        self.assertEqual(1, len(force_downs))
        self.assertEqual(len(vms), len(self.received()))
        # Nova's own updates for the resets did not notify anyone again.
        self.nova.flush_notifications()
        self.assertEqual(len(vms), len(self.received()))


class TestNovaMisbehaves(base.FunctionalTest):
    def test_nova_500_notifications_on_time_fence_retried(self):
        vms = self.add_vms('compute-1', 5)
        self.start_agent()
        self.nova.fail(500, count=2, path_regex='os-services|/action')
        self.reporter.report('compute-1')
        self.wait_notified(len(vms))
        base.poll(lambda: self.nova.service('compute-1')['forced_down'], 20,
                  'compute-1 forced down after retries')
        base.poll(lambda: all(self.nova.server(vm)['status'] == 'ERROR'
                              for vm in vms), 20, 'VMs in error')
        self.assertEqual(2, len([c for c in self.nova.calls
                                 if c.status == 500]))

    def test_nova_hanging_notifications_on_time(self):
        vms = self.add_vms('compute-1', 5)
        self.start_agent()
        self.nova.hang('os-services')
        self.reporter.report('compute-1')
        # Every owner told while Nova holds the force-down call (it holds
        # it until the test lets go): notifying does not wait for fencing.
        self.wait_notified(len(vms))
        self.assertTrue(self.nova.wait_held(1, timeout=10))
        self.assertFalse(self.nova.service('compute-1')['forced_down'])
        self.nova.release()
        base.poll(lambda: self.nova.service('compute-1')['forced_down'], 30,
                  'compute-1 forced down once Nova answers')
