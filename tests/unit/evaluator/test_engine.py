"""The evaluator against a real Aodh schema on PostgreSQL and MariaDB."""

import threading

import fixtures
from oslo_config import cfg
from oslotest import base
import testscenarios

from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events
from doctor_ext.evaluator import index as index_mod
from doctor_ext.evaluator import store as store_mod
from doctor_ext.evaluator import sync as sync_mod
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios


def doctor_query(vm):
    return [{'field': 'traits.state', 'op': 'eq', 'value': 'error'},
            {'field': 'traits.instance_id', 'op': 'eq', 'value': vm}]


def vm_event(vm, project='p1'):
    return events.make_event('compute.instance.update', {
        'instance_id': vm, 'tenant_id': project, 'state': 'error'})


class EngineTest(base.BaseTestCase):
    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(
            self.backend))
        self.conf = doctor_fixtures.store_conf(self.db.url)
        self.engine = self.make_engine()

    def make_engine(self):
        return doctor_fixtures.engine(self, self.conf)

    def load(self, engine=None):
        engine = engine or self.engine
        engine.sync.load_all()
        engine.sync.loaded.set()

    def test_fires_once_records_state_and_history(self):
        a = self.db.add_alarm(project_id='p1', query=doctor_query('vm-1'),
                              event_type='compute.instance.update',
                              actions=['http://127.0.0.1:9/a',
                                       'http://127.0.0.1:9/b'])
        self.load()
        firings = self.engine.evaluate([vm_event('vm-1')])
        self.assertEqual([a], [f.alarm.alarm_id for f in firings])
        sent = self.engine.notifier.sent
        self.assertEqual(['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b'],
                         [n.action for n in sent])
        n = sent[0]
        self.assertEqual(('ok', 'alarm', 'critical'),
                         (n.previous, n.current, n.severity))
        self.assertEqual('event', n.reason_data['type'])
        self.assertEqual('vm-1', dict(
            (t[0], t[2]) for t in n.reason_data['event']['traits']
        )['instance_id'])
        self.assertIn('hits the query', n.reason)
        self.assertEqual('alarm', self.db.state(a))
        self.assertTrue(self.engine.recorder.wait_idle(10))
        history = self.db.history(a)
        self.assertEqual(1, len(history))
        self.assertEqual('state transition', history[0]['type'])
        # The alarm's project and user.
        self.assertEqual(('p1', 'p1', 'u-p1'),
                         (history[0]['on_behalf_of'],
                          history[0]['project_id'], history[0]['user_id']))
        # Non-repeating: a second event does not fire again.
        self.assertEqual([], self.engine.evaluate([vm_event('vm-1')]))
        self.assertEqual(2, len(sent))

    def test_no_history_when_aodh_records_none(self):
        aodh_conf = self.useFixture(fixtures.TempDir()).join('aodh.conf')
        with open(aodh_conf, 'w') as f:
            f.write('[DEFAULT]\nrecord_history = False\n')
        self.conf.set_override('aodh_config_file', aodh_conf,
                               group='doctor_notifier')
        engine = self.make_engine()
        once = self.db.add_alarm(query=doctor_query('vm-1'))
        repeating = self.db.add_alarm(query=doctor_query('vm-1'),
                                      repeat_actions=True)
        self.load(engine)
        self.assertEqual(2, len(engine.evaluate([vm_event('vm-1')])))
        self.assertTrue(engine.recorder.wait_idle(10))
        self.assertEqual(['alarm', 'alarm'],
                         [self.db.state(a) for a in (once, repeating)])
        self.assertEqual([[], []],
                         [self.db.history(a) for a in (once, repeating)])
        self.assertEqual(2, len(engine.notifier.sent))

    def test_repeating_alarm_fires_every_time(self):
        a = self.db.add_alarm(query=doctor_query('vm-1'),
                              repeat_actions=True)
        self.load()
        for _ in range(3):
            self.assertEqual(1, len(self.engine.evaluate([vm_event('vm-1')])))
        self.assertTrue(self.engine.recorder.wait_idle(10))
        self.assertEqual(3, len(self.db.history(a)))
        self.assertEqual('alarm', self.db.state(a))

    def test_repeating_alarm_once_per_event_whoever_evaluates_it(self):
        self.db.add_alarm(query=doctor_query('vm-1'), repeat_actions=True)
        self.load()
        event = vm_event('vm-1')
        self.assertEqual(1, len(self.engine.evaluate([event])))
        # The same event redelivered to another agent: its notification
        # is already owed (and delivered by the outbox), not fired again.
        other = self.make_engine()
        self.load(other)
        self.assertEqual([], other.evaluate([event]))
        self.assertEqual(1, len(other.evaluate([vm_event('vm-1')])))

    def test_a_large_host_is_notified_chunk_by_chunk(self):
        self.useFixture(fixtures.MonkeyPatch(
            'doctor_ext.evaluator.engine.CLAIM_CHUNK', 2))
        ids = [self.db.add_alarm(query=doctor_query('vm-%d' % i))
               for i in range(5)]
        self.load()
        steps = []
        store, notifier = self.engine.store, self.engine.notifier

        class Store:
            def __getattr__(self, name):
                return getattr(store, name)

            def claim(self, transitions, owed=(), lease=None, history=()):
                steps.append(('claim', len(transitions)))
                return store.claim(transitions, owed, lease, history)

        class Notifier:
            def submit(self, notification):
                steps.append(('notify', notification.alarm_id))
                return notifier.submit(notification)

        self.engine.store, self.engine.notifier = Store(), Notifier()
        firings = self.engine.evaluate([vm_event('vm-%d' % i)
                                        for i in range(5)])
        self.assertEqual(sorted(ids), sorted(f.alarm.alarm_id
                                             for f in firings))
        # Each chunk's owners are notified before the next claim.
        self.assertEqual(['claim', 'notify', 'notify', 'claim', 'notify',
                          'notify', 'claim', 'notify'],
                         [kind for kind, _ in steps])
        self.assertEqual([2, 2, 1], [n for kind, n in steps
                                     if kind == 'claim'])

    def test_a_small_tenant_is_not_claimed_after_a_big_one(self):
        self.useFixture(fixtures.MonkeyPatch(
            'doctor_ext.evaluator.engine.CLAIM_CHUNK', 2))
        for i in range(6):
            self.db.add_alarm(query=doctor_query('vm-%d' % i))
        small = {self.db.add_alarm(project_id='p2',
                                   query=doctor_query('vm-s%d' % i))
                 for i in range(2)}
        self.load()
        events = [vm_event('vm-%d' % i) for i in range(6)]
        events += [vm_event('vm-s%d' % i, 'p2') for i in range(2)]
        firings = self.engine.evaluate(events)
        self.assertEqual(8, len(firings))
        # Claimed (and notified) in the first two chunks of four, not last.
        self.assertEqual(small, {f.alarm.alarm_id for f in firings[:4]}
                         & small)

    def test_a_tenant_with_many_actions_does_not_share_a_small_ones_claim(
            self):
        # Chunks of 4 notifications: a greedy alarm owes 4 on its own.
        self.useFixture(fixtures.MonkeyPatch(
            'doctor_ext.evaluator.engine.CLAIM_CHUNK', 4))
        greedy = ['http://127.0.0.1:9/g%d' % i for i in range(4)]
        for i in range(3):
            self.db.add_alarm(query=doctor_query('vm-%d' % i),
                              actions=greedy, repeat_actions=i == 2)
        small = {self.db.add_alarm(project_id='p2',
                                   query=doctor_query('vm-s%d' % i))
                 for i in range(3)}
        self.load()
        claims = []
        store = self.engine.store

        class Store:
            def __getattr__(self, name):
                return getattr(store, name)

            def claim(self, transitions, owed=(), lease=None, history=()):
                claims.append(({i for i, _ in transitions},
                               {o['alarm_id'] for o in owed}, len(owed)))
                return store.claim(transitions, owed, lease, history)

        self.engine.store = Store()
        events = [vm_event('vm-%d' % i) for i in range(3)]
        events += [vm_event('vm-s%d' % i, 'p2') for i in range(3)]
        firings = self.engine.evaluate(events)
        self.assertEqual(6, len(firings))
        # The small tenant's alarms are claimed first, in a transaction of
        # their own; then one greedy alarm (its 4 rows) per transaction,
        # the repeating one's rows too.
        self.assertEqual((small, small, 3), claims[0])
        self.assertEqual([4, 4, 4], [n for _, _, n in claims[1:]])
        self.assertEqual([1, 1, 1], [len(ids) for _, ids, _ in claims[1:]])
        self.assertEqual(small, {f.alarm.alarm_id for f in firings[:3]})
        self.assertEqual(4 * 3 + 3, len(self.engine.notifier.sent))

    def test_exactly_once_across_two_agents(self):
        ids = [self.db.add_alarm(query=doctor_query('vm-%d' % i))
               for i in range(50)]
        other = self.make_engine()
        self.load()
        self.load(other)
        batch = [vm_event('vm-%d' % i) for i in range(50)]
        results = []
        start = threading.Barrier(2)

        def run(engine):
            start.wait()
            results.append(engine.evaluate(batch))
        threads = [threading.Thread(target=run, args=(e,))
                   for e in (self.engine, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        fired = [f.alarm.alarm_id for r in results for f in r]
        self.assertEqual(sorted(ids), sorted(fired))

    def test_project_scoping(self):
        self.db.add_alarm(project_id='p2', query=doctor_query('vm-1'))
        self.load()
        self.assertEqual([], self.engine.evaluate([vm_event('vm-1', 'p1')]))
        self.assertEqual([], self.engine.notifier.sent)

    def test_invalid_alarm_skipped_others_work(self):
        self.db.add_alarm(query=[{'field': 'traits.x', 'op': 'eq',
                                  'value': 'abc', 'type': 'integer'}])
        good = self.db.add_alarm(query=doctor_query('vm-1'))
        self.load()
        self.assertEqual(1, len(self.engine.index))
        fired = self.engine.evaluate([vm_event('vm-1')])
        self.assertEqual([good], [f.alarm.alarm_id for f in fired])

    def test_new_and_deleted_alarm_via_refresh(self):
        self.load()
        a = self.db.add_alarm(query=doctor_query('vm-1'))
        self.engine.sync.refresh(a)
        self.assertEqual(1, len(self.engine.evaluate([vm_event('vm-1')])))
        self.engine.sync.refresh(a, deleted=True)
        self.assertEqual(0, len(self.engine.index))

    def test_database_down_fires_from_index_and_writes_later(self):
        a = self.db.add_alarm(query=doctor_query('vm-1'))
        self.load()
        real = self.conf.doctor_evaluator.aodh_connection
        broken = store_mod.AodhStore(self.conf)
        self.conf.set_override(
            'aodh_connection',
            real.replace('127.0.0.1', '127.0.0.1:1').replace(
                ':1:5432', ':1').replace(':1:3306', ':1'),
            group='doctor_evaluator')
        self.engine.store = broken
        self.engine.recorder._store = broken
        fired = self.engine.evaluate([vm_event('vm-1')])
        self.assertEqual([a], [f.alarm.alarm_id for f in fired])
        self.assertEqual('ok', self.db.state(a))
        self.assertGreater(self.engine.recorder.pending, 0)
        # The database comes back: the deferred claim and history land.
        self.conf.set_override('aodh_connection', real,
                               group='doctor_evaluator')
        broken._engine = None
        self.assertTrue(self.engine.recorder.wait_idle(20))
        self.assertEqual('alarm', self.db.state(a))
        self.assertEqual(1, len(self.db.history(a)))


class NotReadyTest(base.BaseTestCase):
    def test_events_refused_until_alarms_loaded(self):
        conf = cfg.ConfigOpts()
        conf([], project='doctor-test')
        index = index_mod.AlarmIndex()
        store = store_mod.AodhStore(conf)
        sync = sync_mod.AlarmSync(conf, index, store)
        engine = engine_mod.Engine(conf, index, store,
                                   doctor_fixtures.RecordingNotifier(),
                                   sync=sync)
        conf.set_override('startup_wait', 0.01, group='doctor_evaluator')
        self.assertRaises(engine_mod.NotReady, engine.evaluate,
                          [vm_event('vm-1')])
