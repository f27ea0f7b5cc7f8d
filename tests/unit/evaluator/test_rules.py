"""Alarm rules: Aodh's semantics case by case, and its defects fixed.

Each case is checked against Aodh's own event evaluator (imported, used as
the oracle), except where Aodh is known to be broken: there the expected
verdict is stated and Aodh's failure is asserted too, so the test shows
what was fixed.
"""

import types

from aodh.evaluator import event as aodh_event
from oslotest import base

from doctor_ext.evaluator import events
from doctor_ext.evaluator import rules


def alarm_dict(query, event_type='compute.instance.update',
               project='p1', repeat=False, state='ok'):
    return {'alarm_id': 'a1', 'type': 'event', 'project_id': project,
            'user_id': 'u1', 'name': 'n', 'severity': 'critical',
            'state': state, 'repeat_actions': repeat,
            'alarm_actions': ['http://127.0.0.1:9/x'],
            'rule': {'event_type': event_type, 'query': query}}


def serialized(traits, event_type='compute.instance.update'):
    return {'message_id': 'm1', 'event_type': event_type,
            'generated': '2026-11-24T00:00:00', 'raw': {},
            'traits': traits}


def aodh_verdict(alarm, message):
    """What Aodh's EventAlarmEvaluator decides (fire or not)."""
    fired = []
    model = types.SimpleNamespace(
        alarm_id=alarm['alarm_id'], rule=alarm['rule'],
        repeat_actions=alarm['repeat_actions'], state=alarm['state'],
        project_id=alarm['project_id'])
    stub = types.SimpleNamespace(
        _fire_alarm=lambda a, e: fired.append(a.id))
    aodh_event.EventAlarmEvaluator._evaluate_alarm(
        stub, aodh_event.Alarm(model), aodh_event.Event(message))
    return bool(fired)


def ours(alarm, message):
    compiled = rules.compile_alarm(alarm)
    event = events.from_serialized(message)
    from doctor_ext.evaluator import index
    idx = index.AlarmIndex()
    idx.add(compiled)
    return bool(idx.match(event))


TRAITS = [['instance_id', 1, 'vm-1'], ['state', 1, 'error'],
          ['tenant_id', 1, 'p1'], ['vcpus', 2, 4], ['ratio', 3, 0.5],
          ['launched_at', 4, '2026-11-20T10:00:00'],
          ['big', 2, 9007199254740993], ['text4', 1, '4']]


class TestAgainstAodh(base.BaseTestCase):
    CASES = [
        # (query, event_type pattern, expected)
        ([{'field': 'traits.state', 'op': 'eq', 'value': 'error'}],
         'compute.instance.update', True),
        ([{'field': 'traits.state', 'op': 'eq', 'value': 'active'}],
         'compute.instance.update', False),
        ([{'field': 'traits.state', 'value': 'error'},
          {'field': 'traits.instance_id', 'value': 'vm-1'}],
         'compute.instance.*', True),
        ([{'field': 'traits.instance_id', 'value': 'vm-2'}],
         'compute.instance.*', False),
        ([], 'compute.instance.update', True),
        ([], 'compute.instance.create.*', False),
        ([], '*', True),
        ([], 'compute.instance.updat?', True),
        ([{'field': 'traits.state', 'op': 'ne', 'value': 'active'}],
         '*', True),
        ([{'field': 'traits.vcpus', 'op': 'gt', 'value': '2',
           'type': 'integer'}], '*', True),
        ([{'field': 'traits.vcpus', 'op': 'le', 'value': '3',
           'type': 'integer'}], '*', False),
        ([{'field': 'traits.vcpus', 'op': 'eq', 'value': '4',
           'type': 'integer'}], '*', True),
        ([{'field': 'traits.ratio', 'op': 'lt', 'value': '0.7',
           'type': 'float'}], '*', True),
        ([{'field': 'traits.ratio', 'op': 'ge', 'value': '0.7',
           'type': 'float'}], '*', False),
        ([{'field': 'traits.launched_at', 'op': 'gt',
           'value': '2026-11-19T00:00:00', 'type': 'datetime'}], '*', True),
        ([{'field': 'traits.launched_at', 'op': 'lt',
           'value': '2026-11-19T00:00:00', 'type': 'datetime'}], '*', False),
        ([{'field': 'traits.missing', 'op': 'eq', 'value': 'x'}], '*',
         False),
        ([{'field': 'traits.missing', 'op': 'ne', 'value': 'x'}], '*',
         True),
        ([{'field': 'traits.state', 'op': 'eq', 'value': 'error',
           'type': 'string'}], '*', True),
        # The trait keeps its own type; Python compares the two values.
        ([{'field': 'traits.ratio', 'op': 'gt', 'value': '0',
           'type': 'integer'}], '*', True),
        ([{'field': 'traits.big', 'op': 'eq', 'value': '9007199254740993',
           'type': 'float'}], '*', False),
        ([{'field': 'traits.big', 'op': 'eq', 'value': '9007199254740993',
           'type': 'integer'}], '*', True),
        ([{'field': 'traits.vcpus', 'op': 'eq', 'value': '4'}], '*', False),
        ([{'field': 'traits.vcpus', 'op': 'ne', 'value': '4'}], '*', True),
        ([{'field': 'traits.text4', 'op': 'eq', 'value': '4',
           'type': 'integer'}], '*', False),
        ([{'field': 'traits.text4', 'op': 'ne', 'value': '4',
           'type': 'integer'}], '*', True),
        ([{'field': 'traits.launched_at', 'op': 'eq',
           'value': '2026-11-20T12:00:00+02:00', 'type': 'datetime'}], '*',
         True),
    ]

    def test_cases_match_aodh(self):
        message = serialized(TRAITS)
        for query, pattern, expected in self.CASES:
            alarm = alarm_dict(query, event_type=pattern)
            self.assertEqual(expected, aodh_verdict(alarm, message),
                             'oracle disagrees with the table: %r' % query)
            self.assertEqual(expected, ours(alarm, message),
                             'doctor-ext disagrees with Aodh: %r %s'
                             % (query, pattern))

    def test_fired_non_repeating_alarm_skipped_like_aodh(self):
        message = serialized(TRAITS)
        alarm = alarm_dict([], state='alarm')
        self.assertFalse(aodh_verdict(alarm, message))
        self.assertTrue(rules.compile_alarm(alarm).fired_and_no_repeat)
        alarm = alarm_dict([], state='alarm', repeat=True)
        self.assertTrue(aodh_verdict(alarm, message))
        self.assertFalse(rules.compile_alarm(alarm).fired_and_no_repeat)


class TestStockDefectsFixed(base.BaseTestCase):
    def test_non_trait_field_is_compared(self):
        # Aodh: the op stays a string and calling it raises TypeError.
        alarm = alarm_dict([{'field': 'event_type', 'op': 'eq',
                             'value': 'compute.instance.update'}])
        message = serialized(TRAITS)
        self.assertRaises(TypeError, aodh_verdict, alarm, message)
        self.assertTrue(ours(alarm, message))
        alarm['rule']['query'][0]['value'] = 'other'
        self.assertFalse(ours(alarm, message))

    def test_top_level_field_compared_as_text_whatever_the_type(self):
        message = serialized(TRAITS)
        message['message_id'] = '1'
        for value, expected in (('1', True), ('01', False)):
            alarm = alarm_dict([{'field': 'message_id', 'op': 'eq',
                                 'value': value, 'type': 'integer'}])
            self.assertEqual(expected, ours(alarm, message), value)
        alarm = alarm_dict([{'field': 'generated', 'op': 'lt',
                             'value': '2026-11-25', 'type': 'datetime'}])
        self.assertTrue(ours(alarm, message))

    def test_boolean_query_on_a_trait_that_is_no_boolean_word(self):
        # The trait is a value of another type: only ne holds.
        message = serialized([['up', 1, 'maybe'], ['n', 2, 5],
                              ['tenant_id', 1, 'p1']])
        for field in ('traits.up', 'traits.n', 'traits.missing'):
            for op, expected in (('eq', False), ('ne', True), ('gt', False),
                                 ('le', False)):
                alarm = alarm_dict([{'field': field, 'op': op,
                                     'value': 'false', 'type': 'boolean'}])
                self.assertEqual(expected, ours(alarm, message),
                                 '%s %s' % (field, op))

    def test_boolean_query(self):
        # Aodh: KeyError on type 'boolean', the whole project's events drop.
        alarm = alarm_dict([{'field': 'traits.forced_down', 'op': 'eq',
                             'value': 'true', 'type': 'boolean'}],
                           event_type='service.update')
        message = serialized([['forced_down', 1, 'True'],
                              ['tenant_id', 1, 'p1']], 'service.update')
        self.assertRaises(KeyError, aodh_verdict, alarm, message)
        self.assertTrue(ours(alarm, message))
        message['traits'][0][2] = 'false'
        self.assertFalse(ours(alarm, message))

    def test_ordering_on_unlike_types_is_false_not_an_error(self):
        alarm = alarm_dict([{'field': 'traits.state', 'op': 'gt',
                             'value': '3', 'type': 'integer'}])
        message = serialized(TRAITS)
        # Aodh: gt('error', 3) raises TypeError, logged as a traceback.
        self.assertRaises(TypeError, aodh_verdict, alarm, message)
        self.assertFalse(ours(alarm, message))


class TestInvalidAlarms(base.BaseTestCase):
    def assertInvalid(self, alarm, text):
        e = self.assertRaises(rules.InvalidAlarm, rules.compile_alarm, alarm)
        self.assertIn(text, str(e))
        return e

    def test_bad_queries_name_the_problem(self):
        self.assertInvalid(alarm_dict([{'field': 'traits.x', 'op': 'like',
                                        'value': 'a'}]), "unknown op 'like'")
        self.assertInvalid(alarm_dict([{'field': 'traits.x', 'value': 'a',
                                        'type': 'blob'}]),
                           "unknown type 'blob'")
        self.assertInvalid(alarm_dict([{'field': 'traits.x', 'value': 'abc',
                                        'type': 'integer'}]),
                           'traits.x: value')
        self.assertInvalid(alarm_dict([{'field': 'payload.x',
                                        'value': 'a'}]), "'payload.x'")
        self.assertInvalid(alarm_dict([{'op': 'eq', 'value': 'a'}]),
                           'no field')
        self.assertInvalid(alarm_dict(['not a dict']), 'not a mapping')
        self.assertInvalid(alarm_dict([{'field': 'traits.x'}]), 'no value')
        self.assertInvalid(alarm_dict({'field': 'x'}), 'query is not a list')
        e = self.assertInvalid(alarm_dict([{'field': 'traits.b',
                                            'value': 'maybe',
                                            'type': 'boolean'}]),
                               'alarm a1')
        self.assertIn('boolean', str(e))

    def test_wrong_alarm_type(self):
        alarm = alarm_dict([])
        alarm['type'] = 'threshold'
        self.assertInvalid(alarm, "not event")

    def test_index_key_prefers_instance_id(self):
        alarm = rules.compile_alarm(alarm_dict([
            {'field': 'traits.state', 'value': 'error'},
            {'field': 'traits.instance_id', 'value': 'vm-1'}]))
        self.assertEqual(('instance_id', 'vm-1'), alarm.index_key)
        alarm = rules.compile_alarm(alarm_dict([
            {'field': 'traits.vcpus', 'value': '1', 'type': 'integer'}]))
        self.assertIsNone(alarm.index_key)


class TestQueryAsStored(base.BaseTestCase):
    """The reason text quotes the query as Aodh stored it."""

    def test_items_come_back_unchanged(self):
        query = [
            {'field': 'traits.state', 'op': 'eq', 'type': 'string',
             'value': 'error'},
            {'field': 'traits.instance_id', 'value': 'vm-1'},
            {'field': 'traits.count', 'op': 'ge', 'type': 'integer',
             'value': '5'},
            {'field': 'traits.up', 'op': 'eq', 'type': 'boolean',
             'value': 'true'},
            {'field': 'traits.x', 'op': 'ne', 'type': '', 'value': 'y',
             'comment': 'kept as given'},
        ]
        alarm = rules.compile_alarm({
            'alarm_id': 'a1', 'project_id': 'p1', 'type': 'event',
            'rule': {'event_type': '*', 'query': [dict(q) for q in query]}})
        self.assertEqual(query, alarm.query())
        # Converted values are compared converted, quoted as stored.
        self.assertEqual(5, alarm.conditions[2].value)

    def test_alarms_written_alike_share_the_shape(self):
        def alarm(vm):
            return rules.compile_alarm({
                'alarm_id': vm, 'project_id': 'p1', 'type': 'event',
                'rule': {'query': [{'field': 'traits.instance_id',
                                    'op': 'eq', 'type': 'string',
                                    'value': vm}]}})
        a, b = alarm('vm-1'), alarm('vm-2')
        self.assertIs(a.conditions[0].shape, b.conditions[0].shape)
