"""One alarm fired by one event, and what it owes.

A :class:`Firing` carries its notifications to the notifier (one per
action of the alarm, one body encoded once) and its row of Aodh's alarm
history, whose id is derived from the alarm and the event. The engine
(:mod:`.engine`) decides what fires; this module only describes it.
"""

import json
import uuid

from doctor_ext.evaluator import rules
from doctor_ext.notifier import http

# History row ids: derived from (alarm, event), so that an event handled
# twice (a redelivered notification) records one transition.
HISTORY_NAMESPACE = uuid.UUID('5c0f9a1e-6f3b-4d0e-9d8a-2b7c1e4f6a90')


class Firing:
    """One alarm fired by one event, with its deliveries."""

    __slots__ = ('alarm', 'event', 'previous', 'reason', 'deliveries',
                 'times', 'recorded')

    def __init__(self, alarm, event, previous, reason):
        self.alarm = alarm
        self.event = event
        self.previous = previous
        self.reason = reason
        self.deliveries = []
        self.times = {}
        # True once the history row is written with the claim.
        self.recorded = False


def reason_for(alarm, event):
    """Aodh's reason text, so that consumers parsing it keep working."""
    return ('Event <id=%(id)s,event_type=%(event_type)s> hits the '
            'query <query=%(query)s>.' % {
                'id': event.message_id, 'event_type': event.event_type,
                'query': json.dumps(alarm.query(), sort_keys=True)})


def notifications(firing):
    """The notifications ``firing`` owes, one per action of its alarm."""
    alarm, event = firing.alarm, firing.event
    reason_data = {'type': 'event', 'event': event.serialize()}
    notes = [http.Notification(
        action=action, alarm_id=alarm.alarm_id, alarm_name=alarm.name,
        severity=alarm.severity, previous=firing.previous,
        current=rules.ALARM, reason=firing.reason,
        reason_data=reason_data, project_id=alarm.project_id)
        for action in alarm.actions]
    if len(notes) > 1:
        # One body for every action of the alarm: encoded once.
        body = notes[0].body()
        for n in notes[1:]:
            n._body = body
    return notes


def history_change(firing, now):
    """The history row of ``firing`` (as the store takes it).

    Its id is derived from the alarm and the event, so that neither a
    retried write nor a redelivered event adds a second row.
    """
    alarm = firing.alarm
    event_id = uuid.uuid5(HISTORY_NAMESPACE, '%s/%s' % (
        alarm.alarm_id, firing.event.message_id))
    return {'event_id': str(event_id),
            'alarm_id': alarm.alarm_id, 'project_id': alarm.project_id,
            'user_id': alarm.user_id, 'severity': alarm.severity,
            'reason': firing.reason, 'timestamp': now}
