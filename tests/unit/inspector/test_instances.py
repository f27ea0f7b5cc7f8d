"""The shared instance map, on PostgreSQL and MariaDB."""

import datetime

from oslotest import base
import testscenarios

from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import instances
from doctor_ext.inspector import resource_map
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios
T0 = datetime.datetime(2026, 11, 30, 9, 0, 0)


def update(vm, host, at, event_type='compute.instance.update',
           project='p1', state='active'):
    return events.make_event(event_type, {
        'instance_id': vm, 'tenant_id': project, 'user_id': 'u1',
        'host': host, 'state': state}, generated=at.isoformat())


def a_row(vm, host, at):
    return {'instance_id': vm, 'project_id': 'p1', 'user_id': 'u1',
            'host': host, 'state': 'active', 'present': True, 'as_of': at}


class TestSharedMap(base.BaseTestCase):
    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(self.backend))
        self.stores = []

    def agent(self):
        """The map as one more agent process sees it."""
        store = store_mod.AodhStore(doctor_fixtures.store_conf(self.db.url))
        self.addCleanup(store.dispose)
        return instances.SharedResourceMap(store)

    def ids(self, rmap, host):
        return sorted(i.instance_id for i in rmap.on_host(host))

    def test_what_one_agent_hears_every_agent_knows(self):
        a, b = self.agent(), self.agent()
        self.assertTrue(a.apply(update('vm-1', 'compute-1', T0)))
        self.assertTrue(b.apply(update('vm-2', 'compute-1', T0)))
        for rmap in (a, b, self.agent()):     # a restarted one too
            self.assertEqual(['vm-1', 'vm-2'], self.ids(rmap, 'compute-1'))
        inst, = [i for i in b.on_host('compute-1')
                 if i.instance_id == 'vm-1']
        self.assertEqual(('p1', 'u1', 'active'),
                         (inst.project_id, inst.user_id, inst.state))

    def test_older_statements_never_win(self):
        a, b = self.agent(), self.agent()
        later = T0 + datetime.timedelta(seconds=1)
        a.apply(update('vm-1', 'compute-2', later))
        # Handled after, by another agent, but stated before: ignored.
        b.apply(update('vm-1', 'compute-1', T0))
        self.assertEqual('compute-2', a.host_of('vm-1'))
        # A delete stays deleted against an older update.
        b.apply(update('vm-1', 'compute-2', later + later.resolution * 10,
                       event_type='compute.instance.delete.end'))
        a.apply(update('vm-1', 'compute-2', later))
        self.assertIsNone(a.host_of('vm-1'))
        self.assertEqual([], a.hosts())

    def test_a_batch_of_statements_keeps_the_newest(self):
        a = self.agent()
        later = T0 + datetime.timedelta(seconds=1)
        # Concurrent events' rows, written as one batch: the newest
        # statement of an instance wins, within the batch and against the
        # table.
        a.apply(update('vm-9', 'compute-9', later + later.resolution))
        a._write_rows([
            a_row('vm-1', 'compute-2', later),
            a_row('vm-1', 'compute-1', T0),
            a_row('vm-2', 'compute-2', T0),
            a_row('vm-9', 'compute-1', later)])
        self.assertEqual(['vm-1', 'vm-2'], self.ids(a, 'compute-2'))
        self.assertEqual('compute-9', a.host_of('vm-9'))

    def test_a_bad_statement_is_dropped_alone(self):
        a = self.agent()
        a.apply(update('vm-1', 'compute-1', T0))
        self.assertRaises(store_mod.BadRecord, a.apply,
                          update('vm-2', 'h' * 1000, T0))
        self.assertEqual(['vm-1'], self.ids(a, 'compute-1'))

    def test_listing_from_nova(self):
        a, b = self.agent(), self.agent()
        self.assertFalse(a.loaded.is_set())
        a.apply(update('gone', 'compute-1', T0))
        newer = T0 + datetime.timedelta(minutes=5)
        a.apply(update('moved', 'compute-3', newer))
        a.replace_all([
            resource_map.Instance('vm-1', 'p1', 'u1', 'compute-1', 'ACTIVE'),
            resource_map.Instance('moved', 'p1', 'u1', 'compute-1',
                                  'ACTIVE')],
                      as_of=T0 + datetime.timedelta(minutes=1))
        # Listed before the newer update: the update wins. Not listed and
        # not stated since: deleted.
        self.assertEqual(['vm-1'], self.ids(b, 'compute-1'))
        self.assertEqual(['moved'], self.ids(b, 'compute-3'))
        self.assertEqual(2, len(b))
        self.assertTrue(b.loaded.is_set())
        self.assertTrue(self.agent().loaded.wait(1))

    def test_events_without_host_or_id_ignored(self):
        a = self.agent()
        self.assertFalse(a.apply(events.make_event(
            'compute.instance.update', {'tenant_id': 'p1'})))
        self.assertFalse(a.apply(events.make_event(
            'compute.instance.update', {'instance_id': 'vm-1',
                                        'tenant_id': 'p1'})))
        self.assertEqual(0, len(a))

    def test_database_down_is_said(self):
        conf = doctor_fixtures.store_conf(
            'postgresql://nobody@127.0.0.1:1/none')
        conf.set_override('db_timeout', 0.5, 'doctor_evaluator')
        rmap = instances.SharedResourceMap(store_mod.AodhStore(conf))
        self.assertRaises(store_mod.StoreUnavailable, rmap.on_host, 'h')
        self.assertRaises(store_mod.StoreUnavailable, rmap.apply,
                          update('vm-1', 'compute-1', T0))
