"""Events as the evaluator sees them: parsed once, typed, validated.

An event reaches the evaluator in one of two shapes:

* a ``ceilometer.event.models.Event`` handed over in-process by the
  publishers (the agent's only source of events: none is read back from
  the bus);
* an event built by doctor-ext itself (the inspector's per-instance fault
  events) through :func:`make_event`.

Both become an :class:`Event`. :func:`from_serialized` reads the serialized
form back (:meth:`Event.serialize`, the ``reason_data['event']`` of a
notification, the payload of Ceilometer's ``notifier://`` publisher); it
checks no signature. Anything that cannot be one raises
:class:`InvalidEvent` with a message naming what was wrong; the caller logs it
and drops that event alone.

As in Aodh, a trait's value is typed by the trait's own type (text, integer,
float, datetime), and the event's project is whichever of the ``tenant_id``
and ``project_id`` traits comes last in the trait list, even an empty one
(``''`` when it has neither). A serialized event is handed on to the
consumers (``reason_data``) exactly as it was received.
"""

import datetime
import uuid

from oslo_utils import timeutils

# Ceilometer's trait type numbers (ceilometer.event.models.Trait).
NONE_TYPE = 0
TEXT_TYPE = 1
INT_TYPE = 2
FLOAT_TYPE = 3
DATETIME_TYPE = 4

TYPE_NAMES = {
    'none': NONE_TYPE, 'string': TEXT_TYPE, 'integer': INT_TYPE,
    'float': FLOAT_TYPE, 'datetime': DATETIME_TYPE,
}

# Longest event_type / trait name we accept; Aodh and Ceilometer store 255.
MAX_NAME_LENGTH = 255
MAX_TRAITS = 1024
# Ceilometer cuts text traits at 255 characters; events from the bus are
# held to the same limit.
MAX_TEXT = 255
PROJECT_TRAITS = ('tenant_id', 'project_id')


class InvalidEvent(ValueError):
    """The event cannot be evaluated; the message says why."""


def parse_datetime(value):
    """Return a naive UTC datetime from an ISO 8601 string or a datetime."""
    if isinstance(value, datetime.datetime):
        return timeutils.normalize_time(value)
    return timeutils.normalize_time(timeutils.parse_isotime(str(value)))


def _typed(name, dtype, value):
    if isinstance(dtype, str):
        if dtype not in TYPE_NAMES:
            raise InvalidEvent('trait %r has unknown type %r' % (name, dtype))
        dtype = TYPE_NAMES[dtype]
    try:
        if dtype == INT_TYPE:
            return int(value)
        if dtype == FLOAT_TYPE:
            return float(value)
        if dtype == DATETIME_TYPE:
            return parse_datetime(value)
        if dtype in (TEXT_TYPE, NONE_TYPE):
            if isinstance(value, bytes):
                value = value.decode('utf-8')
            elif not isinstance(value, str):
                value = str(value)
            return value[:MAX_TEXT]
    except UnicodeDecodeError:
        raise InvalidEvent('trait %r: value is not valid UTF-8' % name)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidEvent('trait %r: value %r is not of type %s (%s)'
                           % (name, _short(value), dtype, e))
    raise InvalidEvent('trait %r has unknown type %r' % (name, dtype))


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _check_name(what, value):
    if not isinstance(value, str) or not value:
        raise InvalidEvent('%s is missing or not a string: %s'
                           % (what, _short(value)))
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidEvent('%s is longer than %d characters'
                           % (what, MAX_NAME_LENGTH))


class Event:
    """One event with typed traits, ready for matching."""

    __slots__ = ('message_id', 'event_type', 'generated', 'traits',
                 'trait_types', 'project', 'raw', 'received')

    def __init__(self, message_id, event_type, generated, traits,
                 trait_types, raw=None, project=None, received=None):
        """``traits`` in the order of the event's trait list.

        :param project: the event's project; by default the value of
            whichever of ``tenant_id``/``project_id`` comes last in
            ``traits`` (``''`` when neither is there).
        :param received: the serialized event as it arrived, handed on
            unchanged in ``reason_data``.
        """
        _check_name('message_id', message_id)
        _check_name('event_type', event_type)
        self.message_id = message_id
        self.event_type = event_type
        self.generated = generated
        self.traits = traits
        self.trait_types = trait_types
        self.raw = raw or {}
        if project is None:
            project = ''
            for name, value in traits.items():
                if name in PROJECT_TRAITS:
                    project = value
        self.project = project
        self.received = received

    def field_text(self, field):
        """A top-level field (``event_type``...) as text; None if unset."""
        if field == 'event_type':
            return self.event_type
        if field == 'message_id':
            return self.message_id
        if field == 'generated':
            generated = self.generated
            if isinstance(generated, datetime.datetime):
                return generated.isoformat()
            return None if generated is None else str(generated)
        return None

    def serialize(self):
        """The event as Aodh puts it in ``reason_data['event']``.

        A serialized event is given back as it was received (Aodh hands on
        the message aodh-listener got); the others in Ceilometer's
        serialized form.
        """
        if self.received is not None:
            return self.received
        generated = self.generated
        if isinstance(generated, datetime.datetime):
            generated = generated.isoformat()
        traits = []
        for name, value in self.traits.items():
            dtype = self.trait_types.get(name, TEXT_TYPE)
            if isinstance(value, datetime.datetime):
                value = value.isoformat()
            traits.append([name, dtype, value])
        return {'message_id': self.message_id,
                'event_type': self.event_type,
                'generated': generated,
                'traits': traits,
                'raw': self.raw}

    def __repr__(self):
        return '<Event %s %s project=%s>' % (self.event_type,
                                             self.message_id, self.project)


def _build(message_id, event_type, generated, trait_list, raw,
           received=None):
    if not isinstance(trait_list, (list, tuple)):
        raise InvalidEvent('traits is not a list: %s' % _short(trait_list))
    if len(trait_list) > MAX_TRAITS:
        raise InvalidEvent('event has %d traits, more than %d'
                           % (len(trait_list), MAX_TRAITS))
    traits = {}
    types = {}
    project = ''
    for item in trait_list:
        if isinstance(item, (list, tuple)) and len(item) == 3:
            name, dtype, value = item
        elif hasattr(item, 'name') and hasattr(item, 'dtype'):
            name, dtype, value = item.name, item.dtype, item.value
        else:
            raise InvalidEvent('trait is not [name, type, value]: %s'
                               % _short(item))
        _check_name('trait name', name)
        value = _typed(name, dtype, value)
        traits[name] = value
        types[name] = TYPE_NAMES.get(dtype, dtype)
        if name in PROJECT_TRAITS:
            # The last one in the list, even empty, as in Aodh (a name
            # given twice keeps its first place in ``traits``).
            project = value
    return Event(message_id, event_type, generated, traits, types, raw,
                 project=project, received=received)


def from_serialized(message):
    """Build an Event from the bus/serialized form (aodh-listener's input)."""
    if not isinstance(message, dict):
        raise InvalidEvent('event is not a mapping: %s' % _short(message))
    raw = message.get('raw')
    return _build(message.get('message_id'), message.get('event_type'),
                  message.get('generated'), message.get('traits', []),
                  raw if isinstance(raw, dict) else {}, received=message)


def from_ceilometer(event):
    """Build an Event from a ``ceilometer.event.models.Event``."""
    try:
        return _build(event.message_id, event.event_type, event.generated,
                      event.traits or [], getattr(event, 'raw', {}) or {})
    except AttributeError as e:
        raise InvalidEvent('not a Ceilometer event: %s' % e)


def make_event(event_type, traits, generated=None, message_id=None):
    """Build an Event from ``{name: value}``; types follow the values."""
    typed = {}
    types = {}
    for name, value in traits.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value, dtype = str(value).lower(), TEXT_TYPE
        elif isinstance(value, int):
            dtype = INT_TYPE
        elif isinstance(value, float):
            dtype = FLOAT_TYPE
        elif isinstance(value, datetime.datetime):
            value, dtype = timeutils.normalize_time(value), DATETIME_TYPE
        else:
            value, dtype = str(value), TEXT_TYPE
        typed[name] = value
        types[name] = dtype
    return Event(message_id or str(uuid.uuid4()), event_type,
                 generated or timeutils.utcnow().isoformat(), typed, types)
