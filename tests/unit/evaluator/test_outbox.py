"""The outbox: owed notifications outlive the agent that claimed them.

Two engines on one real Aodh schema (PostgreSQL and MariaDB) play two
agent processes; the first one "dies" with its notifications queued (its
notifier never finishes them).
"""

import concurrent.futures
import json

from oslotest import base
import sqlalchemy as sa
import testscenarios

from doctor_ext.db import models
from doctor_ext.evaluator import events
from doctor_ext.evaluator import outbox as outbox_mod
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios


def vm_event(vm, project='p1'):
    return events.make_event('compute.instance.update', {
        'instance_id': vm, 'tenant_id': project, 'state': 'error'})


def doctor_query(vm):
    return [{'field': 'traits.state', 'op': 'eq', 'value': 'error'},
            {'field': 'traits.instance_id', 'op': 'eq', 'value': vm}]


class StuckNotifier:
    """An agent killed with its POSTs queued: nothing ever ends."""

    def __init__(self):
        self.sent = []

    def submit(self, notification):
        self.sent.append(notification)
        return concurrent.futures.Future()


class FailingNotifier(doctor_fixtures.RecordingNotifier):
    """Every delivery given up after the notifier's retries."""

    def submit(self, notification):
        super().submit(notification)
        future = concurrent.futures.Future()
        future.set_result(type('Delivery', (), {
            'ok': False, 'error': 'HTTP 500 after 4 attempts'})())
        return future


class TestOutbox(base.BaseTestCase):
    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(
            self.backend))
        self.conf = doctor_fixtures.store_conf(self.db.url)
        self.conf.register_opts([], 'doctor_state')

    def agent(self, lease=15.0, notifier=None):
        from doctor_ext.db import leases
        leases.register_opts(self.conf)
        self.conf.set_override('lease_time', lease, 'doctor_state')
        engine = doctor_fixtures.engine(self, self.conf, loaded=True)
        if notifier is not None:
            engine.notifier = notifier
        engine.owner = engine.outbox.owner = 'agent-%d' % id(engine)
        return engine

    def rows(self):
        with self.db.engine.connect() as conn:
            return {r.alarm_id: r for r in conn.execute(
                sa.select(models.outbox))}

    def test_dead_agents_notifications_delivered_by_another(self):
        alarms = {self.db.add_alarm(query=doctor_query('vm-%d' % i),
                                    actions=['http://vnfm-%d/x' % i]): i
                  for i in range(3)}
        stuck = StuckNotifier()
        dead = self.agent(lease=0.5, notifier=stuck)
        firings = dead.evaluate([vm_event('vm-%d' % i) for i in range(3)])
        self.assertEqual(3, len(firings))
        self.assertEqual(3, len(stuck.sent))
        # The alarms are in alarm, each with its notification owed.
        self.assertEqual({'pending'}, {r.state for r in self.rows().values()})
        self.assertEqual(set(alarms), set(self.rows()))
        live = self.agent()
        # While the dead agent's lease runs, nobody takes its work.
        self.assertEqual(0, live.outbox.take_expired())
        taken = doctor_fixtures.poll(live.outbox.take_expired, 10,
                                     'the lease to run out')
        self.assertEqual(3, taken)
        sent = live.notifier.sent
        self.assertEqual(set(alarms), {n.alarm_id for n in sent})
        # The body is what the claiming agent would have posted.
        mine = {n.alarm_id: n for n in stuck.sent}
        for n in sent:
            self.assertEqual(mine[n.alarm_id].payload(), n.payload())
            self.assertEqual(mine[n.alarm_id].action, n.action)
        live.recorder.wait_idle(10)
        doctor_fixtures.poll(lambda: {r.state for r in self.rows().values()}
                             == {'delivered'}, 10, 'outcomes recorded')
        # Delivered once: nothing left to take.
        self.assertEqual(0, self.agent().outbox.take_expired())

    def test_live_agent_keeps_its_work(self):
        self.db.add_alarm(query=doctor_query('vm-1'))
        busy = self.agent(lease=0.5, notifier=StuckNotifier())
        busy.evaluate([vm_event('vm-1')])
        other = self.agent()
        # The busy agent renews its lease at every sweep.
        for _ in range(3):
            self.assertEqual(1, busy.outbox.renew())
            self.assertEqual(0, other.outbox.take_expired())

    def test_given_up_is_an_outcome(self):
        alarm = self.db.add_alarm(query=doctor_query('vm-1'))
        engine = self.agent(notifier=FailingNotifier())
        engine.evaluate([vm_event('vm-1')])
        engine.recorder.wait_idle(10)
        row = doctor_fixtures.poll(
            lambda: self.rows()[alarm].state != 'pending' and
            self.rows()[alarm], 10, 'the outcome')
        self.assertEqual(('given_up', 'HTTP 500 after 4 attempts', None),
                         (row.state, row.error, row.lease_owner))

    def test_redelivered_event_owes_nothing_new(self):
        alarm = self.db.add_alarm(query=doctor_query('vm-1'))
        event = vm_event('vm-1')
        self.assertEqual(1, len(self.agent().evaluate([event])))
        self.assertEqual([], self.agent().evaluate([event]))
        self.assertEqual([alarm], list(self.rows()))
        body = json.loads(self.rows()[alarm].payload)
        self.assertEqual(('alarm', alarm), (body['current'],
                                            body['alarm_id']))

    def test_unreadable_row_given_up_alone(self):
        self.db.add_alarm(query=doctor_query('vm-1'))
        good = self.db.add_alarm(query=doctor_query('vm-2'))
        self.agent(lease=0.5, notifier=StuckNotifier()).evaluate(
            [vm_event('vm-1'), vm_event('vm-2')])
        with self.db.engine.begin() as conn:
            conn.execute(models.outbox.update().where(
                models.outbox.c.alarm_id != good).values(payload='{not json'))
        live = self.agent()
        doctor_fixtures.poll(live.outbox.take_expired, 10, 'the takeover')
        self.assertEqual([good], [n.alarm_id for n in live.notifier.sent])
        live.recorder.wait_idle(10)
        doctor_fixtures.poll(
            lambda: sorted(r.state for r in self.rows().values()) ==
            ['delivered', 'given_up'], 10, 'both outcomes')
        bad, = [r for r in self.rows().values()
                if r.state == outbox_mod.GIVEN_UP]
        self.assertIn('unreadable row', bad.error)
