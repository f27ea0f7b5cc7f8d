"""Active/active and crash-safe: several agents, workers, and SIGKILLs.

Scenarios of the HA design (doc/source/reliability.rst, "HA"): every
agent process shares the instance map, the fault journal and the outbox
in Aodh's database, so

* two agents of two workers each notify every owner of a host whose
  instances were announced by Nova's notifications after they started,
  whichever process the broker gave each notification to, with Nova
  unreachable and with Nova up;
* an agent SIGKILLed while it handles a 300-VM host failure (consumers
  that take 2 s to answer) leaves nothing behind: the restarted agent
  takes over the fault and the owed notifications once their leases run
  out, and finishes the fencing Nova had not confirmed.

Each scenario counts owners expected, notified, duplicated and missed,
alarms left in ``alarm`` with their notification neither delivered nor
given up ("stuck"), and fences done.
"""

import sqlalchemy as sa

from doctor_ext.db import models
from tests.faults import base

LEASE = 3.0
HA_OPTIONS = {'doctor_state': {'lease_time': str(LEASE),
                               'sweep_interval': '0.5'}}


class HATest(base.FaultTest):
    PROJECTS = ('project-a', 'project-b', 'project-c', 'project-d',
                'project-e')
    agent_options = HA_OPTIONS

    def db(self):
        engine = sa.create_engine(self.stack.db.url)
        self.addCleanup(engine.dispose)
        return engine

    def stuck(self, alarm_ids):
        """Alarms in ``alarm`` whose notification is not done with."""
        from aodh.storage.sqlalchemy import models as aodh_models
        alarm = aodh_models.Alarm.__table__
        outbox = models.outbox
        with self.db().connect() as conn:
            fired = {r[0] for r in conn.execute(sa.select(
                alarm.c.alarm_id).where(alarm.c.state == 'alarm'))}
            done = {}
            for alarm_id, state in conn.execute(sa.select(
                    outbox.c.alarm_id, outbox.c.state)):
                done.setdefault(alarm_id, set()).add(state)
        return sorted(a for a in fired & set(alarm_ids)
                      if not done.get(a) or 'pending' in done[a])

    def wait_not_stuck(self, alarm_ids, timeout=60):
        base.poll(lambda: not self.stuck(alarm_ids), timeout,
                  'every owed notification delivered or given up')

    def fault_of(self, host):
        with self.db().connect() as conn:
            row = conn.execute(sa.select(models.faults).where(
                models.faults.c.host == host)).one()
            resets = [r.reset for r in conn.execute(sa.select(
                models.fault_instances).where(
                    models.fault_instances.c.fault_id == row.fault_id))]
        return row, resets


class TestTwoAgentsTwoWorkers(HATest):
    """50 VMs of 5 projects per host, announced after both agents start."""

    agent_options = dict(HA_OPTIONS, notification={'workers': '2'})

    def test_every_owner_notified_nova_down_then_up(self):
        hosts = {}
        for nova_up in (False, True):
            for rep in range(5):
                host = 'ha-%s-%d' % ('up' if nova_up else 'down', rep)
                vms = self.vms(50, hosts=[host])
                hosts[host] = (nova_up, vms, self.alarm_rows(vms))
        agents = [self.start_agent(), self.start_agent()]
        processes = [len(base.process_group(a.pid)) for a in agents]
        # Created after the agents started: their initial listing of Nova
        # knew none of them.
        for host, (nova_up, vms, _) in hosts.items():
            if nova_up:
                for vm, (project, _) in vms.items():
                    self.nova.add_server(host, project, server_id=vm)
        tally = base.Tally('ha-2x2', '2 agents x 2 workers, 50 VMs of 5 '
                           'projects announced after start, host down; '
                           'Nova unreachable (5 hosts), then up (5 hosts)')
        expected = set()
        for host, (nova_up, vms, alarms) in hosts.items():
            if nova_up:
                self.nova.clear_faults()
            else:
                self.nova.fail(503)
            for vm, (project, vm_host) in vms.items():
                self.bus.instance_update(vm, project, vm_host,
                                         state='active', old_state='building')
            # Every announcement handled (and acknowledged) by some
            # process: the map is whole in every process now.
            self.wait_drained(60)
            self.reporter.report(host)
            tally.sent += 1
            expected |= set(alarms)
            self.wait_alarms(alarms, 30, 'the owners of %s' % host)
        self.nova.clear_faults()
        self.wait_drained(60)
        tally.expected = expected
        tally.count(self.received())
        self.wait_not_stuck(expected)
        fenced = []
        for host, (nova_up, vms, _) in hosts.items():
            if nova_up:
                base.poll(lambda: self.fault_of(host)[0].fence == 'done',
                          60, 'the fence of %s' % host)
                fenced.append(host)
                self.assertTrue(self.nova.service(host)['forced_down'])
                self.assertEqual({'ERROR'}, {self.nova.server(vm)['status']
                                             for vm in vms})
            else:
                # Nova refused every call: recorded as failed, not lost.
                base.poll(lambda: self.fault_of(host)[0].fence == 'failed',
                          60, 'the failed fence of %s' % host)
        tally.extra = {'hosts': len(hosts), 'fences_done': len(fenced),
                       'processes_per_agent': processes,
                       'stuck': len(self.stuck(expected))}
        self.record(tally)
        self.assertEqual(500, len(expected))
        self.assertEqual((500, 0, 0, 0), (tally.delivered, tally.lost,
                                          tally.duplicated, tally.unexpected))


class TestAgentKilledMidFault(HATest):
    """SIGKILL the agent handling a 300-VM host failure, restart it."""

    VMS = 300

    def kill_and_finish(self, point):
        vms = self.vms(self.VMS, hosts=['big'], nova=True)
        alarms = self.alarm_rows(vms)
        agent = self.start_agent()
        tally = base.Tally('ha-sigkill-%s' % point, 'agent SIGKILLed %s of '
                           'a 300-VM host failure (consumers take 2 s), '
                           'restarted' % point.replace('-', ' '))
        tally.expected = set(alarms)
        for consumer in self.consumers.values():
            consumer.slow(2.0)
        if point == 'mid-fencing':
            self.nova.hang('/action$', 'POST')
        self.reporter.report('big')
        tally.sent = 1
        if point == 'after-claims':
            base.poll(lambda: len(self.outbox_rows()) == self.VMS, 30,
                      'every claim and its outbox row committed')
        elif point == 'mid-delivery':
            self.wait_notified(100, timeout=60)
        elif point == 'mid-fencing':
            base.poll(lambda: self.nova.held, 60, 'a reset held by Nova')
        before = len(self.received())
        new, ready = self.restart_agent(agent)
        for consumer in self.consumers.values():
            consumer.slow(0)
        self.nova.clear_faults()
        self.wait_alarms(alarms, 120, 'every owner')
        self.wait_not_stuck(alarms)
        base.poll(lambda: self.fault_of('big')[0].fence == 'done', 60,
                  'the fence finished')
        row, resets = self.fault_of('big')
        self.assertEqual(('notified', 'done'), (row.state, row.forced_down))
        self.assertEqual({'done'}, set(resets))
        self.assertEqual({'ERROR'}, {self.nova.server(vm)['status']
                                     for vm in vms})
        self.wait_drained(60)
        tally.count(self.received())
        tally.recover = ready
        tally.recover_what = 'SIGKILL -> restarted agent consuming'
        tally.extra = {'notified_before_kill': before,
                       'force_downs': len(self.nova.calls_to(
                           'force-down|os-services/[0-9a-f-]+$', 'PUT')),
                       'stuck': len(self.stuck(alarms))}
        self.record(tally)
        self.assertEqual((0, 0), (tally.lost, tally.unexpected))
        # Sent twice at most: what the dead agent had in flight (its lanes
        # hold at most max_connections_per_consumer = 16 POSTs for each of
        # the 5 consumers) or had delivered without recording it yet.
        self.assertLessEqual(tally.duplicated, 5 * 16 * 2)
        return tally

    def outbox_rows(self):
        with self.db().connect() as conn:
            return conn.execute(sa.select(models.outbox.c.id)).all()

    def test_sigkill_right_after_the_report(self):
        self.kill_and_finish('after-the-report')

    def test_sigkill_after_the_claims(self):
        self.kill_and_finish('after-claims')

    def test_sigkill_mid_delivery(self):
        self.kill_and_finish('mid-delivery')

    def test_sigkill_mid_fencing(self):
        tally = self.kill_and_finish('mid-fencing')
        # Nova had confirmed the force-down: it is not repeated.
        self.assertEqual(1, tally.extra['force_downs'])


class TestThreeAgentsChaos(HATest):
    """3 agents killed and cut off while they handle faults.

    SIGKILLs and broker connection kills during 10 host failures of 100
    VMs and a burst of 5,000 instance faults. The kills come at points
    drawn from a seeded random generator (the seed is in the tally).
    Nothing may be missed. Duplicates are bounded: each
    kill can make an agent send again at most what it had in flight, its
    executor's ``[DEFAULT] max_parallel_requests`` (64) notifications plus
    its lanes (16 POSTs for each of the 5 consumers), counted twice (sent,
    and taken over before its outcome was written).
    """

    HOSTS = 10
    PER_HOST = 100
    BURST = 5000
    SEED = 20261130

    def test_nothing_missed(self):
        import random
        rnd = random.Random(self.SEED)
        hosts = ['rack-%d' % i for i in range(self.HOSTS)]
        host_vms = self.vms(self.HOSTS * self.PER_HOST, hosts=hosts,
                            nova=True)
        burst_vms = self.vms(self.BURST, hosts=['compute-%d' % i
                                                for i in range(20)])
        alarms = self.alarm_rows(host_vms)
        alarms.update(self.alarm_rows(burst_vms))
        agents = [self.start_agent() for _ in range(3)]
        tally = base.Tally('ha-3-agents-chaos', '3 agents, SIGKILLs and '
                           'broker connection kills during 10 host failures '
                           'of 100 VMs and a 5,000-fault burst')
        tally.expected = set(alarms)
        # Faults to send, interleaved; kills at random points of the send.
        items = [('vm',) + (vm,) + v for vm, v in burst_vms.items()]
        step = len(items) // (self.HOSTS + 1)
        for i, host in enumerate(hosts):
            items.insert((i + 1) * step + i, ('host', host))
        kills = sorted(rnd.sample(range(len(items) // 10, len(items)), 3))
        actions = dict(zip(kills, ('sigkill', 'connections', 'sigkill')))
        done = []
        for n, item in enumerate(items):
            if n in actions:
                victim = rnd.randrange(len(agents))
                if actions[n] == 'sigkill':
                    agents[victim], _ = self.restart_agent(agents[victim])
                else:
                    self.kill_agent_connections(agents[victim])
                done.append((n, actions[n], victim))
            if item[0] == 'vm':
                _, vm, project, host = item
                self.bus.instance_update(vm, project, host)
            else:
                self.reporter.report(item[1])
            tally.sent += 1
        self.wait_alarms(alarms, 240, 'every owner')
        self.wait_not_stuck(alarms, 120)
        self.wait_drained(120)
        tally.count(self.received())
        kills = sum(1 for _, what, _ in done if what == 'sigkill')
        bound = 2 * (64 + 5 * 16) * len(done)
        tally.extra = {'seed': self.SEED, 'injected': done,
                       'duplicate_bound': bound,
                       'stuck': len(self.stuck(alarms))}
        self.record(tally)
        self.assertEqual(2, kills)
        self.assertEqual((0, 0), (tally.lost, tally.unexpected))
        self.assertLessEqual(tally.duplicated, bound)
