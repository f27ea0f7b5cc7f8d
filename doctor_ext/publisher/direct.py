"""The ``doctor://`` event publisher: events straight to the evaluator.

Ceilometer's event pipeline calls :meth:`DirectPublisher.publish_events`
with the events of one notification, in one of the agent's listener
threads. They are handed to the in-process evaluator at once: no broker hop,
no batching, no collector and no database on the way.

``doctor://?relay=alarm.all`` also puts the events on the bus for a stock
aodh-listener an operator keeps (through Ceilometer's own ``notifier://``
publisher, with ``policy=drop`` by default so a broker outage never blocks
the agent).

A host fault or maintenance report that the inspector's report check
refuses (:mod:`doctor_ext.inspector.report_check`: unsigned, badly signed,
too old, replayed) is neither evaluated nor relayed.

Failure handling: an event that cannot be parsed is logged and dropped
alone. If the alarms are not loaded yet (the Aodh database is unreachable at
start), the publisher raises, so that Ceilometer requeues the notification
when ``[notification] ack_on_event_error = False`` (our event pipeline gives
each doctor plugin a sink of its own, since a sink with several publishers
swallows their exceptions).
"""

import time
import urllib.parse

from ceilometer import publisher
from oslo_config import cfg
from oslo_log import log
from oslo_utils import netutils

from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events as events_mod
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import journal
from doctor_ext.inspector import report_check

LOG = log.getLogger(__name__)

GROUP = 'doctor_publisher'
OPTS = [
    cfg.FloatOpt('delivery_wait', default=0.0, min=0,
                 deprecated_for_removal=True,
                 deprecated_reason='Delivery is at-least-once through the '
                                   'outbox ([doctor_state]); no agent '
                                   'thread waits for a notification.',
                 help='Ignored. Notifications owed by a claimed alarm are '
                      'written to the outbox in the claim\'s transaction '
                      'and delivered by another agent if this one dies.'),
    cfg.BoolOpt('drop_nova_duplicates', default=True,
                help="Drop Nova's own compute.instance.update for an "
                     'instance the inspector already reported in error '
                     '(recognised once, by whichever agent receives it).'),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class DirectPublisher(publisher.ConfigPublisherBase):
    """Publish events to the in-process notification-driven evaluator."""

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        register_opts(conf)
        self._opts = conf[GROUP]
        self._relay = None
        options = urllib.parse.parse_qs(parsed_url.query or '')
        topic = options.get('relay', [None])[-1]
        if topic:
            from ceilometer.publisher import messaging
            url = 'notifier://?topic=%s&policy=%s' % (
                urllib.parse.quote(topic),
                options.get('policy', ['drop'])[-1])
            self._relay = messaging.EventNotifierPublisher(
                conf, netutils.urlsplit(url))
        # The engine starts its background work (alarm load, listeners)
        # now, without blocking the agent's start.
        self._engine = engine_mod.get_engine(conf)
        self._journal = journal.FaultJournal(self._engine.store,
                                             self._engine.owner)
        self._check = report_check.get_check(conf, self._engine)
        LOG.info('doctor publisher loaded%s',
                 ' (relaying to topic %s)' % topic if topic else '')

    def publish_samples(self, samples):
        """Samples are not ours: the doctor publisher is for events."""

    def publish_events(self, events):
        received = time.time()
        parsed = []
        relayed = []
        for event in events:
            try:
                one = events_mod.from_ceilometer(event)
            except events_mod.InvalidEvent as e:
                LOG.error('Dropping event %s: %s',
                          getattr(event, 'message_id', '?'), e)
                relayed.append(event)
                continue
            if self._check.accept(one):
                parsed.append(one)
                relayed.append(event)
        if self._relay is not None and relayed:
            self._relay.publish_events(relayed)
        if self._opts.drop_nova_duplicates:
            parsed = [e for e in parsed if not self._duplicate(e)]
        if not parsed:
            return []
        return self._engine.evaluate(parsed, received=received)

    def _duplicate(self, event):
        if (event.event_type != 'compute.instance.update' or
                event.traits.get('state') != 'error'):
            return False
        instance_id = event.traits.get('instance_id')
        if not instance_id:
            return False
        # Only a repeating alarm would notify twice (a non-repeating one
        # is already claimed): ask the journal only then.
        if not any(a.repeat_actions for a in self._engine.index.match(event)):
            return False
        try:
            seen = self._journal.nova_update_seen(instance_id)
        except store_mod.StoreUnavailable as e:
            # Better twice than never: the owner may be told again.
            LOG.warning('Cannot check whether owners of %s were told '
                        'already; evaluating the update: %s', instance_id, e)
            return False
        if seen:
            LOG.debug('Dropping Nova update of %s to error: owners were '
                      'told by the inspector', instance_id)
        return seen
