"""Ceilometer's event pipeline, with bad notifications dropped, not looped.

Ceilometer's ``event`` pipeline manager turns each notification into an
event and hands it to the sinks' publishers. Any exception on the way, with
``[notification] ack_on_event_error = False`` (which doctor-ext needs, so
that an event arriving before the alarms are loaded is retried), requeues
the notification. A notification the event converter cannot convert (an
``event_type`` that is not a string, a missing or malformed ``timestamp``,
a typed trait of a stock definition whose value is not of its type) fails
the same way every time: it comes back at once, for ever, and the agent
logs nothing.

``doctor_event`` (entry point ``ceilometer.notification.pipeline``) is the
same manager with one change to its endpoint: a conversion error drops that
notification alone, logged with its message id, event type and the error;
a publisher's error still requeues (or is acknowledged, as the option
says), logged with the message id. A notification requeued more often than
the broker's delivery limit is dead-lettered by the broker and logged by
:mod:`doctor_ext.pipeline.dead_letter`, which this manager starts. Select
it in ceilometer.conf::

    [notification]
    pipelines = meter
    pipelines = doctor_event
"""

from ceilometer.pipeline import event as ceilometer_event
from oslo_log import log
import oslo_messaging

from doctor_ext.pipeline import dead_letter

LOG = log.getLogger(__name__)

NAME = 'doctor_event'


def _describe(notification):
    """(message_id, event_type) for the log, whatever the message holds."""
    try:
        message_id = notification['metadata']['message_id']
    except (KeyError, TypeError):
        message_id = None
    try:
        event_type = notification['event_type']
    except (KeyError, TypeError):
        event_type = None
    return str(message_id)[:64], repr(event_type)[:100]


class EventEndpoint(ceilometer_event.EventEndpoint):

    def process_notifications(self, priority, notifications):
        for notification in notifications:
            try:
                event = self.event_converter.to_event(priority, notification)
            except Exception as e:
                message_id, event_type = _describe(notification)
                LOG.error('Dropping notification %(id)s (event_type '
                          '%(type)s): it cannot be converted to an event: '
                          '%(cls)s: %(error)s',
                          {'id': message_id, 'type': event_type,
                           'cls': e.__class__.__name__,
                           'error': str(e)[:200]})
                continue
            if event is None:
                continue
            try:
                with self.publisher as publish:
                    publish(event)
            except Exception as e:
                if not self.conf.notification.ack_on_event_error:
                    message_id, event_type = _describe(notification)
                    LOG.warning('Requeueing notification %(id)s (event_type '
                                '%(type)s): a publisher failed: %(cls)s',
                                {'id': message_id, 'type': event_type,
                                 'cls': e.__class__.__name__})
                    return oslo_messaging.NotificationResult.REQUEUE
                LOG.exception('Fail to process a notification')
        return oslo_messaging.NotificationResult.HANDLED


class EventPipelineManager(ceilometer_event.EventPipelineManager):
    """Ceilometer's event pipeline manager with :class:`EventEndpoint`."""

    def __init__(self, conf):
        super().__init__(conf)
        if 'event' in conf.notification.pipelines:
            # Both managers read the same event pipeline file: every event
            # would reach every publisher twice.
            LOG.error('[notification] pipelines names both "event" and '
                      '"%s": every event is published twice. Remove '
                      '"event".', NAME)

    def get_main_endpoints(self):
        # Ceilometer calls this once per worker, its transport made: the
        # rabbit driver's options are registered by then.
        self.dead_letter_watchers = dead_letter.start(self.conf)
        return [EventEndpoint(self.conf, self.publisher())]
