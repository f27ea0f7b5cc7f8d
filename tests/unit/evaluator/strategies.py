"""Random Aodh event alarms and serialized events, for the property tests.

Alarms are shaped as aodh-api stores them (query values are text that
converts to the query's type; ``datetime`` and a NULL project, which only a
direct database write gives, are included), events as Ceilometer's
``notifier://`` publisher serializes them (``[name, dtype, value]`` traits,
text traits within Ceilometer's 255 characters). The values are drawn from
small pools that collide often: a text ``"5"`` beside an integer 5 and a
float 5.5, boolean words beside other text, two spellings of one instant.
"""

import datetime

from hypothesis import strategies as st

PROJECTS = ('project-a', 'admin', '')
EVENT_TYPES = ('compute.instance.update', 'compute.instance.delete.end',
               'compute.host.down', 'service.update')
PATTERNS = EVENT_TYPES + ('*', 'compute.*', 'compute.instance.*', '*.end',
                          'compute.host.?own', 'service.[tu]pdate',
                          'compute.instance.???????')
STATES = ('ok', 'alarm', 'insufficient data')
OPS = ('eq', 'ne', 'lt', 'le', 'gt', 'ge')
TRAITS = ('state', 'instance_id', 'load', 'count', 'at', 'up')
# Fields outside traits.*: the three doctor-ext compares as text, and one
# it refuses (the alarm is invalid; Aodh never fires it either).
TOP_LEVEL_FIELDS = ('event_type', 'message_id', 'generated')
OTHER_FIELDS = ('raw.state',)

TEXTS = ('error', 'active', 'vm-1', '5', '10', '5.5', '9007199254740993',
         'true', 'no', '1', '2026-11-20T10:00:00', '', 'compute.host.down',
         'm-1')
INTEGERS = (0, 1, 3, 5, 10, -2, 9007199254740993)
FLOATS = (0.0, 1.0, 5.0, 5.5, 9007199254740992.0, -0.5, 1e300)
INSTANTS = ('2026-11-20T10:00:00', '2026-11-20T12:00:00+02:00',
            '2026-11-20T10:00:00Z', '2026-11-20T09:59:59.500000',
            '2026-11-21T00:00:00')
# Query values, as text, valid for each type (aodh-api converts them).
QUERY_VALUES = {
    'string': TEXTS,
    'integer': ('0', '1', '3', '5', '10', '-2', '9007199254740993'),
    'float': ('0', '1.0', '5', '5.5', '9007199254740993', '1e1', '-0.5'),
    'boolean': ('true', 'false', 'yes', 'no', '1', '0', 'off'),
    'datetime': INSTANTS,
}
# The query ``type`` as stored: unset, empty or one of the API's types.
QUERY_TYPES = (None, '', 'string', 'integer', 'float', 'boolean',
               'datetime')


def _query_item(field, qtype, value, op):
    item = {'field': field, 'value': value}
    if op is not None:
        item['op'] = op
    if qtype is not None:
        item['type'] = qtype
    return item


# Every query item and every trait is drawn in one step from these pools
# (a draw costs more than the rest of an example).
QUERY_ITEMS = tuple(
    _query_item(field, qtype, value, op)
    for field in ['traits.' + t for t in TRAITS] + list(
        TOP_LEVEL_FIELDS + OTHER_FIELDS)
    for qtype in QUERY_TYPES
    for value in QUERY_VALUES[qtype or 'string']
    for op in (None,) + OPS)
TRAIT_VALUES = {
    1: TEXTS + ('ERROR', 'vm-2', '5 ', 'x' * 255),
    2: INTEGERS + tuple(range(-3, 12)),
    3: FLOATS + (2.5, 3.0, 10.0, 10.5, -3.25),
    4: INSTANTS,
}
TRAIT_ITEMS = tuple((name, dtype, value) for name in TRAITS
                    for dtype, values in TRAIT_VALUES.items()
                    for value in values)
# An alarm without a project (it sees no event) one time in seven.
ALARM_HEADS = tuple(
    {'project_id': project, 'event_type': pattern, 'repeat_actions': repeat,
     'enabled': enabled, 'state': state, 'severity': severity}
    for project in PROJECTS * 2 + (None,)
    for pattern in PATTERNS
    for repeat in (False, True)
    for enabled in (True, True, True, False)
    for state in STATES
    for severity in ('low', 'critical'))


def _alarm(head, query):
    return dict(head, query=[dict(q) for q in query])


# Items on top-level fields or of type boolean (where Aodh fails, so that
# the comparison leaves them out) are drawn a quarter of the time.
_RARE = tuple(q for q in QUERY_ITEMS if not q['field'].startswith(
    'traits.') or q.get('type') == 'boolean')
_COMMON = tuple(q for q in QUERY_ITEMS if q not in _RARE)
query_items = st.sampled_from(_COMMON * 3 + _RARE)


def alarms(min_size=1, max_size=10):
    """Lists of alarm rows: dicts with Aodh's alarm columns."""
    return st.lists(st.builds(
        _alarm, st.sampled_from(ALARM_HEADS),
        st.lists(query_items, max_size=2)),
        min_size=min_size, max_size=max_size)


# The project traits an event carries: none, one, or both in either order,
# with values that may disagree (even empty), before or after the others.
PROJECT_TRAIT_SETS = (((),) + tuple(
    ((name, project),) for name in ('tenant_id', 'project_id')
    for project in PROJECTS) + tuple(
    ((first, p1), (second, p2))
    for first, second in (('tenant_id', 'project_id'),
                          ('project_id', 'tenant_id'))
    for p1 in PROJECTS for p2 in PROJECTS))


# What an event is besides its other traits, drawn in one step: its type,
# its project traits, whether they come first, its ``generated`` second.
EVENT_HEADS = tuple(
    (event_type, projects, first, second)
    for event_type in EVENT_TYPES
    for projects in PROJECT_TRAIT_SETS
    for first in (True, False)
    for second in (-1, 0, 1))


def _event(head, trait_items):
    event_type, projects, projects_first, second = head
    projects = [[name, 1, value] for name, value in projects]
    trait_list = [list(t) for t in trait_items]
    trait_list = (projects + trait_list if projects_first
                  else trait_list + projects)
    generated = datetime.datetime(2026, 11, 20, 10) + datetime.timedelta(
        seconds=second)
    return {'message_id': None, 'event_type': event_type,
            'generated': generated.isoformat(), 'traits': trait_list,
            'raw': {}, 'message_signature': 'not-checked'}


events = st.builds(_event, st.sampled_from(EVENT_HEADS),
                   st.lists(st.sampled_from(TRAIT_ITEMS), max_size=4))


def batches(max_batches=3, max_events=4):
    """Lists of batches of serialized events; message ids are unique."""
    return st.lists(st.lists(events, min_size=1, max_size=max_events),
                    min_size=1, max_size=max_batches).map(_number)


def _number(batch_list):
    count = 0
    for batch in batch_list:
        for message in batch:
            message['message_id'] = 'm-%d' % count
            count += 1
    return batch_list
