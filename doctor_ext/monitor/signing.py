"""Signed reports: one function to sign a report, one to verify it.

The monitor, ``doctor-report`` and any tool that sends a host maintenance
report sign it with a secret shared with the notification agents (as
Ceilometer signs its telemetry with ``[publisher] telemetry_secret``). A
signed report is the usual notification payload with two more top-level
keys::

    {...the report...,
     "signed_at": "2026-01-15T10:20:30.058213Z",   # when it was signed, UTC
     "signature": "<hex HMAC-SHA256>"}

The HMAC is over a canonical form of the report: the JSON text (keys
sorted, no blanks, ASCII) of::

    {"event_type": "compute.host.down",
     "signed_at": "2026-01-15T10:20:30.058213Z",
     "fields": {"hostname": "compute-1", "status": "down", ...}}

``fields`` are the :data:`SIGNED_FIELDS` of the event type, under the names
of the event traits Ceilometer makes of them
(``doctor_ext/data/doctor_event_definitions.yaml``), as text: a datetime as
``YYYY-MM-DDTHH:MM:SS.ffffff`` in UTC, anything else as ``str(value)`` cut
at 255 characters (as Ceilometer cuts text traits). A field that is missing
or null is left out. The sender builds the form from the payload
(:func:`sign`), the agent from the event's traits (:func:`verify`): a trait
changed, added or removed on the way makes the signature fail.

:func:`verify` checks the signature and the time window. Replays (a signed
report sent again) are for the caller, which keeps the memory of the
reports it has seen: :func:`replay_key` names a report.
"""

import datetime
import hashlib
import hmac
import json

from oslo_utils import timeutils

SIGNATURE = 'signature'
SIGNED_AT = 'signed_at'

# The payload path of each signed field, by trait name, per event type.
# The first path of each trait in the event definitions; a sender that
# signs must use these (e.g. ``host``, not ``hostname``, in a maintenance
# report).
_REPORT = {
    'hostname': 'details.hostname',
    'status': 'details.status',
    'monitor': 'details.monitor',
    'monitor_event_id': 'details.monitor_event_id',
    'cause': 'details.cause',
    'severity': 'details.severity',
    'fault_time': 'time',
}
_MAINTENANCE = {
    'host': 'host',
    'session_id': 'session_id',
    'state': 'state',
    'reason': 'reason',
    'window_start': 'window.start',
    'window_end': 'window.end',
    'project_id': 'project_id',
    'tenant_id': 'project_id',
}
SIGNED_FIELDS = {
    'compute.host.down': _REPORT,
    'compute.host.up': _REPORT,
    'maintenance.host': _MAINTENANCE,
    'maintenance.host.end': _MAINTENANCE,
}
# Traits of datetime type (the others are text).
DATETIME_FIELDS = frozenset(['fault_time', 'window_start', 'window_end'])
# What identifies one report of each event type: a second message with the
# same values is a replay. A Doctor report has its monitor_event_id; a
# maintenance report is one state of one host in one session.
REPLAY_FIELDS = {
    'compute.host.down': ('monitor_event_id',),
    'compute.host.up': ('monitor_event_id',),
    'maintenance.host': ('session_id', 'host', 'state'),
    'maintenance.host.end': ('session_id', 'host', 'state'),
}
MAX_TEXT = 255

# Reasons a report is refused (the counters are kept by these).
UNSIGNED = 'unsigned'
BAD_SIGNATURE = 'bad signature'
OUT_OF_WINDOW = 'outside the time window'
NO_ID = 'no report id'
REPLAYED = 'replayed'


class Refused(ValueError):
    """The report must not be acted on.

    :attr reason: one of the reason constants of this module
    """

    def __init__(self, reason, detail):
        super().__init__('%s: %s' % (reason, detail))
        self.reason = reason


def _utc_text(value):
    if not isinstance(value, datetime.datetime):
        value = timeutils.parse_isotime(str(value))
    return timeutils.normalize_time(value).strftime('%Y-%m-%dT%H:%M:%S.%f')


def _text(name, value):
    if name in DATETIME_FIELDS:
        return _utc_text(value)
    if isinstance(value, bytes):
        value = value.decode('utf-8')
    return str(value)[:MAX_TEXT]


def _lookup(payload, path):
    value = payload
    for key in path.split('.'):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def canonical(event_type, fields, signed_at):
    """The bytes that are signed, from ``{trait name: value}``.

    :raises KeyError: the event type is not one of :data:`SIGNED_FIELDS`
    :raises ValueError: a datetime field is not a time
    """
    names = SIGNED_FIELDS[event_type]
    text = {name: _text(name, fields[name]) for name in names
            if fields.get(name) is not None}
    return json.dumps({'event_type': event_type, 'signed_at': signed_at,
                       'fields': text}, sort_keys=True,
                      separators=(',', ':'), ensure_ascii=True).encode()


def _digest(secret, data):
    return hmac.new(secret.encode('utf-8'), data, hashlib.sha256).hexdigest()


def sign(secret, event_type, payload, now=None):
    """Return a copy of ``payload`` with ``signed_at`` and ``signature``.

    :param secret: the shared secret (a non-empty string)
    :param event_type: the notification's event type, one of
        :data:`SIGNED_FIELDS`
    :param payload: the notification payload (a dict)
    :param now: the signing time (a datetime, naive means UTC); now if None
    :raises ValueError: no secret, an event type that is not signed, or a
        datetime field that is not an ISO 8601 time
    """
    if not secret:
        raise ValueError('no secret to sign with')
    if event_type not in SIGNED_FIELDS:
        raise ValueError('%s reports are not signed (only %s)'
                         % (event_type, ', '.join(sorted(SIGNED_FIELDS))))
    signed_at = timeutils.normalize_time(
        now or timeutils.utcnow()).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    fields = {name: _lookup(payload, path)
              for name, path in SIGNED_FIELDS[event_type].items()}
    out = {k: v for k, v in payload.items() if k not in (SIGNATURE,
                                                         SIGNED_AT)}
    out[SIGNED_AT] = signed_at
    out[SIGNATURE] = _digest(secret, canonical(event_type, fields,
                                               signed_at))
    return out


def verify(secret, event_type, traits, window, now=None):
    """Check the signature and the age of a report, from its event traits.

    :param secret: the shared secret
    :param event_type: the event's type, one of :data:`SIGNED_FIELDS`
    :param traits: ``{name: value}`` of the event (``signature`` and
        ``signed_at`` among them when it is signed)
    :param window: seconds the signing time may be off the local clock,
        either way
    :param now: the local time (a datetime, naive means UTC); now if None
    :returns: the signing time (a naive UTC datetime)
    :raises Refused: unsigned, bad signature, or outside the window
    """
    signature = traits.get(SIGNATURE)
    signed_at = traits.get(SIGNED_AT)
    if not signature or not signed_at:
        raise Refused(UNSIGNED, 'no %s' % (SIGNED_AT if signature
                                           else SIGNATURE))
    try:
        data = canonical(event_type, traits, str(signed_at))
        when = timeutils.normalize_time(timeutils.parse_isotime(
            str(signed_at)))
    except ValueError as e:
        raise Refused(BAD_SIGNATURE, 'a signed field cannot be read: %s'
                      % e)
    if not hmac.compare_digest(_digest(secret, data), str(signature)):
        raise Refused(BAD_SIGNATURE, 'the signature does not match the '
                      'report and the secret')
    now = timeutils.normalize_time(now or timeutils.utcnow())
    skew = (now - when).total_seconds()
    if abs(skew) > window:
        raise Refused(OUT_OF_WINDOW, 'signed %.0f s %s, the window is %g s'
                      % (abs(skew), 'ago' if skew > 0 else 'ahead', window))
    return when


def replay_key(event_type, traits):
    """What identifies the report among the reports of its event type.

    :raises Refused: the report has no identifier (``monitor_event_id``,
        or a maintenance report's ``session_id``)
    """
    names = REPLAY_FIELDS[event_type]
    values = tuple(traits.get(name) for name in names)
    if not values[0]:
        raise Refused(NO_ID, 'no %s to tell it from a replay' % names[0])
    return (event_type,) + values
