"""Project isolation, as properties over random alarms and events.

Aodh's event evaluator gives an event the alarms of exactly its project:
the last ``tenant_id``/``project_id`` trait, ``''`` when it has neither,
and ``storage.get_alarms(project_id=...)`` compares it for equality, so an
admin's alarm sees only the admin project's events and an alarm without a
project sees none. The index and the engine must never do more: for any
set of alarms and any event, what fires is exactly what a brute-force
evaluation restricted to the event's project fires.
"""

import concurrent.futures
import fnmatch
import itertools

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from oslo_config import cfg
from oslotest import base

from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events
from doctor_ext.evaluator import index as index_mod
from doctor_ext.evaluator import rules

PROJECTS = ('project-a', 'project-b', 'admin', '')
EVENT_TYPES = ('compute.instance.update', 'compute.instance.delete.end',
               'compute.host.down', 'image.update')
PATTERNS = EVENT_TYPES + ('*', 'compute.*', 'compute.instance.*', '*.end',
                          'compute.instance.???????')
INSTANCES = ('vm-1', 'vm-2', 'vm-3')
STATES = ('error', 'active', 'deleted')

conditions = st.one_of(
    st.builds(lambda vm: {'field': 'traits.instance_id', 'op': 'eq',
                          'value': vm}, st.sampled_from(INSTANCES)),
    st.builds(lambda s, op: {'field': 'traits.state', 'op': op, 'value': s,
                             'type': 'string'},
              st.sampled_from(STATES), st.sampled_from(('eq', 'ne'))),
    st.builds(lambda p: {'field': 'traits.tenant_id', 'op': 'eq',
                         'value': p}, st.sampled_from(PROJECTS)),
    st.just({'field': 'event_type', 'op': 'eq',
             'value': 'compute.instance.update'}),
)
alarm_rows = st.lists(st.fixed_dictionaries({
    # None: a row without a project (written to the database directly).
    'project_id': st.sampled_from(PROJECTS + (None,)),
    'event_type': st.sampled_from(PATTERNS),
    'query': st.lists(conditions, max_size=3),
    'repeat_actions': st.booleans(),
}), min_size=1, max_size=25)
event_specs = st.fixed_dictionaries({
    'event_type': st.sampled_from(EVENT_TYPES),
    'instance_id': st.sampled_from(INSTANCES),
    'state': st.sampled_from(STATES),
    # Which project traits the event carries (Nova's carry tenant_id; a
    # bus event may carry project_id; host-level events carry none).
    'tenant_id': st.sampled_from(PROJECTS + (None,)),
    'project_id': st.sampled_from(PROJECTS + (None,)),
})


def compile_rows(rows):
    alarms = []
    for i, row in enumerate(rows):
        alarms.append(rules.compile_alarm({
            'alarm_id': 'alarm-%d' % i, 'type': 'event',
            'project_id': row['project_id'], 'state': 'ok',
            'repeat_actions': row['repeat_actions'],
            'alarm_actions': ['http://127.0.0.1:9/%s/alarm-%d' % (
                row['project_id'], i)],
            'rule': {'event_type': row['event_type'],
                     'query': row['query']}}))
    return alarms


def make_event(spec):
    traits = {'instance_id': spec['instance_id'], 'state': spec['state']}
    for name in ('tenant_id', 'project_id'):
        if spec[name] is not None:
            traits[name] = spec[name]
    return events.make_event(spec['event_type'], traits)


def aodh_project(spec):
    """The project Aodh evaluates an event in.

    With the trait order Ceilometer gives (project_id, then tenant_id),
    the last one wins.
    """
    project = ''
    for name in ('project_id', 'tenant_id'):
        if spec[name] is not None:
            project = spec[name]
    return project


def brute_force(alarms, event, project):
    return {a.alarm_id for a in alarms
            if a.project_id == project and
            fnmatch.fnmatchcase(event.event_type, a.event_type) and
            a.matches(event)}


class _AllWin:
    """A store whose claims all succeed (no database needed)."""

    def claim(self, transitions, owed=(), lease=None, history=()):
        return {alarm_id for alarm_id, _ in transitions}

    def set_state(self, transitions):
        pass

    def record_history(self, changes):
        pass

    def finish_outbox(self, outcomes):
        pass


class _Notifier:
    def __init__(self):
        self.sent = []

    def submit(self, notification):
        self.sent.append(notification)
        future = concurrent.futures.Future()
        future.set_result(True)
        return future


def consistent(spec):
    # Ceilometer fills tenant_id and project_id from the same fields; an
    # event whose two traits disagree has no single Aodh answer.
    return (spec['tenant_id'] is None or spec['project_id'] is None or
            spec['tenant_id'] == spec['project_id'])


class TestIsolation(base.BaseTestCase):

    @settings(max_examples=300, deadline=None)
    @given(alarm_rows, st.lists(event_specs.filter(consistent), min_size=1,
                                max_size=10))
    def test_index_never_crosses_projects(self, rows, specs):
        alarms = compile_rows(rows)
        idx = index_mod.AlarmIndex()
        idx.replace_all(alarms)
        for spec in specs:
            event = make_event(spec)
            project = aodh_project(spec)
            self.assertEqual(project, event.project)
            matched = idx.match(event)
            for alarm in matched:
                self.assertEqual(project, alarm.project_id,
                                 'event of project %r matched alarm %s of '
                                 'project %r' % (project, alarm.alarm_id,
                                                 alarm.project_id))
            self.assertEqual(brute_force(alarms, event, project),
                             {a.alarm_id for a in matched})

    @settings(max_examples=150, deadline=None)
    @given(alarm_rows, st.lists(event_specs.filter(consistent), min_size=1,
                                max_size=10))
    def test_engine_notifies_only_the_event_project(self, rows, specs):
        conf = cfg.ConfigOpts()
        conf([], project='doctor-test')
        alarms = compile_rows(rows)
        idx = index_mod.AlarmIndex()
        idx.replace_all(alarms)
        notifier = _Notifier()
        engine = engine_mod.Engine(conf, idx, _AllWin(), notifier)
        self.addCleanup(engine.recorder.stop)
        by_id = {a.alarm_id: a for a in alarms}
        evs = [make_event(s) for s in specs]
        firings = engine.evaluate(evs)
        for firing in firings:
            self.assertEqual(firing.event.project, firing.alarm.project_id)
        for note in notifier.sent:
            alarm = by_id[note.alarm_id]
            self.assertEqual(alarm.project_id, note.project_id)
            self.assertIn(note.action, alarm.actions)
            traits = dict((t[0], t[2])
                          for t in note.reason_data['event']['traits'])
            self.assertEqual(alarm.project_id or '',
                             traits.get('tenant_id') or
                             traits.get('project_id') or '')
        # Nothing that should fire was held back either: each
        # non-repeating alarm fires for its first matching event, each
        # repeating one for every matching event.
        expected = []
        seen = set()
        for event in evs:
            for alarm_id in sorted(brute_force(alarms, event,
                                               event.project)):
                if by_id[alarm_id].repeat_actions:
                    expected.append(alarm_id)
                elif alarm_id not in seen:
                    seen.add(alarm_id)
                    expected.append(alarm_id)
        self.assertEqual(sorted(expected),
                         sorted(f.alarm.alarm_id for f in firings))

    def test_alarm_without_project_sees_no_event(self):
        alarm, = compile_rows([{'project_id': None, 'event_type': '*',
                                'query': [], 'repeat_actions': True}])
        idx = index_mod.AlarmIndex()
        idx.add(alarm)
        for spec in itertools.product(PROJECTS + (None,), repeat=2):
            event = make_event({'event_type': 'compute.host.down',
                                'instance_id': 'vm-1', 'state': 'error',
                                'tenant_id': spec[0],
                                'project_id': spec[1]})
            self.assertEqual([], idx.match(event))

    def test_admin_alarm_sees_only_admin_events(self):
        admin, other = compile_rows([
            {'project_id': 'admin', 'event_type': '*', 'query': [],
             'repeat_actions': True},
            {'project_id': '', 'event_type': 'compute.host.*', 'query': [],
             'repeat_actions': True}])
        idx = index_mod.AlarmIndex()
        idx.replace_all([admin, other])
        host_down = events.make_event('compute.host.down',
                                      {'hostname': 'compute-1'})
        tenant = events.make_event('compute.instance.update', {
            'instance_id': 'vm-1', 'tenant_id': 'project-a'})
        mine = events.make_event('compute.instance.update', {
            'instance_id': 'vm-1', 'tenant_id': 'admin'})
        self.assertEqual([other], idx.match(host_down))
        self.assertEqual([], idx.match(tenant))
        self.assertEqual([admin], idx.match(mine))
