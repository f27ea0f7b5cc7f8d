"""Dead-lettered notifications: logged once, kept, on the real RabbitMQ.

The broker's side (a quorum queue's delivery limit, the policy naming the
dead-letter exchange) is exercised end to end by
tests.faults.test_bad_input.TestPoisonMessages; here the watcher gets
messages as RabbitMQ dead-letters them: published to its exchange with an
``x-death`` header.
"""

import json
import subprocess
import uuid

import fixtures
import kombu
from oslo_config import cfg
import oslo_messaging
from oslotest import base

from doctor_ext.pipeline import dead_letter
from tests import fixtures as doctor_fixtures

CTL = '/usr/sbin/rabbitmqctl'


def _envelope(message_id, event_type='compute.host.down'):
    return json.dumps({'oslo.version': '2.0', 'oslo.message': json.dumps({
        'message_id': message_id, 'event_type': event_type,
        'publisher_id': 'monitor.compute-1', 'priority': 'INFO',
        'payload': {}})})


DEATH = {'x-death': [{'count': 1, 'reason': 'delivery_limit',
                      'queue': 'notifications.info', 'exchange': 'nova',
                      'routing-keys': ['notifications.info']}]}


class TestDescribe(base.BaseTestCase):

    def test_oslo_envelope(self):
        self.assertEqual(
            {'id': 'm-1', 'event_type': 'compute.host.down',
             'publisher': 'monitor.compute-1', 'queue': 'notifications.info',
             'reason': 'delivery_limit', 'count': 1},
            dead_letter.describe(_envelope('m-1').encode(), DEATH))

    def test_anything_else_never_raises(self):
        for body in [b'\xff\xfe', b'[1, 2]', b'{"oslo.message": "x"}', None,
                     '{"a":' * 50]:
            info = dead_letter.describe(body, {'x-death': 'garbage'})
            self.assertIsNone(info['id'])
            self.assertIsNone(info['reason'])


class TestDeadLetterWatcher(base.BaseTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # One vhost for the class (rabbitmqctl takes a second or two); each
        # test has exchange and queues of its own.
        cls.vhost = 'doctor-dl-%s' % uuid.uuid4().hex[:8]
        subprocess.run([CTL, '-q', 'add_vhost', cls.vhost], check=True)
        subprocess.run([CTL, '-q', 'set_permissions', '-p', cls.vhost,
                        'guest', '.*', '.*', '.*'], check=True)

    @classmethod
    def tearDownClass(cls):
        subprocess.run([CTL, '-q', 'delete_vhost', cls.vhost])
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.url = 'amqp://guest:guest@127.0.0.1:5672/%s' % self.vhost
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-test')
        transport = oslo_messaging.get_notification_transport(
            self.conf, url='rabbit://guest:guest@127.0.0.1:5672/%s'
            % self.vhost)
        self.addCleanup(transport.cleanup)
        self.conf.set_override(
            'transport_url',
            'rabbit://guest:guest@127.0.0.1:5672/%s' % self.vhost)
        self.conf.register_opt(cfg.ListOpt('messaging_urls', default=[]),
                               group='notification')
        dead_letter.register_opts(self.conf)
        name = 'dl-%s' % uuid.uuid4().hex[:8]
        for option in ('exchange', 'queue'):
            self.conf.set_override(option, name, group=dead_letter.GROUP)
        self.conf.set_override('parked_queue', name + '.parked',
                               group=dead_letter.GROUP)
        self.log = self.useFixture(fixtures.FakeLogger(level='INFO'))

    def start(self):
        (watcher,) = dead_letter.start(self.conf)
        self.addCleanup(watcher.wait)
        self.addCleanup(watcher.stop)
        self.assertTrue(watcher.connected.wait(10))
        return watcher

    def dead_letter(self, body):
        with kombu.Connection(self.url) as conn:
            conn.Producer().publish(
                body, exchange=self.conf.doctor_dead_letter.exchange,
                routing_key='notifications.info', headers=DEATH,
                content_type='application/json', content_encoding='utf-8',
                serializer=None)

    def parked(self):
        """The parked queue's bodies (read without declaring it)."""
        with kombu.Connection(self.url) as conn:
            channel = conn.default_channel
            out = []
            while True:
                message = channel.basic_get(
                    self.conf.doctor_dead_letter.parked_queue, no_ack=True)
                if message is None:
                    return out
                out.append(message.body)

    def test_logged_once_and_parked(self):
        self.start()
        for i in range(3):
            self.dead_letter(_envelope('m-%d' % i))
        self.dead_letter('not json at all')
        doctor_fixtures.poll(
            lambda: self.log.output.count('Dead-lettered notification') == 4,
            10, 'four dead-letter lines')
        self.assertIn('Dead-lettered notification m-1 (event_type '
                      'compute.host.down, publisher monitor.compute-1) from '
                      'queue notifications.info, reason delivery_limit',
                      self.log.output)
        self.assertIn('Dead-lettered notification None (event_type None, '
                      'publisher None) from queue notifications.info',
                      self.log.output)
        parked = self.parked()
        self.assertEqual(4, len(parked))
        self.assertEqual('m-2', dead_letter.describe(parked[2], {})['id'])
        self.assertEqual('not json at all', parked[3])

    def test_two_agents_log_each_message_once(self):
        self.start()
        self.start()
        for i in range(20):
            self.dead_letter(_envelope('m-%d' % i))
        doctor_fixtures.poll(
            lambda: self.log.output.count('Dead-lettered notification') >= 20,
            10, 'twenty dead-letter lines')
        for i in range(20):
            self.assertEqual(1, self.log.output.count(
                'Dead-lettered notification m-%d ' % i))

    def test_off_or_not_rabbit_starts_nothing(self):
        self.conf.set_override('transport_url', 'fake://')
        self.assertEqual([], dead_letter.start(self.conf))
        self.conf.set_override('transport_url', 'rabbit://guest:guest@'
                               '127.0.0.1:5672/%s' % self.vhost)
        self.conf.set_override('watch', False, group='doctor_dead_letter')
        self.assertEqual([], dead_letter.start(self.conf))

    def test_warns_without_quorum_queues(self):
        self.start()
        self.assertIn('rabbit_quorum_queue is off', self.log.output)
