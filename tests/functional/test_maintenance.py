"""NFVI maintenance across the real services.

The administrator disables a compute service through Nova's API (the Nova
double emits Nova's versioned service.update), owners hear about their
instances through their Aodh alarms, move or delete them through Nova's
API, and the administrator hears once the host is empty.
"""

import os
import subprocess
import sys
import time

from oslo_config import cfg
import oslo_messaging

from doctor_ext.inspector import maintenance_events as mevents
from doctor_ext.inspector import maintenance_state
from doctor_ext.monitor import report
from doctor_ext.monitor import signing
from doctor_ext_lab import consumer as consumer_mod
from tests.functional import base

HOST = 'compute-1'
REASON = 'firmware upgrade'


def traits_of(received):
    return {name: value for name, _, value in
            received.body['reason_data']['event']['traits']}


class MaintenanceTest(base.FunctionalTest):
    """Owners with Nova users of their own; an admin consumer."""

    maintenance_options = {}

    def setUp(self):
        super().setUp()
        # One Keystone user (and project) per owner, so that owners act on
        # their instances through Nova's API with their own token.
        self.owner_users = {p: self.nova.add_user('owner-' + p, 'pw-' + p, p)
                            for p in self.PROJECTS}
        self.project_ids = {p: u.project_id
                            for p, u in self.owner_users.items()}
        self.admin_project = self.nova.admin.project_id
        self.admin_consumer = self.useFixture(
            consumer_mod.ConsumerFixture()).consumer
        self.state_dir = os.path.join(self.stack.workdir, 'maintenance')
        options = {'state_dir': self.state_dir, 'timeline_log': 'True',
                   'check_interval': '0.2',
                   'admin_project_id': self.admin_project}
        options.update(self.maintenance_options)
        options = {k: v for k, v in options.items() if v is not None}
        self.stack.agent_options = dict(self.stack.agent_options)
        self.stack.agent_options.update({
            # Nova sends service.update on the versioned topic.
            'oslo_messaging_notifications': {
                'topics': 'notifications,versioned_notifications'},
            'doctor_maintenance': options,
        })
        for host in (HOST, 'compute-2', 'compute-3'):
            self.nova.add_host(host)
        self._conns = {}

    # -- Nova's API, as its users call it --------------------------------
    def sdk(self, user='admin'):
        if user not in self._conns:
            import openstack
            creds = self.nova.credentials(user)
            conn = openstack.connection.Connection(
                auth_type='password', region_name=self.nova.region,
                auth={k: v for k, v in creds.items() if k != 'auth_type'})
            self.addCleanup(conn.close)
            self._conns[user] = conn
        return self._conns[user]

    def compute_service(self, host=HOST):
        (svc,) = self.sdk().compute.services(host=host,
                                             binary='nova-compute')
        return svc

    # -- the cloud ---------------------------------------------------------
    def add_owned_vms(self, host, per_project):
        """{vm: project name}, round-robin over the owners' projects."""
        vms = {}
        for i in range(per_project * len(self.PROJECTS)):
            p = self.PROJECTS[i % len(self.PROJECTS)]
            vm = self.nova.add_server(host, self.project_ids[p],
                                      name='%s-%d' % (host, i))
            vms[vm] = p
        return vms

    def alarm(self, project_id, name, event_type, query, action,
              repeat=True):
        return self.stack.aodh('POST', '/v2/alarms', project_id, {
            'name': name, 'type': 'event', 'severity': 'moderate',
            'repeat_actions': repeat, 'alarm_actions': [action],
            'event_rule': {'event_type': event_type, 'query': [
                {'field': 'traits.%s' % k, 'op': 'eq', 'type': 'string',
                 'value': v} for k, v in query.items()]}})

    def admin_alarms(self, host=HOST):
        self.alarm(self.admin_project, 'host-empty',
                   mevents.HOST_EMPTY_EVENT, {'host': host},
                   self.admin_consumer.url('/empty'))
        self.alarm(self.admin_project, 'host-back',
                   mevents.HOST_COMPLETE_EVENT, {'host': host},
                   self.admin_consumer.url('/complete'))

    def start_agent(self):
        agent = super().start_agent()
        base.poll(lambda: (self.broker.consumers(
            'versioned_notifications.info') or 0) >= 1, 30,
            'the agent to consume versioned_notifications.info')
        return agent

    # -- observing -----------------------------------------------------------
    def maintenance_notices(self, project, state=None):
        got = [r for r in self.consumers[project].received
               if r.path == '/maintenance']
        if state is not None:
            got = [r for r in got if traits_of(r)['state'] == state]
        return got

    def state(self, host=HOST):
        states = maintenance_state.read_states(self.state_dir, [host])
        return states[0] if states else None

    def remaining(self, host=HOST):
        state = self.state(host)
        return None if state is None else len(state['remaining'])


class TestMaintenanceByServiceDisable(MaintenanceTest):

    def test_owners_warned_host_emptied_admin_told(self):
        vms = self.add_owned_vms(HOST, 3)            # 9 VMs of 3 projects
        bystanders = self.add_owned_vms('compute-2', 1)
        a, b, c = self.PROJECTS
        # project-a: one alarm per VM, as Doctor's; b and c: one alarm for
        # every VM of the project.
        for vm, p in vms.items():
            if p == a:
                self.alarm(self.project_ids[a], 'maint-%s' % vm,
                           mevents.OWNER_EVENT,
                           {'instance_id': vm, 'state': 'maintenance'},
                           self.consumers[a].url('/maintenance'),
                           repeat=False)
        for p in (b, c):
            self.alarm(self.project_ids[p], 'maint-all',
                       mevents.OWNER_EVENT, {'state': 'maintenance'},
                       self.consumers[p].url('/maintenance'))
        self.admin_alarms()
        self.start_agent()

        # The administrator disables the compute service, with a reason.
        svc = self.compute_service()
        self.sdk().compute.disable_service(svc, disabled_reason=REASON)
        self.assertEqual('disabled', self.nova.service(HOST)['status'])
        update = [n for n in self.nova.notifications
                  if n['event_type'] == 'service.update']
        self.assertEqual(1, len(update))
        data = update[0]['payload']['nova_object.data']
        self.assertEqual('versioned_notifications', update[0]['topic'])
        self.assertEqual((HOST, True, REASON, False), (
            data['host'], data['disabled'], data['disabled_reason'],
            data['forced_down']))

        # Each owner hears about exactly its instances, at once.
        base.poll(lambda: sum(len(self.maintenance_notices(p))
                              for p in self.PROJECTS) >= len(vms), 10,
                  'the owners to be warned')
        for p in self.PROJECTS:
            got = self.maintenance_notices(p)
            mine = sorted(vm for vm, owner in vms.items() if owner == p)
            self.assertEqual(mine, sorted(base.instance_of(r) for r in got),
                             p)
            for r in got:
                t = traits_of(r)
                self.assertEqual((HOST, REASON, 'maintenance',
                                  self.project_ids[p]),
                                 (t['host'], t['reason'], t['state'],
                                  t['tenant_id']))
                self.assertIn('window_start', t)
        notified = {base.instance_of(r) for r in self.received()}
        self.assertFalse(notified & set(bystanders))
        self.assertEqual(0, self.admin_consumer.count())
        self.wait_for_log('doctor-timeline maintenance=entered host=%s'
                          % HOST)

        # The owners act on what they were told, through Nova's API:
        # project-a deletes its VMs with its own token; b's VNF manager
        # asks for live migrations, c's for cold ones (admin-only calls in
        # Nova's default policy).
        told = {p: [base.instance_of(r) for r in self.maintenance_notices(p)]
                for p in self.PROJECTS}
        moves = ([(self.sdk('owner-' + a).compute.delete_server, vm)
                  for vm in told[a]] +
                 [(self.sdk().compute.live_migrate_server, vm)
                  for vm in told[b]] +
                 [(self.sdk().compute.migrate_server, vm)
                  for vm in told[c]])
        for call, vm in moves[:-1]:
            call(vm)
        base.poll(lambda: self.remaining() == 1, 10,
                  'the agent to see all but one VM leave (remaining %s)'
                  % self.remaining())
        # One VM left: the administrator has not been told.
        self.assertEqual(0, self.admin_consumer.count())
        status = subprocess.run(
            [sys.executable, '-m', 'doctor_ext.inspector.maintenance',
             '--state-dir', self.state_dir, HOST],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(0, status.returncode, status.stderr)
        self.assertIn('remaining: 1 instance(s) of 1 project(s)',
                      status.stdout)
        self.assertIn('project %s: %s' % (self.project_ids[c],
                                          moves[-1][1]), status.stdout)

        call, vm = moves[-1]
        call(vm)
        self.assertTrue(self.admin_consumer.wait_for(1, 10, path='/empty'))
        (empty,) = self.admin_consumer.received
        self.assertEqual('host-empty', empty.body['alarm_name'])
        t = traits_of(empty)
        self.assertEqual((HOST, 'empty', self.admin_project, 9, 3), (
            t['host'], t['state'], t['tenant_id'], t['instances'],
            t['projects']))
        self.assertEqual([], self.nova.servers_on(HOST))
        base.poll(lambda: (self.state() or {}).get('state') == 'empty', 10,
                  'the state file to say empty')
        # Nova's notifications of these moves were compute.instance.*.
        kinds = {n['event_type'] for n in self.nova.notifications
                 if n['payload'].get('instance_id') in vms}
        self.assertEqual({'compute.instance.delete.start',
                          'compute.instance.delete.end',
                          'compute.instance.update'}, kinds)

        # The administrator enables the service again: maintenance over.
        self.sdk().compute.enable_service(svc)
        self.assertTrue(self.admin_consumer.wait_for(1, 10,
                                                     path='/complete'))
        back = [r for r in self.admin_consumer.received
                if r.path == '/complete']
        self.assertEqual(0, traits_of(back[0])['remaining'])
        base.poll(lambda: self.state() is None, 10,
                  'the state file to be removed')
        self.wait_for_log('maintenance ended (nova-compute service enabled)')
        # Nobody was told twice: 9 warnings, 1 empty, 1 complete.
        self.assertEqual(len(vms), sum(len(self.maintenance_notices(p))
                                       for p in self.PROJECTS))
        self.assertEqual(2, self.admin_consumer.count())
        # And no fault handling: nothing forced down, nothing reset.
        self.assertFalse(self.nova.service(HOST)['forced_down'])
        self.assertEqual([], [c for c in self.nova.calls_to('/action$')
                              if 'os-resetState' in (c.body or '')])


class TestMaintenanceDeadline(MaintenanceTest):
    maintenance_options = {'migrate_after': '2'}

    def test_what_is_left_is_live_migrated_after_the_deadline(self):
        vms = self.add_owned_vms(HOST, 2)            # 6 VMs
        for p in self.PROJECTS:
            self.alarm(self.project_ids[p], 'maint-all',
                       mevents.OWNER_EVENT, {'state': 'maintenance'},
                       self.consumers[p].url('/maintenance'))
        self.admin_alarms()
        self.start_agent()

        svc = self.compute_service()
        disabled = time.time()
        self.sdk().compute.disable_service(svc, disabled_reason=REASON)
        self.wait_notified(len(vms))
        got = [r for p in self.PROJECTS for r in self.maintenance_notices(p)]
        self.assertTrue(all('migrate_at' in traits_of(r) for r in got))
        # Only project-a acts: it deletes its VMs.
        a = self.PROJECTS[0]
        for r in self.maintenance_notices(a):
            self.sdk('owner-' + a).compute.delete_server(base.instance_of(r))
        left = sorted(vm for vm, p in vms.items() if p != a)
        self.assertTrue(self.admin_consumer.wait_for(1, 15, path='/empty'))

        # doctor-ext asked Nova to live-migrate the rest, after 2 s.
        migrations = [c for c in self.nova.calls_to('/action$', 'POST')
                      if 'os-migrateLive' in (c.body or '')]
        self.assertEqual(left, sorted(c.path.split('/')[-2]
                                      for c in migrations))
        self.assertTrue(all(c.status == 202 and c.user == 'admin'
                            for c in migrations))
        self.assertGreaterEqual(min(c.time for c in migrations),
                                disabled + 2.0)
        (empty,) = self.admin_consumer.received
        self.assertGreater(empty.time, max(c.time for c in migrations))
        log = self.wait_for_log('doctor-timeline maintenance=migrate')
        self.assertIn('maintenance deadline passed; asking Nova to '
                      'live-migrate the %d instance(s)' % len(left), log)
        self.assertEqual([], self.nova.servers_on(HOST))


class TestMaintenanceNotification(MaintenanceTest):
    # The administrator's project comes from the maintenance.host payload.
    maintenance_options = {'admin_project_id': None}

    def send(self, event_type, payload):
        conf = cfg.ConfigOpts()
        conf([], project='doctor-maintenance')
        transport = report.get_transport(conf, url=self.broker.url,
                                         exchange='doctor')
        self.addCleanup(transport.cleanup)
        notifier = oslo_messaging.Notifier(
            transport, driver='messagingv2', topics=['notifications'],
            publisher_id='maintenance-tool')
        # Signed as the monitor signs, with the agents' secret.
        notifier.info({}, event_type, signing.sign(
            self.stack.report_secret, event_type, payload))

    def test_maintenance_host_then_end(self):
        vms = self.add_owned_vms(HOST, 1)
        for p in self.PROJECTS:
            # No state in the query: warned, and told when it is over.
            self.alarm(self.project_ids[p], 'maint-all',
                       mevents.OWNER_EVENT, {},
                       self.consumers[p].url('/maintenance'))
        self.admin_alarms()
        self.start_agent()

        window = {'start': '2030-01-01T10:00:00Z',
                  'end': '2030-01-01T12:00:00Z'}
        self.send('maintenance.host', {
            'host': HOST, 'session_id': 'session-1', 'reason': 'BIOS',
            'state': 'IN_MAINTENANCE', 'window': window,
            'project_id': self.admin_project})
        self.wait_notified(len(vms))
        for p in self.PROJECTS:
            (r,) = self.maintenance_notices(p)
            t = traits_of(r)
            self.assertEqual(('session-1', 'BIOS', 'maintenance'),
                             (t['session_id'], t['reason'], t['state']))
            self.assertEqual('2030-01-01T12:00:00', t['window_end'])
        # Nobody moves; the administrator ends the maintenance.
        self.send('maintenance.host.end', {
            'host': HOST, 'session_id': 'session-1',
            'project_id': self.admin_project})
        self.assertTrue(self.admin_consumer.wait_for(1, 10,
                                                     path='/complete'))
        (done,) = self.admin_consumer.received
        t = traits_of(done)
        self.assertEqual((self.admin_project, 3, 'session-1'),
                         (t['tenant_id'], t['remaining'], t['session_id']))
        self.wait_notified(2 * len(vms))
        for p in self.PROJECTS:
            states = [traits_of(r)['state']
                      for r in self.maintenance_notices(p)]
            self.assertEqual(['maintenance', 'maintenance_complete'], states)
        base.poll(lambda: self.state() is None, 10,
                  'the state file to be removed')
        self.assertEqual([], maintenance_state.read_states(self.state_dir))
        self.wait_for_log('maintenance ended (maintenance.host.end)')
