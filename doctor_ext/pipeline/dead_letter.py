"""Poison notifications: dead-lettered by the broker, logged here, kept.

A notification whose publishing always fails is requeued by the event
pipeline (``[notification] ack_on_event_error = False``) and would come
back for ever. RabbitMQ bounds that itself: on a *quorum* queue with a
delivery limit (``[oslo_messaging_rabbit] rabbit_quorum_queue = true`` and
``rabbit_quorum_delivery_limit``) a message delivered more often than the
limit is dead-lettered, to the exchange a broker policy names
(``dead-letter-exchange``). See the install guide for the policy.

This module is the other end of that exchange. At start each agent process
declares, idempotently:

* the fanout exchange ``[doctor_dead_letter] exchange``;
* ``[doctor_dead_letter] queue``, bound to it, which the agents consume:
  each dead-lettered message is logged once (by whichever agent takes it),
  at ERROR, with its message id, event type, publisher, the queue it came
  from and why, then acknowledged;
* ``[doctor_dead_letter] parked_queue``, bound to it too, which nobody
  consumes: the operator's copy, bounded in length and age, to read or to
  move back once the cause is fixed.

What comes in: raw AMQP messages the broker dead-lettered. What goes out:
log lines and :data:`COUNTERS`. It touches nothing else.
"""

import collections
import json

import kombu
from oslo_config import cfg
from oslo_log import log

from doctor_ext import broker

LOG = log.getLogger(__name__)

GROUP = 'doctor_dead_letter'

OPTS = [
    cfg.BoolOpt('watch', default=True,
                help='Declare the dead-letter exchange and queues on the '
                     "agent's broker ([DEFAULT] transport_url, RabbitMQ "
                     'only) and log every notification the broker '
                     'dead-letters there. A broker policy must name the '
                     'exchange as the notification queues\' '
                     'dead-letter-exchange (install guide).'),
    cfg.StrOpt('exchange', default='doctor-ext.dead-letter',
               help='Fanout exchange the broker dead-letters poison '
                    'notifications to (the policy\'s dead-letter-exchange).'),
    cfg.StrOpt('queue', default='doctor-ext.dead-letter',
               help='Queue the agents consume to log dead-lettered '
                    'notifications (shared: each is logged once).'),
    cfg.StrOpt('parked_queue', default='doctor-ext.parked',
               help='Queue that keeps a copy of every dead-lettered '
                    'notification for the operator. Nobody consumes it.'),
    cfg.IntOpt('parked_max_length', default=10000, min=1,
               help='Messages the parked queue keeps; past it the oldest '
                    'is dropped.'),
    cfg.IntOpt('parked_ttl', default=7 * 24 * 3600, min=1,
               help='Seconds a parked message is kept.'),
]

# Dead-lettered messages logged by this process, by reason.
COUNTERS = collections.Counter()


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def _text(value, limit=100):
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    return str(value)[:limit]


def describe(body, headers):
    """What the log line says of a dead-lettered message.

    ``body`` is the raw AMQP body (an oslo.messaging envelope, or anything
    a sender put there); ``headers`` the AMQP headers with RabbitMQ's
    ``x-death``. Never raises.
    """
    out = {'id': None, 'event_type': None, 'publisher': None,
           'queue': None, 'reason': None, 'count': None}
    deaths = (headers or {}).get('x-death') or []
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        out['queue'] = _text(death.get('queue'))
        out['reason'] = _text(death.get('reason'))
        out['count'] = death.get('count')
    try:
        if isinstance(body, bytes):
            body = body.decode('utf-8')
        message = json.loads(body) if isinstance(body, str) else body
        if isinstance(message, dict) and 'oslo.message' in message:
            message = json.loads(message['oslo.message'])
        if isinstance(message, dict):
            out['id'] = _text(message.get('message_id'), 64)
            out['event_type'] = _text(message.get('event_type'))
            out['publisher'] = _text(message.get('publisher_id'))
    except (ValueError, TypeError):
        pass
    return out


class DeadLetterWatcher(broker.Consumer):
    """Declares the dead-letter exchange and queues; logs what arrives."""

    def __init__(self, url, conf, ssl=False):
        group = conf[GROUP]
        super().__init__(url, group.queue, ssl=ssl)
        exchange = kombu.Exchange(group.exchange, 'fanout', durable=True)
        self._queue = kombu.Queue(group.queue, exchange=exchange,
                                  durable=True, queue_arguments={
                                      'x-max-length': group.parked_max_length})
        self._parked = kombu.Queue(group.parked_queue, exchange=exchange,
                                   durable=True, queue_arguments={
                                       'x-max-length': group.parked_max_length,
                                       'x-message-ttl':
                                           group.parked_ttl * 1000})
        self._parked_name = group.parked_queue

    def get_consumers(self, consumer, channel):
        self._parked.bind(channel).declare()
        # on_message: the raw message, whatever its body (kombu would log
        # an undecodable one and leave it unacknowledged).
        return [consumer(queues=[self._queue], on_message=self._received,
                         prefetch_count=10)]

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        LOG.info('Watching dead-lettered notifications on queue %s',
                 self.name)
        self.connected.set()

    def _received(self, message):
        info = describe(message.body, message.headers)
        COUNTERS[info['reason']] += 1
        LOG.error('Dead-lettered notification %(id)s (event_type '
                  '%(event_type)s, publisher %(publisher)s) from queue '
                  '%(queue)s, reason %(reason)s: it is not delivered again; '
                  'a copy is kept in queue %(parked)s',
                  dict(info, parked=self._parked_name))
        message.ack()


def start(conf):
    """Start this process's watchers; return them.

    One per broker the agent listens to (``[notification] messaging_urls``,
    else ``[DEFAULT] transport_url``), RabbitMQ only; none when ``watch`` is
    off. Warns when the notification queues are not quorum queues: nothing
    bounds their deliveries then.
    """
    register_opts(conf)
    if not conf[GROUP].watch:
        return []
    urls = [broker.agent_url(conf, url) for url in
            conf.notification.messaging_urls or [None]]
    urls = [url for url in urls if url is not None]
    if urls and not broker.rabbit_option(conf, 'rabbit_quorum_queue',
                                         False):
        LOG.warning('[oslo_messaging_rabbit] rabbit_quorum_queue is off: a '
                    'notification whose publishing always fails is '
                    'requeued for ever (the broker bounds deliveries on '
                    'quorum queues only; see the install guide)')
    watchers = []
    for url in urls:
        watcher = DeadLetterWatcher(url, conf, ssl=bool(
            broker.rabbit_option(conf, 'ssl')))
        watcher.start()
        watchers.append(watcher)
    return watchers
