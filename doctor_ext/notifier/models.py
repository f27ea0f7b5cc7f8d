"""What goes into the notifier and what comes out of it.

A :class:`Notification` is one alarm notification for one action URL; a
:class:`Delivery` is its outcome, the value of the future that
``HttpNotifier.submit`` returns. A Delivery is final: delivered, or given up
(failed after its retries, refused by the egress policy, dropped at a queue
bound, or cut by a stop), with an error that names the masked URL.
"""

import json
import time

from doctor_ext.notifier import masking

# Delivery.outcome values.
DELIVERED = 'delivered'
FAILED = 'failed'
REFUSED = 'refused'
DROPPED = 'dropped'


def describe(exc):
    """``ExceptionName: text``, for error messages."""
    text = str(exc)
    name = type(exc).__name__
    return '%s: %s' % (name, text) if text else name


class Notification:
    """One alarm notification for one action URL."""

    __slots__ = ('action', 'alarm_id', 'alarm_name', 'severity', 'previous',
                 'current', 'reason', 'reason_data', 'project_id', '_body')

    def __init__(self, action, alarm_id, alarm_name=None, severity=None,
                 previous=None, current=None, reason=None, reason_data=None,
                 project_id=None, body=None):
        self.action = action
        self.alarm_id = alarm_id
        self.alarm_name = alarm_name
        self.severity = severity
        self.previous = previous
        self.current = current
        self.reason = reason
        self.reason_data = reason_data if reason_data is not None else {}
        self.project_id = project_id
        # The encoded payload, when the caller has it already (the outbox
        # row's, or another action's of the same alarm and event).
        self._body = body

    def body(self):
        """The payload as the JSON bytes POSTed, encoded once."""
        if self._body is None:
            self._body = json.dumps(self.payload(), default=str).encode(
                'utf-8')
        return self._body

    def payload(self):
        """The body Aodh's REST notifier posts (same keys, same order)."""
        return {'alarm_name': self.alarm_name, 'alarm_id': self.alarm_id,
                'severity': self.severity, 'previous': self.previous,
                'current': self.current, 'reason': self.reason,
                'reason_data': self.reason_data}

    def __repr__(self):
        return ('<Notification alarm_id=%s current=%s action=%s>'
                % (self.alarm_id, self.current,
                   masking.mask_url(self.action)))


class Delivery:
    """The outcome of one notification.

    ``ok``: delivered (a 2xx answer, or the Aodh plugin returned);
    ``outcome``: ``delivered``, ``failed`` (no 2xx after the retries, or
    the URL cannot be delivered to), ``refused`` (by the egress policy) or
    ``dropped`` (at a queue bound, never sent);
    ``status``: the last HTTP status received (None if none);
    ``attempts``: POSTs tried (0 when nothing could be sent);
    ``error``: why it failed, naming the masked URL, or None;
    ``submitted_at``, ``sent_at``, ``finished_at``: ``time.monotonic()``
    when submitted, when the first attempt started and when it ended;
    ``url``: the masked action URL; ``request_id``: the
    x-openstack-request-id sent (the same for every attempt).
    """

    __slots__ = ('ok', 'status', 'attempts', 'error', 'sent_at',
                 'finished_at', 'submitted_at', 'url', 'alarm_id',
                 'request_id', 'outcome')

    def __init__(self, ok, status=None, attempts=0, error=None, sent_at=None,
                 finished_at=None, submitted_at=None, url=None,
                 alarm_id=None, request_id=None, outcome=None):
        now = time.monotonic()
        self.ok = ok
        self.status = status
        self.attempts = attempts
        self.error = error
        self.finished_at = now if finished_at is None else finished_at
        self.sent_at = self.finished_at if sent_at is None else sent_at
        self.submitted_at = (self.sent_at if submitted_at is None
                             else submitted_at)
        self.url = url
        self.alarm_id = alarm_id
        self.request_id = request_id
        self.outcome = outcome or (DELIVERED if ok else FAILED)

    @property
    def latency(self):
        """Seconds from submit() to the end of the delivery."""
        return self.finished_at - self.submitted_at

    def __repr__(self):
        return ('<Delivery ok=%s outcome=%s status=%s attempts=%s '
                'alarm_id=%s url=%s error=%s>' % (
                    self.ok, self.outcome, self.status, self.attempts,
                    self.alarm_id, self.url, self.error))
