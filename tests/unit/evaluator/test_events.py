import datetime

from ceilometer.event import models
from oslotest import base

from doctor_ext.evaluator import events


def message(**kw):
    m = {'message_id': 'm1', 'event_type': 'compute.instance.update',
         'generated': '2026-11-24T00:00:00', 'raw': {},
         'traits': [['instance_id', 1, 'vm-1'], ['tenant_id', 1, 'p1'],
                    ['vcpus', 2, '4'], ['at', 4, '2026-11-24T01:02:03']]}
    m.update(kw)
    return m


class TestParse(base.BaseTestCase):
    def test_serialized(self):
        e = events.from_serialized(message())
        self.assertEqual('p1', e.project)
        self.assertEqual(4, e.traits['vcpus'])
        self.assertEqual(datetime.datetime(2026, 11, 24, 1, 2, 3),
                         e.traits['at'])
        # Handed on as received, as Aodh hands on what it got.
        self.assertEqual(message(), e.serialize())

    def test_built_event_serialized_like_ceilometer(self):
        e = events.make_event('x.y', {'vcpus': 4, 'at': datetime.datetime(
            2026, 11, 24, 1, 2, 3), 'tenant_id': 'p1'})
        out = e.serialize()
        self.assertEqual(['vcpus', 2, 4], out['traits'][0])
        self.assertEqual(['at', 4, '2026-11-24T01:02:03'], out['traits'][1])
        self.assertEqual('p1', e.project)

    def test_project_id_trait(self):
        e = events.from_serialized(message(traits=[['project_id', 1, 'p9']]))
        self.assertEqual('p9', e.project)

    def test_project_is_the_last_project_trait_as_in_aodh(self):
        def project(traits):
            return events.from_serialized(message(traits=traits)).project
        self.assertEqual('p2', project([['tenant_id', 1, 'p1'],
                                        ['project_id', 1, 'p2']]))
        self.assertEqual('p1', project([['project_id', 1, 'p2'],
                                        ['tenant_id', 1, 'p1']]))
        # Even an empty one, and a name given twice counts where it is last.
        self.assertEqual('', project([['tenant_id', 1, 'p1'],
                                      ['project_id', 1, '']]))
        self.assertEqual('p3', project([['tenant_id', 1, 'p1'],
                                        ['project_id', 1, 'p2'],
                                        ['tenant_id', 1, 'p3']]))

    def test_ceilometer_model(self):
        ev = models.Event('m2', 'compute.host.down',
                          datetime.datetime(2026, 11, 24),
                          [models.Trait('hostname', 1, 'compute-1')], {})
        e = events.from_ceilometer(ev)
        self.assertEqual('compute-1', e.traits['hostname'])
        self.assertEqual('', e.project)

    def assertInvalid(self, msg, text):
        err = self.assertRaises(events.InvalidEvent,
                                events.from_serialized, msg)
        self.assertIn(text, str(err))

    def test_bad_input_names_the_problem(self):
        self.assertInvalid('not a dict', 'not a mapping')
        self.assertInvalid(message(event_type=None), 'event_type')
        self.assertInvalid(message(message_id=''), 'message_id')
        self.assertInvalid(message(event_type='x' * 300), 'longer than')
        self.assertInvalid(message(traits=[['a', 7, 'x']]),
                           "unknown type 7")
        self.assertInvalid(message(traits=[['a', 'blob', 'x']]),
                           "unknown type 'blob'")
        self.assertInvalid(message(traits=[['n', 2, 'four']]),
                           "trait 'n'")
        self.assertInvalid(message(traits=[['d', 4, 'yesterday']]),
                           "trait 'd'")
        self.assertInvalid(message(traits=[['only-two', 1]]),
                           'not [name, type, value]')
        self.assertInvalid(message(traits='abc'), 'not a list')
        self.assertInvalid(message(traits=[[1, 1, 'x']]), 'trait name')
        self.assertInvalid(message(traits=[['b', 1, b'\xff\xfe']]),
                           'not valid UTF-8')
        self.assertInvalid(message(traits=[['t%d' % i, 1, 'x']
                                           for i in range(2000)]),
                           'more than')

    def test_huge_text_is_cut_like_ceilometer(self):
        e = events.from_serialized(message(traits=[['big', 1, 'x' * 10 ** 6],
                                                   ['tenant_id', 1, 'p1']]))
        self.assertEqual(255, len(e.traits['big']))

    def test_missing_traits_is_an_empty_event(self):
        m = message()
        del m['traits']
        e = events.from_serialized(m)
        self.assertEqual({}, e.traits)
        self.assertEqual('', e.project)

    def test_make_event_types(self):
        e = events.make_event('x.y', {'a': 1, 'b': 1.5, 'c': True, 'd': None,
                                      'e': 'text'})
        self.assertEqual({'a': 2, 'b': 3, 'c': 1, 'e': 1}, e.trait_types)
        self.assertEqual('true', e.traits['c'])
        self.assertNotIn('d', e.traits)
