"""Doctor fault management and maintenance on real Nova and Keystone.

The suite's cloud (tests/realnova: Keystone, Placement, nova-api,
conductor, scheduler and three nova-compute with the fake virt driver)
replaces the Nova double: servers of three projects built through Nova's
API, the agent's resource map loaded from Nova's API and kept by Nova's own
notifications, and the fencing checked in Nova's API afterwards.
"""

import collections

from doctor_ext.inspector import maintenance_events
from tests.functional import base
from tests.realnova import testcase

REASON = 'firmware upgrade'


class TestHostFailureOnRealNova(testcase.RealNovaTest):
    HOST = 'compute-1'
    BYSTANDER = 'compute-2'

    def test_owners_notified_host_forced_down_servers_in_error(self):
        failing = self.servers_on(self.HOST)
        healthy = self.servers_on(self.BYSTANDER)
        self.give_back(self.HOST, self.BYSTANDER)
        alarms = self.doctor_alarms(failing)
        self.doctor_alarms(healthy, path='/healthy')
        self.start_agent()
        # A server built after the agent loaded its map: only Nova's own
        # notifications tell the agent it is on the failing host. Its
        # owner also watches its updates: once told it is active, the
        # agent has taken every update of its build.
        seen = self.cloud.project_ids['project-b']
        (late, _), = self.cloud.create_servers(
            [(self.HOST, 'project-b', 'late-%s' % self.id()[-8:])]).items()
        self.addCleanup(self.cloud.nova, 'DELETE', '/servers/%s' % late)
        self.stack.aodh('POST', '/v2/alarms', seen, {
            'name': 'seen', 'type': 'event', 'severity': 'low',
            'repeat_actions': True,
            'alarm_actions': [self.consumers['project-b'].url('/seen')],
            'event_rule': {'event_type': 'compute.instance.update',
                           'query': [{'field': 'traits.instance_id',
                                      'op': 'eq', 'type': 'string',
                                      'value': late}]}})
        self.cloud.reset_state(late, 'active')
        base.poll(lambda: [r for r in self.consumers['project-b'].received
                           if r.path == '/seen'], 15,
                  'the agent to take the late server\'s update')
        failing[late] = 'project-b'
        alarms.update(self.doctor_alarms({late: 'project-b'}))

        def failures(consumers=self.consumers.values()):
            return [r for c in consumers for r in c.received
                    if r.path == '/failure']

        self.reporter.report(self.HOST)
        base.poll(lambda: len(failures()) >= len(failing), 15,
                  '%d owners\' notifications' % len(failing))

        # Every owner heard of exactly its servers, once, on time.
        for project, consumer in self.consumers.items():
            got = sorted(base.instance_of(r) for r in failures([consumer]))
            mine = sorted(vm for vm, p in failing.items() if p == project)
            self.assertEqual(mine, got, project)
        self.assertEqual(set(alarms.values()),
                         {r.body['alarm_id'] for r in failures()})

        # Nova says so: the compute service forced down, the servers in
        # error; nothing changed on the other host.
        svc = self.wait_forced_down(self.HOST)
        self.assertEqual('down', svc['state'])
        self.wait_status(failing, 'ERROR')
        self.assertFalse(self.cloud.service(self.BYSTANDER)['forced_down'])
        self.assertTrue(all(self.cloud.server(vm)['status'] == 'ACTIVE'
                            for vm in healthy))

        # Nova's own compute.instance.update for each reset reaches the
        # agent after the resets; once a control server's owner hears of a
        # later update, those were all taken, and nobody heard twice.
        control, owner = next(iter(healthy.items()))
        self.cloud.reset_state(control, 'error')
        heard = base.poll(lambda: [r for r in self.consumers[owner].received
                                   if r.path == '/healthy'], 15,
                          'the control server\'s owner to hear')
        self.assertEqual([control], [base.instance_of(r) for r in heard])
        told = collections.Counter(base.instance_of(r) for r in failures())
        twice = [vm for vm, n in told.items() if n > 1]
        self.assertEqual([], twice, '\n'.join(
            line for line in self.agent_log().splitlines()
            if any(vm in line for vm in twice))[-6000:])
        self.assertEqual(sorted(failing), sorted(told))
        self.wait_for_log('Host %s fenced: forced down=True' % self.HOST)


class TestMaintenanceOnRealNova(testcase.RealNovaTest):
    HOST = 'compute-3'

    def setUp(self):
        super().setUp()
        self.state_dir = self.stack.workdir + '/maintenance'
        self.stack.agent_options = dict(self.stack.agent_options)
        self.stack.agent_options['doctor_maintenance'] = {
            'state_dir': self.state_dir, 'check_interval': '0.2',
            'timeline_log': 'True',
            'admin_project_id': self.cloud.project_ids['admin']}

    def maintenance_notices(self):
        return [r for r in self.received() if r.path == '/maintenance']

    def test_disable_move_or_delete_enable(self):
        vms = self.servers_on(self.HOST)
        self.give_back(self.HOST)
        pid = self.cloud.project_ids
        for p in self.PROJECTS:
            self.stack.aodh('POST', '/v2/alarms', pid[p], {
                'name': 'maint', 'type': 'event', 'severity': 'moderate',
                'repeat_actions': True,
                'alarm_actions': [self.consumers[p].url('/maintenance')],
                'event_rule': {'event_type': maintenance_events.OWNER_EVENT,
                               'query': [{'field': 'traits.state',
                                          'op': 'eq', 'type': 'string',
                                          'value': 'maintenance'}]}})
        self.start_agent()

        # The administrator disables the compute service with a reason.
        self.cloud.set_service(self.HOST, status='disabled',
                               disabled_reason=REASON)
        base.poll(lambda: len(self.maintenance_notices()) >= len(vms), 15,
                  'the owners to be warned')
        told = sorted(base.instance_of(r) for r in self.maintenance_notices())
        self.assertEqual(sorted(vms), told)
        self.wait_for_log('doctor-timeline maintenance=entered host=%s'
                          % self.HOST)

        # The owners act through Nova: live-migrate all but one, which its
        # owner deletes (and the suite builds again).
        moving = sorted(vms)
        for vm in moving[:-1]:
            self.cloud.nova('POST', '/servers/%s/action' % vm,
                            {'os-migrateLive': {'host': None,
                                                'block_migration': 'auto'}})
        gone = moving[-1]
        self.cloud.nova('DELETE', '/servers/%s' % gone)
        base.poll(lambda: self.cloud.servers(self.HOST) == [], 120,
                  'Nova to move the servers off %s' % self.HOST)
        self.wait_for_log('doctor-timeline maintenance=empty host=%s'
                          % self.HOST, timeout=30)

        # Enabled again: maintenance over, nobody fenced.
        self.cloud.set_service(self.HOST, status='enabled')
        self.wait_for_log('maintenance ended (nova-compute service enabled)',
                          timeout=30)
        self.assertEqual(len(vms), len(self.maintenance_notices()))
        self.assertFalse(self.cloud.service(self.HOST)['forced_down'])
        self.assertEqual([], [r for r in self.received()
                              if r.path == '/failure'])
