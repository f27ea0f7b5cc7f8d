"""A queue of this process's own on a notification exchange.

Every agent process (each worker of each agent) must see every alarm
change of aodh-api to keep its index whole, so each one binds a queue of
its own to the ``aodh`` exchange, named after the host, the pid and a
random part: several workers and agents need no per-process configuration.
The queue is *exclusive* (RabbitMQ deletes it when the connection that
declared it closes, a killed process included) and has an expiry as well,
so a queue left behind by a process that is gone never grows.

Messages missed while the process was disconnected are made up for by the
caller: ``on_connect`` is called at every (re)connection, and the alarm
sync then reloads every alarm.

This talks to RabbitMQ with kombu (:mod:`doctor_ext.broker`):
oslo.messaging's notification listener can only declare durable, shared
pool queues.
"""

import os
import socket
import uuid

import kombu
from oslo_log import log
from oslo_messaging._drivers import common as driver_common

from doctor_ext import broker

LOG = log.getLogger(__name__)

# Milliseconds an unused queue lives on (an exclusive queue goes at once;
# this only bounds a queue whose owner the broker has not noticed gone).
QUEUE_EXPIRES_MS = 60000


def queue_name(prefix):
    return '%s.%s.%d.%s' % (prefix, socket.gethostname()[:100],
                            os.getpid(), uuid.uuid4().hex[:8])


class Subscription(broker.Consumer):
    """Consume ``exchange``/``routing_key`` on a queue of our own.

    :param on_message: called with each notification as a dict
        (``event_type``, ``payload``, ``publisher_id``...).
    :param on_connect: called at each (re)connection, before consuming.
    """

    def __init__(self, url, exchange, routing_key, on_message,
                 on_connect=None, prefix='doctor-ext', durable=False,
                 ssl=False):
        super().__init__(url, queue_name(prefix), ssl=ssl)
        self._exchange = kombu.Exchange(exchange, 'topic', durable=durable)
        self._queue = kombu.Queue(
            self.name, exchange=self._exchange, routing_key=routing_key,
            exclusive=True, auto_delete=True, durable=False,
            queue_arguments={'x-expires': QUEUE_EXPIRES_MS})
        self._on_message = on_message
        self._on_connect = on_connect

    def get_consumers(self, consumer, channel):
        return [consumer(queues=[self._queue], callbacks=[self._received],
                         accept=['json'], prefetch_count=100)]

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        LOG.info('Following %s on queue %s', self._exchange.name, self.name)
        if self._on_connect is not None:
            try:
                self._on_connect()
            except Exception:
                LOG.exception('Reconnection hook failed')
        self.connected.set()

    def _received(self, body, message):
        try:
            notification = driver_common.deserialize_msg(body)
            if isinstance(notification, dict):
                self._on_message(notification)
            else:
                LOG.error('Dropping a message on %s that is not a '
                          'notification', self.name)
        except Exception:
            LOG.exception('Dropping a notification on %s that could not be '
                          'handled', self.name)
        finally:
            message.ack()
