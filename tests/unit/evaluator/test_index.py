import fnmatch
import uuid

from hypothesis import given
from hypothesis import settings
from oslotest import base

from doctor_ext.evaluator import events
from doctor_ext.evaluator import index
from doctor_ext.evaluator import rules
from tests.unit.evaluator import strategies


def make_alarm(project='p1', event_type='compute.instance.update',
               query=None, alarm_id=None):
    return rules.compile_alarm({
        'alarm_id': alarm_id or str(uuid.uuid4()), 'type': 'event',
        'project_id': project, 'state': 'ok',
        'alarm_actions': ['http://127.0.0.1:9/'],
        'rule': {'event_type': event_type, 'query': query or []}})


def doctor_alarm(vm, project='p1', alarm_id=None):
    return make_alarm(project, query=[
        {'field': 'traits.state', 'op': 'eq', 'value': 'error'},
        {'field': 'traits.instance_id', 'op': 'eq', 'value': vm}],
        alarm_id=alarm_id)


def vm_event(vm, project='p1', state='error',
             event_type='compute.instance.update'):
    return events.make_event(event_type, {'instance_id': vm,
                                          'tenant_id': project,
                                          'state': state})


class TestAlarmIndex(base.BaseTestCase):
    def setUp(self):
        super().setUp()
        self.idx = index.AlarmIndex()

    def test_lookup_by_instance(self):
        alarms = {vm: doctor_alarm(vm) for vm in ('vm-1', 'vm-2', 'vm-3')}
        for a in alarms.values():
            self.idx.add(a)
        self.assertEqual([alarms['vm-2']],
                         self.idx.match(vm_event('vm-2')))
        self.assertEqual([], self.idx.match(vm_event('vm-2', state='ok')))
        self.assertEqual([], self.idx.match(vm_event('vm-4')))

    def test_candidates_do_not_grow_with_alarms(self):
        for i in range(5000):
            self.idx.add(doctor_alarm('vm-%d' % i))
        self.idx.add(make_alarm(event_type='compute.*'))
        self.assertEqual(2, len(self.idx.candidates(vm_event('vm-42'))))
        self.assertEqual(2, len(self.idx.match(vm_event('vm-42'))))

    def test_project_isolation(self):
        mine = doctor_alarm('vm-1', project='p1')
        theirs = doctor_alarm('vm-1', project='p2')
        wild = make_alarm(project='p2', event_type='*')
        for a in (mine, theirs, wild):
            self.idx.add(a)
        self.assertEqual([mine], self.idx.match(vm_event('vm-1', 'p1')))
        self.assertEqual({theirs.alarm_id, wild.alarm_id},
                         {a.alarm_id for a in
                          self.idx.match(vm_event('vm-1', 'p2'))})
        self.assertEqual([], self.idx.match(vm_event('vm-1', '')))

    def test_wildcards_and_exact_types(self):
        a = make_alarm(event_type='compute.instance.*')
        b = make_alarm(event_type='compute.instance.update')
        c = make_alarm(event_type='compute.host.?own')
        for x in (a, b, c):
            self.idx.add(x)
        ids = {x.alarm_id for x in self.idx.match(vm_event('vm-1'))}
        self.assertEqual({a.alarm_id, b.alarm_id}, ids)
        host = events.make_event('compute.host.down', {'tenant_id': 'p1'})
        self.assertEqual([c], self.idx.match(host))
        self.idx.remove(c.alarm_id)
        self.assertEqual([], self.idx.match(host))

    def test_several_alarms_on_one_instance(self):
        # One alarm on a value is kept as it is, more in a dict: adding and
        # removing goes from one form to the other and back.
        a, b, c = (doctor_alarm('vm-1', alarm_id=i) for i in 'abc')
        for x in (a, b, c):
            self.idx.add(x)
        self.assertEqual({'a', 'b', 'c'}, {x.alarm_id for x in
                                           self.idx.match(vm_event('vm-1'))})
        self.idx.remove('b')
        self.idx.remove('a')
        self.assertEqual([c], self.idx.match(vm_event('vm-1')))
        self.idx.add(doctor_alarm('vm-1', alarm_id='c'))
        self.assertEqual(['c'], [x.alarm_id for x in
                                 self.idx.match(vm_event('vm-1'))])
        self.idx.remove('c')
        self.assertEqual([], self.idx.match(vm_event('vm-1')))
        self.assertEqual({}, self.idx._projects)

    def test_alarms_share_equal_short_conditions(self):
        a, b = doctor_alarm('vm-1'), doctor_alarm('vm-2')
        self.assertIs(a.conditions[0], b.conditions[0])
        self.assertIsNot(a.conditions[1], b.conditions[1])

    def test_replace_update_and_remove(self):
        a = doctor_alarm('vm-1', alarm_id='a')
        self.idx.add(a)
        changed = doctor_alarm('vm-2', alarm_id='a')
        self.idx.add(changed)
        self.assertEqual(1, len(self.idx))
        self.assertEqual([], self.idx.match(vm_event('vm-1')))
        self.assertEqual([changed], self.idx.match(vm_event('vm-2')))
        self.idx.replace_all([doctor_alarm('vm-3', alarm_id='b')])
        self.assertEqual([], self.idx.match(vm_event('vm-2')))
        self.assertEqual(['b'], [x.alarm_id for x in
                                 self.idx.match(vm_event('vm-3'))])
        self.assertIsNone(self.idx.remove('a'))
        self.assertIsNotNone(self.idx.remove('b'))
        self.assertEqual(0, len(self.idx))
        self.assertEqual({}, self.idx._projects)


class TestIndexAgreesWithRules(base.BaseTestCase):
    """The index never hides an alarm whose rules match (a property)."""

    @settings(max_examples=500, deadline=None, derandomize=True,
              database=None)
    @given(strategies.alarms(max_size=12),
           strategies.batches(max_batches=1, max_events=6))
    def test_candidates_are_a_superset_of_the_matches(self, rows, batches):
        alarms = []
        for i, row in enumerate(rows):
            try:
                alarms.append(rules.compile_alarm({
                    'alarm_id': 'a%d' % i, 'type': 'event',
                    'project_id': row['project_id'], 'state': row['state'],
                    'rule': {'event_type': row['event_type'],
                             'query': row['query']}}))
            except rules.InvalidAlarm:
                pass
        idx = index.AlarmIndex()
        idx.replace_all(alarms)
        for message in batches[0]:
            event = events.from_serialized(message)
            matching = {a.alarm_id for a in alarms
                        if a.project_id == event.project and
                        fnmatch.fnmatchcase(event.event_type,
                                            a.event_type) and
                        a.matches(event)}
            candidates = {a.alarm_id for a in idx.candidates(event)}
            self.assertEqual(set(), matching - candidates,
                             'the index misses alarms that match %r'
                             % message)
            self.assertEqual(matching, {a.alarm_id for a in
                                        idx.match(event)})

    def test_integer_trait_and_string_query_agree(self):
        # An integer 5 is not "5", with or without a second condition.
        for query in ([{'field': 'traits.count', 'op': 'eq', 'value': '5'}],
                      [{'field': 'traits.count', 'op': 'eq', 'value': '5'},
                       {'field': 'traits.instance_id', 'op': 'eq',
                        'value': 'vm-1'}]):
            idx = index.AlarmIndex()
            alarm = make_alarm(query=query)
            idx.add(alarm)
            for count, expected in ((5, []), ('5', [alarm])):
                event = events.make_event('compute.instance.update', {
                    'tenant_id': 'p1', 'instance_id': 'vm-1',
                    'count': count})
                self.assertEqual(bool(expected), alarm.matches(event))
                self.assertEqual(expected, idx.match(event))
