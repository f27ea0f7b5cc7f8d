"""Scenario 6: Aodh's database is unreachable for a while.

The agent reaches PostgreSQL through a TCP proxy of the test (aodh-api and
the test's own checks go straight to it): cutting the proxy makes the
database unreachable for the agent only, without touching the shared
server.
"""

import time

import sqlalchemy as sa

from tests.faults import base

DB_TIMEOUT = 2.0


class DatabaseTest(base.FaultTest):

    def setUp(self):
        super().setUp()
        url = sa.engine.make_url(self.stack.db.url)
        self.proxy = base.TcpProxy(url.host or '127.0.0.1', url.port or 5432)
        self.addCleanup(self.proxy.cut)
        self.stack.agent_options['doctor_evaluator'] = {
            'aodh_connection': url.set(
                host='127.0.0.1', port=self.proxy.port).render_as_string(
                    hide_password=False),
            'db_timeout': str(DB_TIMEOUT)}

    def prepare(self):
        self.host_vms = self.vms(10, hosts=['down-0'], nova=True)
        nova_vms = list(self.vms(200, hosts=['compute-%d' % i
                                             for i in range(10)]).items())
        self.repeating = self.alarm_rows(dict(nova_vms[:20]), repeat=True)
        self.once = self.alarm_rows(dict(nova_vms[20:]))
        self.once.update(self.alarm_rows(self.host_vms))
        self.vm_alarm = {vm: a for a, vm in list(self.once.items()) +
                         list(self.repeating.items())}
        return dict(nova_vms[:100]), dict(nova_vms[100:])

    def send(self, vms, tally):
        for vm, (project, host) in vms.items():
            self.bus.instance_update(vm, project, host)
            tally.sent += 1

    def stored_ok(self):
        stored = self.db_alarms()
        return all(stored[i] == ('alarm', 1) for i in self.once) and all(
            stored[i][0] == 'alarm' and stored[i][1] >= 1
            for i in self.repeating)


class TestDatabaseDown(DatabaseTest):

    def test_database_down_evaluation_goes_on_writes_land(self):
        first, second = self.prepare()
        agent = self.start_agent()
        tally = base.Tally('database-down', 'Aodh database unreachable '
                           '(connections cut, new ones refused)')
        tally.expected = set(self.once) | set(self.repeating)
        self.proxy.cut()
        sent = time.time()
        self.send(first, tally)
        self.reporter.report('down-0')
        tally.sent += 1
        during = {self.vm_alarm[vm] for vm in list(first) +
                  list(self.host_vms)}
        self.wait_alarms(during, 20, 'notifications while the database '
                         'is down')
        last = max(r.time for r in self.received())
        # Nothing written yet: the writes wait in the agent.
        stored = self.db_alarms()
        self.assertEqual(set(), {i for i in during if stored[i][0] ==
                                 'alarm' or stored[i][1]})
        restored = time.monotonic()
        self.proxy.restore()
        self.send(second, tally)
        self.wait_alarms(tally.expected, 60)
        base.poll(self.stored_ok, 60, 'the state and history writes')
        tally.recover = time.monotonic() - restored
        tally.recover_what = 'database back -> every state and history ' \
                             'row written'
        self.wait_drained()
        tally.extra = {'notified_while_down': len(during),
                       'last_while_down_ms': round((last - sent) * 1000, 1)}
        self.record(tally.count(self.received()))
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertEqual(0, tally.unexpected)
        self.assertIn('Aodh database unavailable', self.log_of(agent))


class TestDatabaseHangs(DatabaseTest):

    def test_database_hangs(self):
        first, second = self.prepare()
        agent = self.start_agent()
        tally = base.Tally('database-hang', 'Aodh database stops answering '
                           '(connections open, nothing forwarded)')
        tally.expected = set(self.once) | set(self.repeating)
        self.proxy.hang()
        sent = time.time()
        self.send(first, tally)
        self.reporter.report('down-0')
        tally.sent += 1
        during = {self.vm_alarm[vm] for vm in list(first) +
                  list(self.host_vms)}
        self.wait_alarms(during, 60, 'notifications while the database '
                         'hangs')
        last = max(r.time for r in self.received())
        restored = time.monotonic()
        self.proxy.restore()
        self.send(second, tally)
        self.wait_alarms(tally.expected, 60)
        base.poll(self.stored_ok, 60, 'the state and history writes')
        tally.recover = time.monotonic() - restored
        tally.recover_what = 'database back -> every state and history ' \
                             'row written'
        self.wait_drained()
        tally.extra = {'notified_while_hung': len(during),
                       'last_while_hung_ms': round((last - sent) * 1000, 1)}
        self.record(tally.count(self.received()))
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertIn('Aodh database unavailable', self.log_of(agent))
        # The events in flight wait for the database once (connect, then
        # pool: 2 x db_timeout), the later ones not at all.
        self.assertLess(last - sent, 3 * DB_TIMEOUT)
