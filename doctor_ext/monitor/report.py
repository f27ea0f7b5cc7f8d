"""The Doctor southbound host-fault report, and the sender that puts it on
the bus.

A report has the format of the OPNFV Doctor monitor -> inspector interface::

    {"time": "2024-05-01T12:00:00.123456Z",      # ISO 8601, UTC
     "type": "compute.host.down",                # or "compute.host.up"
     "details": {"hostname": "compute-1",
                 "status": "down",               # or "up"
                 "monitor": "ping",
                 "monitor_event_id": "<uuid>",
                 "cause": "no ICMP echo reply",  # or null
                 "severity": "critical"}}

:class:`Reporter` sends it as an oslo.messaging notification (driver
``messagingv2``) that ceilometer-agent-notification turns into an event with
our event definitions:

* ``event_type`` = ``report['type']``, ``payload`` = the report,
  ``publisher_id`` = ``[doctor_monitor] publisher_id``;
* topic ``[doctor_monitor] topic`` (``notifications``) on the exchange
  ``[doctor_monitor] exchange`` (``doctor``): the agent must list that
  exchange in ``[notification] notification_control_exchanges``;
* priority ``error`` for ``compute.host.down`` and ``info`` for
  ``compute.host.up``. Ceilometer's event endpoint converts both levels
  (``info`` and ``error``); ``error`` marks the fault for anything else that
  listens on the bus, ``info`` the recovery.

oslo.messaging sends a notification on the exchange that its transport
driver got as ``control_exchange`` when the transport was made (the
notification driver's Target carries only a topic), so the Reporter makes
its own transport with ``control_exchange`` set to ``[doctor_monitor]
exchange``; see :func:`get_transport`.

Each report is signed with ``[doctor_monitor] secret`` when it is sent
(:mod:`.signing`): the payload gets ``signed_at`` and ``signature``. A report
sent again (the ping monitor retries one that could not be sent) is signed
again, with a new ``signed_at``.

Sending never blocks for ever: the notifier retries a broker connection at
most ``retry`` times (``[doctor_monitor] send_retry``). oslo.messaging's
notifier does not raise when it gives up, it logs the error and returns; the
Reporter watches for that log record (in the sending thread only,
:mod:`.send_failures`) and raises :class:`ReportNotSent`. That works for
drivers that send in the calling thread (rabbit, fake); the kafka driver
sends in the background and its failures cannot be seen here.
"""

import datetime
# stdlib logging only to ask whether oslo.messaging logs its send errors;
# this module logs with oslo.log.
import logging
import socket
import uuid
import weakref

from oslo_config import cfg
from oslo_log import log
import oslo_messaging
from oslo_messaging import opts as messaging_opts
from oslo_utils import timeutils

from doctor_ext.monitor import send_failures
from doctor_ext.monitor import signing

LOG = log.getLogger(__name__)

GROUP = 'doctor_monitor'

DOWN = 'down'
UP = 'up'
STATUSES = (DOWN, UP)
EVENT_TYPES = {DOWN: 'compute.host.down', UP: 'compute.host.up'}
STATUS_OF_TYPE = {v: k for k, v in EVENT_TYPES.items()}

# Perceived severities of ETSI NFV IFA 005/006 / X.733 alarms, as Doctor uses
# them.
SEVERITY_CHOICES = [
    ('critical', 'the service is lost: immediate action needed'),
    ('major', 'the service is severely degraded'),
    ('minor', 'the service is degraded, not severely'),
    ('warning', 'a fault may come'),
    ('indeterminate', 'the effect on the service is unknown'),
    ('cleared', 'the fault is gone'),
]
SEVERITIES = tuple(name for name, _ in SEVERITY_CHOICES)
DEFAULT_SEVERITY = {DOWN: 'critical', UP: 'cleared'}

# Ceilometer stores text traits (and Aodh event fields) up to 255 characters.
MAX_TEXT = 255

PRIORITIES = {DOWN: 'error', UP: 'info'}

OPTS = [
    cfg.StrOpt('exchange', default='doctor',
               help='Exchange the reports are sent on. The notification '
                    'agent must listen on it: add it to [notification] '
                    'notification_control_exchanges in ceilometer.conf.'),
    cfg.StrOpt('topic', default='notifications',
               help='Notification topic the reports are sent on (the '
                    'agent listens on "notifications").'),
    cfg.StrOpt('publisher_id',
               sample_default='doctor-monitor.<hostname>',
               help='publisher_id of the notifications (becomes the '
                    "event's service trait). Unset: doctor-monitor.<the "
                    "monitor's hostname>."),
    cfg.StrOpt('severity', default='critical', choices=SEVERITY_CHOICES,
               help='Severity of the compute.host.down reports (a '
                    'compute.host.up report is "cleared").'),
    cfg.StrOpt('secret', secret=True,
               help='Secret the reports are signed with (HMAC-SHA256, '
                    'see doctor_ext.monitor.signing): the same as '
                    '[doctor_reports] secret of the notification agents. '
                    'Unset: reports are sent unsigned, and agents that '
                    'verify them (the default) refuse them.'),
    cfg.IntOpt('send_retry', default=3, min=0,
               help='How many times a report is retried when the broker '
                    'cannot be reached, before sending fails with an '
                    'error (0: no retry). With RabbitMQ the retries are '
                    '[oslo_messaging_rabbit] rabbit_retry_interval (1 s) '
                    'apart, growing by rabbit_retry_backoff (2 s): 3 '
                    'retries give up after about 9 s.'),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class InvalidReport(ValueError):
    """A report field is wrong; the message names the field."""


class ReportNotSent(RuntimeError):
    """The report could not be put on the bus."""


def _text(field, value, required=True):
    if value is None:
        if required:
            raise InvalidReport('%s is missing' % field)
        return None
    if not isinstance(value, str):
        raise InvalidReport('%s must be a string, not %s'
                            % (field, type(value).__name__))
    if required and not value.strip():
        raise InvalidReport('%s must not be empty' % field)
    if len(value) > MAX_TEXT:
        raise InvalidReport('%s is %d characters long, at most %d are '
                            'allowed' % (field, len(value), MAX_TEXT))
    return value


def _time(value):
    if value is None:
        when = timeutils.utcnow()
    elif isinstance(value, datetime.datetime):
        when = timeutils.normalize_time(value)
    elif isinstance(value, str):
        try:
            when = timeutils.normalize_time(timeutils.parse_isotime(value))
        except ValueError as e:
            raise InvalidReport('time %r is not an ISO 8601 date and time: '
                                '%s' % (value, e))
    else:
        raise InvalidReport('time must be an ISO 8601 string or a datetime, '
                            'not %s' % type(value).__name__)
    return when.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _build(hostname, status, monitor, monitor_event_id, cause, severity,
           time, prefix=''):
    hostname = _text(prefix + 'hostname', hostname)
    if status not in STATUSES:
        raise InvalidReport('%sstatus must be one of %s, not %r'
                            % (prefix, '/'.join(STATUSES), status))
    monitor = _text(prefix + 'monitor', monitor)
    if monitor_event_id is None:
        monitor_event_id = str(uuid.uuid4())
    monitor_event_id = _text(prefix + 'monitor_event_id', monitor_event_id)
    cause = _text(prefix + 'cause', cause, required=False)
    if severity is None:
        severity = DEFAULT_SEVERITY[status]
    if not isinstance(severity, str) or severity.lower() not in SEVERITIES:
        raise InvalidReport('%sseverity must be one of %s, not %r'
                            % (prefix, '/'.join(SEVERITIES), severity))
    return {
        'time': _time(time),
        'type': EVENT_TYPES[status],
        'details': {
            'hostname': hostname,
            'status': status,
            'monitor': monitor,
            'monitor_event_id': monitor_event_id,
            'cause': cause,
            'severity': severity.lower(),
        },
    }


def build_report(hostname, status=DOWN, monitor='ping', monitor_event_id=None,
                 cause=None, severity=None, time=None):
    """Return a Doctor host-fault report (a dict), validated.

    :param hostname: the failed (or recovered) host, as Nova names it
    :param status: ``down`` or ``up``
    :param monitor: the name of the monitor that found it
    :param monitor_event_id: identifier of this report; a new UUID if None
    :param cause: why, free text (optional)
    :param severity: one of :data:`SEVERITIES` (any case); ``critical`` for
        down and ``cleared`` for up if None
    :param time: when the fault was detected (datetime or ISO 8601 string,
        naive means UTC); now if None
    :raises InvalidReport: naming the bad field
    """
    return _build(hostname, status, monitor, monitor_event_id, cause,
                  severity, time)


def validate_report(report):
    """Check a report dict (e.g. one built elsewhere); return it normalized.

    :raises InvalidReport: naming the bad field (``details.hostname``...)
    """
    if not isinstance(report, dict):
        raise InvalidReport('a report must be a dict, not %s'
                            % type(report).__name__)
    details = report.get('details')
    if not isinstance(details, dict):
        raise InvalidReport('details is missing or not a dict')
    rtype = report.get('type')
    if rtype not in STATUS_OF_TYPE:
        raise InvalidReport('type must be one of %s, not %r'
                            % ('/'.join(EVENT_TYPES.values()), rtype))
    status = details.get('status')
    if status != STATUS_OF_TYPE[rtype]:
        raise InvalidReport('details.status %r does not match type %r'
                            % (status, rtype))
    return _build(details.get('hostname'), status, details.get('monitor'),
                  details.get('monitor_event_id'), details.get('cause'),
                  details.get('severity'), report.get('time'),
                  prefix='details.')


def default_publisher_id():
    return 'doctor-monitor.%s' % socket.gethostname()


def get_transport(conf, url=None, exchange=None):
    """A notification transport whose notifications go to our exchange.

    oslo.messaging takes the exchange of a notification from the transport
    (``control_exchange``, read when the transport is made), so the option
    is overridden for the making of this one transport and put back.

    :param url: transport URL; None reads ``[oslo_messaging_notifications]
        transport_url``, then ``[DEFAULT] transport_url``
    :param exchange: None reads ``[doctor_monitor] exchange``
    """
    register_opts(conf)
    if exchange is None:
        exchange = conf[GROUP].exchange
    register_transport_opts(conf)
    if conf.control_exchange == exchange:
        transport = oslo_messaging.get_notification_transport(conf, url=url)
    else:
        conf.set_override('control_exchange', exchange)
        try:
            transport = oslo_messaging.get_notification_transport(conf,
                                                                  url=url)
        finally:
            conf.clear_override('control_exchange')
    _exchange_of[transport] = exchange
    return transport


# The exchange each transport made by get_transport sends to.
_exchange_of = weakref.WeakKeyDictionary()


def register_transport_opts(conf):
    """Register oslo.messaging's [DEFAULT] transport_url and control_exchange.

    oslo.messaging registers them when it makes its first transport; the
    reporter reads control_exchange before, and a caller may want to set
    transport_url before. The options registered are oslo.messaging's own
    (from its list_opts), so its later registration is a no-op.
    """
    for group, opts in messaging_opts.list_opts():
        if group in (None, 'DEFAULT'):
            for opt in opts:
                if opt.dest in ('control_exchange', 'transport_url'):
                    conf.register_opt(opt)


class Reporter:
    """Send Doctor reports as notifications.

    :param conf: an oslo.config ConfigOpts (the [doctor_monitor] options are
        registered on it)
    :param transport: an oslo.messaging notification transport; None makes
        one with :func:`get_transport` (closed by :meth:`close`). A given
        transport keeps the exchange it was made with.
    """

    def __init__(self, conf, transport=None):
        register_opts(conf)
        self.conf = conf
        opts = conf[GROUP]
        self.exchange = opts.exchange
        self.topic = opts.topic
        self.severity = opts.severity
        self.retry = opts.send_retry
        self.publisher_id = opts.publisher_id or default_publisher_id()
        self._secret = opts.secret
        if not self._secret:
            LOG.warning('[%s] secret is not set: reports are sent unsigned '
                        'and agents that verify them refuse them', GROUP)
        self._own_transport = transport is None
        if transport is None:
            transport = get_transport(conf)
        else:
            sends_to = _exchange_of.get(transport)
            if sends_to is None:
                # Not made by get_transport: its conf's control_exchange
                # (when it was made) decides.
                register_transport_opts(transport.conf)
                sends_to = transport.conf.control_exchange
            if sends_to != self.exchange:
                LOG.warning('The transport given to the reporter sends to '
                            'the exchange %r, not [%s] exchange %r: make it '
                            'with doctor_ext.monitor.report.get_transport',
                            sends_to, GROUP, self.exchange)
        self.transport = transport
        self._notifier = oslo_messaging.Notifier(
            transport, publisher_id=self.publisher_id, driver='messagingv2',
            topics=[self.topic], retry=self.retry)
        self._failures = send_failures.send_failures()
        if not logging.getLogger(
                'oslo_messaging.notify.messaging').isEnabledFor(logging.ERROR):
            LOG.warning('oslo_messaging logs no errors: a report that cannot '
                        'be sent will not be noticed (lower its log level '
                        'to ERROR at least)')

    def report(self, hostname, status=DOWN, monitor='ping',
               monitor_event_id=None, cause=None, severity=None, time=None):
        """Build a report and send it; return its monitor_event_id.

        The severity of a down report defaults to ``[doctor_monitor]
        severity``.
        """
        if severity is None and status == DOWN:
            severity = self.severity
        return self.send(build_report(
            hostname, status=status, monitor=monitor,
            monitor_event_id=monitor_event_id, cause=cause,
            severity=severity, time=time))

    def send(self, report):
        """Send one report; return its monitor_event_id.

        :raises InvalidReport: the report is not valid
        :raises ReportNotSent: the broker could not take it (after
            ``send_retry`` retries)
        """
        report = validate_report(report)
        status = report['details']['status']
        priority = PRIORITIES[status]
        payload = report
        if self._secret:
            payload = signing.sign(self._secret, report['type'], report)
        with self._failures.watch() as caught:
            getattr(self._notifier, priority)({}, report['type'], payload)
        if caught:
            exc_info = next((r.exc_info for r in caught if r.exc_info),
                            None)
            why = (('%s: %s' % (type(exc_info[1]).__name__, exc_info[1]))
                   if exc_info else caught[0].getMessage())
            raise ReportNotSent(
                'report %s (%s for host %s) was not sent to exchange %r '
                'topic %r after %d retries: %s'
                % (report['details']['monitor_event_id'], report['type'],
                   report['details']['hostname'], self.exchange, self.topic,
                   self.retry, why))
        LOG.info('Sent %s for host %s (monitor_event_id %s)',
                 report['type'], report['details']['hostname'],
                 report['details']['monitor_event_id'])
        return report['details']['monitor_event_id']

    def close(self):
        if self._own_transport and self.transport is not None:
            self.transport.cleanup()
        self.transport = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
