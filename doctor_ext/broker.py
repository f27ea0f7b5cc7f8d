"""RabbitMQ queues of doctor-ext's own, next to oslo.messaging's.

oslo.messaging's notification listener declares durable pool queues and
hides the AMQP message (headers, queue arguments). Two parts of doctor-ext
need more: each process's own alarm-change queue
(:mod:`doctor_ext.evaluator.subscription`) and the dead-letter watcher
(:mod:`doctor_ext.pipeline.dead_letter`). They talk to the same broker with
kombu, the library under oslo.messaging's rabbit driver, from the agent's
own ``transport_url`` and ``[oslo_messaging_rabbit]`` options.
"""

import threading
import urllib.parse

import kombu
from kombu import mixins
from oslo_log import log
import oslo_messaging

LOG = log.getLogger(__name__)


def kombu_url(conf, transport_url):
    """The broker URL kombu takes, from an oslo.messaging transport URL.

    Returns None for a transport that is not RabbitMQ.
    """
    url = oslo_messaging.TransportURL.parse(conf, transport_url)
    if url.transport not in ('rabbit', 'kombu'):
        return None
    vhost = urllib.parse.quote(url.virtual_host or '', safe='')
    urls = []
    for host in url.hosts:
        auth = ''
        if host.username:
            auth = urllib.parse.quote(host.username, safe='')
            if host.password:
                auth += ':' + urllib.parse.quote(host.password, safe='')
            auth += '@'
        urls.append('amqp://%s%s:%d/%s' % (auth, host.hostname,
                                           host.port or 5672, vhost))
    return ';'.join(urls) or 'amqp://localhost:5672/' + vhost


def agent_url(conf, transport_url=None):
    """kombu's URL of ``transport_url`` (the agent's by default), or None.

    None when the transport is not RabbitMQ or the URL cannot be read (said
    in the log, without the URL: it holds the broker's password).
    """
    try:
        return kombu_url(conf, transport_url or conf.transport_url)
    except Exception as e:
        LOG.warning('Cannot read a transport URL as a RabbitMQ URL: %s',
                    e.__class__.__name__)
        return None


def rabbit_option(conf, name, default=None):
    """``[oslo_messaging_rabbit] name``, or ``default`` if not registered.

    The rabbit driver registers its options when a transport is created.
    """
    try:
        return getattr(conf.oslo_messaging_rabbit, name)
    except Exception:
        return default


class Consumer(mixins.ConsumerMixin):
    """A kombu consumer on a thread of its own, reconnecting for ever.

    Subclasses say which queues they consume (:meth:`get_consumers`).
    """

    def __init__(self, url, name, ssl=False):
        self.connection = kombu.Connection(url, ssl=ssl,
                                           transport_options={
                                               'confirm_publish': False})
        self.name = name
        self._thread = None
        self.connected = threading.Event()

    def on_connection_error(self, exc, interval):
        self.connected.clear()
        LOG.warning('Lost the broker for %s, reconnecting in %.1f s: %s',
                    self.name, interval, exc)

    def start(self):
        self._thread = threading.Thread(target=self.run, name=self.name,
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self.should_stop = True

    def wait(self, timeout=5):
        """Wait for the consumer to end, and close the connection."""
        if self._thread is not None:
            self._thread.join(timeout)
        self.connection.release()
