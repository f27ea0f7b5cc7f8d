"""Hypothesis strategies for bad input: notifications and alarm rules.

The notifications look like what reaches the agent from careless or broken
producers: the event types doctor-ext handles (and random ones), payloads
of the wrong types, missing or extra fields, huge strings, deep nesting,
lone surrogates and other odd text. They are drawn in batches with
:func:`draw` (one Hypothesis run), so that 10,000 cost seconds.
"""

import functools
import random

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import settings
from hypothesis import strategies as st

OUR_TYPES = ('compute.host.down', 'compute.host.up', 'service.update',
             'compute.instance.update', 'compute.instance.create.end',
             'compute.instance.delete.end', 'maintenance.host',
             'maintenance.host.end')
FIELDS = ('time', 'type', 'details', 'hostname', 'hostName', 'host',
          'nova_object.data', 'instance_id', 'tenant_id', 'user_id',
          'state', 'old_state', 'launched_at', 'deleted_at', 'memory_mb',
          'vcpus', 'forced_down', 'disabled', 'last_seen_up', 'window',
          'start', 'end', 'monitor_event_id', 'severity', 'cause',
          'session_id', 'project_id')
PRIORITIES = ('info', 'error', 'warn', 'critical', 'audit', 'debug',
              'sample')

odd_text = st.sampled_from([
    '\udcff', '\ud800x', '\x00', '\x1b[31m', '\u202eevil', '\ufffd',
    '\U0001f4a9' * 3, 'caf\u00e9', '\r\nInjected: header', '%s%n%x',
    "'; DROP TABLE alarm; --", '../../etc/passwd', '{{7*7}}',
    '2026-13-45T25:61:61', '9999-99-99', '0001-01-01T00:00:00+14:00',
    'NaN', '1e999', '-0', '', ' ', 'true', 'TRUE', 'yes']) | st.text(
    max_size=24)
scalars = st.one_of(st.none(), st.booleans(),
                    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    odd_text)
huge = st.integers(256, 20000).map(lambda n: 'x' * n)


def _nest(children):
    return st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=8), children, max_size=3)


values = st.recursive(scalars, _nest, max_leaves=6)
deep = st.integers(20, 300).map(lambda depth: functools.reduce(
    lambda inner, _: {'a': [inner]}, range(depth), 'leaf'))
field_values = st.one_of(values, values, values, deep, huge)
shaped = st.tuples(
    st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=8),
    st.fixed_dictionaries({}, optional={
        'details': st.dictionaries(st.sampled_from(FIELDS), field_values,
                                   max_size=6) | values,
        'nova_object.data': st.dictionaries(st.sampled_from(FIELDS),
                                            field_values, max_size=6),
        'window': st.dictionaries(st.sampled_from(('start', 'end')),
                                  field_values) | values,
    })).map(lambda parts: dict(parts[0], **parts[1]))
payloads = st.one_of(shaped, shaped, shaped, values, deep)
event_types = st.one_of(st.sampled_from(OUR_TYPES), st.sampled_from(
    OUR_TYPES), odd_text, huge)
notifications = st.fixed_dictionaries({
    'event_type': event_types,
    'payload': payloads,
    'priority': st.sampled_from(PRIORITIES),
    'publisher_id': values,
    'ctxt': st.dictionaries(st.text(max_size=10), values, max_size=3),
})


def draw(strategy, count, batch=50):
    """``count`` examples of ``strategy``, drawn in one Hypothesis run."""
    out = []

    @settings(max_examples=-(-count // batch) + 2, database=None,
              phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy, min_size=batch, max_size=batch))
    def run(items):
        if len(out) < count:
            out.extend(items[:count - len(out)])
    run()
    if len(out) < count:
        raise RuntimeError('Hypothesis drew %d examples of %d'
                           % (len(out), count))
    return out


# Event alarm rules as aodh-api accepts them (its voluptuous schema) and
# a little beyond: what users can store.
rule_fields = st.one_of(
    st.sampled_from(('traits.state', 'traits.instance_id', 'traits.host',
                     'event_type', 'message_id', 'generated', 'traits.',
                     'traits', 'foo', '', 'traits.a.b', "traits.'x'")),
    st.from_regex(r"\A[a-zA-Z.',0-9_-]{0,20}\Z"))
rule_items = st.fixed_dictionaries({
    'field': rule_fields,
    'op': st.sampled_from(('eq', 'ne', 'lt', 'le', 'gt', 'ge')),
    'value': odd_text | st.integers().map(str),
    'type': st.sampled_from(('string', 'integer', 'float', 'boolean', '',
                             'datetime')),
})
event_rules = st.fixed_dictionaries({
    'event_type': st.sampled_from(('*', 'compute.instance.update',
                                   'compute.*', '[', '*.*', '?', '')) |
    odd_text,
    'query': st.lists(rule_items, max_size=4),
})


def notification_mix(count, pool=500, seed=None):
    """``count`` bad notifications, ``pool`` of them drawn by Hypothesis.

    The rest are recombined from their parts (event type, payload,
    priority, publisher, context): drawing each costs milliseconds.
    """
    drawn = draw(notifications, pool, batch=10)
    rng = random.Random(seed)
    out = list(drawn)
    while len(out) < count:
        out.append({part: rng.choice(drawn)[part] for part in (
            'event_type', 'payload', 'priority', 'publisher_id', 'ctxt')})
    return out
