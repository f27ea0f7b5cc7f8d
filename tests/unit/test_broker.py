"""kombu's view of the agent's broker."""

from oslo_config import cfg
from oslotest import base

from doctor_ext import broker


class TestKombuUrl(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-test')

    def test_not_rabbit_has_no_url(self):
        self.assertIsNone(broker.kombu_url(self.conf, 'fake://'))

    def test_every_host_quoted(self):
        self.assertEqual(
            'amqp://u%40x:p%3Aw@h1:5673/v%2F1;amqp://u%40x:p%3Aw@h2:5672/'
            'v%2F1',
            broker.kombu_url(self.conf,
                             'rabbit://u%40x:p%3Aw@h1:5673,'
                             'u%40x:p%3Aw@h2/v%2F1'))

    def test_unreadable_url_named_without_password(self):
        self.conf.register_opt(cfg.StrOpt('transport_url'))
        self.conf.set_override('transport_url',
                               'rabbit://user:s3cret@[bad')
        with self.assertLogs('doctor_ext.broker', 'WARNING') as logs:
            self.assertIsNone(broker.agent_url(self.conf))
        self.assertNotIn('s3cret', '\n'.join(logs.output))
