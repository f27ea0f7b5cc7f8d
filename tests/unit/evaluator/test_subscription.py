"""Each process's own alarm-change queue, on the real RabbitMQ."""

import threading
import uuid

import kombu
from oslo_config import cfg
import oslo_messaging
from oslotest import base

from doctor_ext import broker
from doctor_ext.evaluator import subscription
from tests import fixtures as doctor_fixtures

URL = 'rabbit://guest:guest@127.0.0.1:5672/'


class TestSubscription(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-test')
        self.exchange = 'doctor-test-%s' % uuid.uuid4().hex[:8]
        oslo_messaging.set_transport_defaults(self.exchange)
        transport = oslo_messaging.get_notification_transport(self.conf,
                                                              url=URL)
        self.addCleanup(transport.cleanup)
        self.notifier = oslo_messaging.Notifier(
            transport, 'aodh-api', driver='messagingv2',
            topics=['notifications'])

    def subscribe(self):
        got, connected = [], threading.Event()
        sub = subscription.Subscription(
            broker.kombu_url(self.conf, URL), self.exchange,
            'notifications.info', got.append, on_connect=connected.set)
        sub.start()
        self.addCleanup(sub.wait)
        self.addCleanup(sub.stop)
        self.assertTrue(connected.wait(10))
        return sub, got

    def queue_exists(self, name):
        # From another connection an exclusive queue answers "locked"
        # (405) while it exists, "not found" (404) once deleted.
        with kombu.Connection('amqp://guest:guest@127.0.0.1:5672//') as c:
            try:
                c.default_channel.queue_declare(name, passive=True)
                return True
            except c.channel_errors as e:
                return getattr(e, 'reply_code', None) == 405

    def test_every_process_sees_every_change(self):
        (first, got1), (second, got2) = self.subscribe(), self.subscribe()
        self.assertNotEqual(first.name, second.name)
        for i in range(3):
            self.notifier.info({}, 'alarm.creation', {'alarm_id': 'a%d' % i})
        for got in (got1, got2):
            doctor_fixtures.poll(lambda: len(got) == 3, 10, 'three changes')
            self.assertEqual(['a0', 'a1', 'a2'],
                             [n['payload']['alarm_id'] for n in got])
            self.assertEqual('alarm.creation', got[0]['event_type'])

    def test_queue_gone_with_its_process(self):
        sub, _ = self.subscribe()
        self.assertTrue(self.queue_exists(sub.name))
        # A killed process closes its connection: the same as this.
        sub.stop()
        sub.wait()
        doctor_fixtures.poll(lambda: not self.queue_exists(sub.name), 10,
                             'the queue to be deleted')
