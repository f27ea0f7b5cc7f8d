"""Aodh ``event`` alarm rules, parsed once into something cheap to match.

Semantics follow Aodh's event evaluator (``aodh/evaluator/event.py``):

* ``rule.event_type`` is an fnmatch pattern on the event type;
* every query item must hold (AND); ops ``eq ne lt le gt ge``;
* a ``traits.X`` item compares the event's trait X, typed by the trait's
  own type, with the query value converted to the query's ``type``
  (string when unset), as Python compares them: an integer trait equals
  no string, ``5.5 gt 5`` holds, a missing trait is None;
* values that cannot be ordered (a number and a string, a missing trait)
  fail every ordering op; ``ne`` between unlike values holds;
* an alarm only sees events of its own project (:mod:`.events`).

Where Aodh fails, this module does what the API accepted instead:

* a query on a field that is not ``traits.*`` (``event_type``,
  ``message_id``, ``generated``) compares the field's text with the query
  value's text, whatever the query type (Aodh raises ``TypeError`` and
  never fires);
* a query of type ``boolean`` reads the trait as a boolean word (``true``,
  ``no``, ``1``...); a trait that is not one counts as a value of another
  type, so only ``ne`` holds (Aodh raises ``KeyError`` and drops the
  batch).

An alarm that cannot be parsed raises :class:`InvalidAlarm`; the caller logs
it and keeps every other alarm.
"""

import operator
import sys

from oslo_utils import strutils

from doctor_ext.evaluator import events

OPS = {
    'eq': operator.eq, 'ne': operator.ne, 'lt': operator.lt,
    'le': operator.le, 'gt': operator.gt, 'ge': operator.ge,
}
QUERY_TYPES = ('', 'string', 'integer', 'float', 'boolean', 'datetime')
TOP_LEVEL_FIELDS = ('event_type', 'message_id', 'generated')
ALARM = 'alarm'


class InvalidAlarm(ValueError):
    """The alarm cannot be evaluated; the message says why."""


def _to_bool(value):
    if isinstance(value, bool):
        return value
    return strutils.bool_from_string(str(value), strict=True)


_NOT_A_BOOLEAN = object()


def _boolean_word(value):
    """The trait read as a boolean, or a marker unlike any boolean."""
    try:
        return _to_bool(value)
    except ValueError:
        return _NOT_A_BOOLEAN


def convert(value, qtype):
    """Convert ``value`` to the query type; ValueError if it cannot be."""
    if qtype in ('', 'string', None):
        return value if isinstance(value, str) else str(value)
    if qtype == 'integer':
        if isinstance(value, float) and not value.is_integer():
            raise ValueError('%r is not an integer' % value)
        return int(value)
    if qtype == 'float':
        return float(value)
    if qtype == 'boolean':
        return _to_bool(value)
    if qtype == 'datetime':
        return events.parse_datetime(value)
    raise ValueError('unknown type %r' % qtype)


_ITEM_KEYS = frozenset(('field', 'op', 'type', 'value'))
_SAME = object()
# Bound of the tables of shared parts of alarms (conditions, kinds,
# action tuples).
_SHARED_MAX = 100000


class _Kind:
    """What conditions written the same way share: all but the value."""

    __slots__ = ('field', 'trait', 'op', 'op_name', 'qtype', 'shape')

    def __init__(self, field, trait, op_name, qtype, shape):
        self.field = field
        self.trait = trait
        self.op_name = op_name
        self.op = OPS[op_name]
        self.qtype = qtype
        self.shape = shape


# One _Kind per (field, op, type, shape): a few per deployment.
_KINDS = {}


class Condition:
    """One query item: ``field op value``."""

    __slots__ = ('kind', 'value', 'raw')

    def __init__(self, item):
        if not isinstance(item, dict):
            raise InvalidAlarm('query item is not a mapping: %r' % (item,))
        field = item.get('field')
        if not isinstance(field, str) or not field:
            raise InvalidAlarm('query item has no field: %r' % (item,))
        op_name = item.get('op') or 'eq'
        if op_name not in OPS:
            raise InvalidAlarm('query on %s has unknown op %r'
                               % (field, op_name))
        qtype = item.get('type') or ''
        if qtype not in QUERY_TYPES:
            raise InvalidAlarm('query on %s has unknown type %r'
                               % (field, qtype))
        if field.startswith('traits.'):
            trait = field[7:]
            if not trait:
                raise InvalidAlarm('query field %r names no trait' % field)
        elif field in TOP_LEVEL_FIELDS:
            trait = None
        else:
            raise InvalidAlarm('query field %r is neither traits.<name> nor '
                               'one of %s' % (field, ', '.join(
                                   TOP_LEVEL_FIELDS)))
        if 'value' not in item:
            raise InvalidAlarm('query on %s has no value' % field)
        try:
            if trait is None:
                # A top-level field is compared as text, whatever the type.
                self.value = convert(item['value'], 'string')
            else:
                self.value = convert(item['value'], qtype)
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidAlarm('query on %s: value %r is not %s (%s)'
                               % (field, item['value'], qtype or 'string',
                                  e))
        if isinstance(self.value, str) and len(self.value) <= 24:
            # Shared by every alarm on the same short value ('error', a
            # host); ids (one alarm each) would only grow the intern table.
            self.value = sys.intern(self.value)
        # The item as Aodh stored it (for the reason text) is rebuilt on
        # demand from the fields above and a shape shared by every alarm
        # written the same way, not kept: a decoded JSON dict per
        # condition would double the memory of 100,000 alarms.
        shape = (tuple(sorted(item)), item.get('op'), item.get('type'))
        if set(shape[0]) <= _ITEM_KEYS and all(
                v is None or isinstance(v, str) for v in shape[1:]):
            raw = item['value']
            same = type(raw) is type(self.value) and raw == self.value
            self.raw = _SAME if same else raw
        else:
            shape, self.raw = None, dict(item)
        key = (field, op_name, qtype, shape)
        kind = _KINDS.get(key)
        if kind is None:
            kind = _Kind(sys.intern(field),
                         None if trait is None else sys.intern(trait),
                         sys.intern(op_name), sys.intern(qtype), shape)
            if len(_KINDS) < _SHARED_MAX:
                _KINDS[key] = kind
        self.kind = kind

    field = property(lambda self: self.kind.field)
    trait = property(lambda self: self.kind.trait)
    op = property(lambda self: self.kind.op)
    op_name = property(lambda self: self.kind.op_name)
    qtype = property(lambda self: self.kind.qtype)
    shape = property(lambda self: self.kind.shape)

    def holds(self, event):
        kind = self.kind
        if kind.trait is not None:
            actual = event.traits.get(kind.trait)
            if kind.qtype == 'boolean' and actual is not None:
                actual = _boolean_word(actual)
                if actual is _NOT_A_BOOLEAN:
                    return kind.op_name == 'ne'
        else:
            actual = event.field_text(kind.field)
        try:
            # As Aodh: the typed trait against the typed query value.
            return kind.op(actual, self.value)
        except TypeError:
            # Not orderable (unlike types, None): Aodh raises, never fires.
            return False

    def as_query(self):
        if self.shape is None:
            return dict(self.raw)
        keys, op, qtype = self.shape
        item = {'field': self.field, 'op': op, 'type': qtype,
                'value': self.value if self.raw is _SAME else self.raw}
        return {k: item[k] for k in keys}


class Alarm:
    """An Aodh event alarm, compiled. ``state`` is this process's view."""

    __slots__ = ('alarm_id', 'project_id', 'user_id', 'name', 'severity',
                 'event_type', 'conditions', 'repeat_actions',
                 'actions', 'state', 'key_condition', 'claim_event')

    @property
    def wildcard(self):
        """Is the event type a pattern?

        Computed, not kept: a slot is 8 bytes per alarm.
        """
        return any(c in self.event_type for c in '*?[')

    @property
    def index_key(self):
        """(trait, value) the index files the alarm under, or None."""
        cond = self.key_condition
        return None if cond is None else (cond.trait, cond.value)

    def matches(self, event):
        for cond in self.conditions:
            if not cond.holds(event):
                return False
        return True

    @property
    def fired_and_no_repeat(self):
        return self.state == ALARM and not self.repeat_actions

    def query(self):
        return [c.as_query() for c in self.conditions]

    def __repr__(self):
        return '<Alarm %s %s project=%s>' % (
            self.alarm_id, self.event_type, self.project_id)


def _get(alarm, name, default=None):
    if isinstance(alarm, dict):
        return alarm.get(name, default)
    return getattr(alarm, name, default)


def claim_event_of(state_reason):
    """The message_id of the event that moved an alarm to ``alarm``.

    Read from the stored ``state_reason``, which is Aodh's reason text
    (``Event <id=...,event_type=...> hits the query ...``); None if the
    reason is another one.
    """
    if not isinstance(state_reason, str) or not state_reason.startswith(
            _REASON_PREFIX):
        return None
    end = state_reason.find(',event_type=', len(_REASON_PREFIX))
    return state_reason[len(_REASON_PREFIX):end] if end > 0 else None


_REASON_PREFIX = 'Event <id='


def _key_condition(conditions):
    """The condition an alarm is indexed by: an ``eq`` on a string trait.

    Only a text trait equal to the value satisfies such a condition (an
    integer 5 is not ``"5"``), so looking the trait's value up in a dict of
    the values is exact.
    """
    best = None
    for cond in conditions:
        if (cond.op_name == 'eq' and cond.trait is not None and
                cond.qtype in ('', 'string')):
            if cond.trait == 'instance_id':
                return cond
            if best is None:
                best = cond
    return best


# Conditions on short values ('state eq error', a host), one object for
# every alarm that has the same one; bounded.
_SHARED = {}
_ACTIONS = {}


def _shared(cond):
    """``cond``, or the equal condition another alarm already holds."""
    if cond.shape is None or cond.raw is not _SAME or not isinstance(
            cond.value, (str, int, float, bool)) or (
            isinstance(cond.value, str) and len(cond.value) > 24):
        return cond
    key = (cond.kind, type(cond.value), cond.value)
    kept = _SHARED.get(key)
    if kept is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        kept = _SHARED[key] = cond
    return kept


def compile_alarm(alarm):
    """Compile an Aodh alarm (storage model or dict) into an :class:`Alarm`.

    :raises InvalidAlarm: naming what is wrong with the alarm.
    """
    alarm_id = _get(alarm, 'alarm_id')
    if not isinstance(alarm_id, str) or not alarm_id:
        raise InvalidAlarm('alarm has no alarm_id')
    if _get(alarm, 'type', 'event') != 'event':
        raise InvalidAlarm('alarm %s is of type %r, not event'
                           % (alarm_id, _get(alarm, 'type')))
    rule = _get(alarm, 'rule') or {}
    if not isinstance(rule, dict):
        raise InvalidAlarm('alarm %s: rule is not a mapping' % alarm_id)
    event_type = rule.get('event_type') or '*'
    if not isinstance(event_type, str):
        raise InvalidAlarm('alarm %s: event_type %r is not a string'
                           % (alarm_id, event_type))
    query = rule.get('query') or []
    if not isinstance(query, list):
        raise InvalidAlarm('alarm %s: query is not a list' % alarm_id)
    try:
        conditions = tuple(_shared(Condition(item)) for item in query)
    except InvalidAlarm as e:
        raise InvalidAlarm('alarm %s: %s' % (alarm_id, e))
    project_id = _get(alarm, 'project_id')
    compiled = Alarm()
    compiled.alarm_id = alarm_id
    # An event sees the alarms of exactly its project ('' when it names
    # none), as in Aodh; an alarm without a project (NULL) sees no event.
    compiled.project_id = (sys.intern(project_id)
                           if isinstance(project_id, str) else None)
    user_id = _get(alarm, 'user_id')
    compiled.user_id = (sys.intern(user_id) if isinstance(user_id, str)
                        else user_id)
    compiled.name = _get(alarm, 'name') or alarm_id
    compiled.severity = sys.intern(_get(alarm, 'severity') or 'low')
    compiled.event_type = sys.intern(event_type)
    compiled.conditions = conditions
    compiled.repeat_actions = bool(_get(alarm, 'repeat_actions', False))
    actions = tuple(sys.intern(a) for a in
                    (_get(alarm, 'alarm_actions') or ())
                    if isinstance(a, str))
    # Alarms with the same actions share one tuple.
    compiled.actions = _ACTIONS.setdefault(actions, actions) \
        if len(_ACTIONS) < _SHARED_MAX else actions
    compiled.state = sys.intern(_get(alarm, 'state') or 'insufficient data')
    compiled.claim_event = (claim_event_of(_get(alarm, 'state_reason'))
                            if compiled.state == ALARM else None)
    compiled.key_condition = _key_condition(conditions)
    return compiled
