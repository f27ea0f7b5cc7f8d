"""Redfish power actions through sushy, on sushy-tools' emulator."""

import bcrypt
import fixtures
from oslo_config import cfg
from oslotest import base

from doctor_ext.inspector import bmc as bmc_mod
from doctor_ext.inspector import power
from doctor_ext_lab import redfish
from doctor_ext_lab import services

PASSWORD = 'fence-pw-Zq9'


def users_file(user, password):
    """An htpasswd line with a bcrypt digest (the emulator's format)."""
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    return '%s:%s\n' % (user, digest)


class TestRedfishPower(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            name='doctor_ext.inspector'))
        self.emulator = self.useFixture(redfish.RedfishEmulatorFixture(
            ['compute-1', 'compute-2'],
            users=users_file('fence', PASSWORD),
            credentials=('fence', PASSWORD))).emulator
        conf = cfg.ConfigOpts()
        conf([])
        self.power = power.RedfishPower(conf)
        for key, value in (('bmc_retries', 2), ('bmc_retry_backoff', 0.01),
                           ('bmc_timeout', 2.0),
                           ('power_poll_interval', 0.1),
                           ('power_confirm_timeout', 30.0)):
            conf.set_override(key, value, power.GROUP)

    def bmc(self, host, password=PASSWORD, address=None):
        return bmc_mod.Bmc(host=host, address=address or self.emulator.url,
                           system=self.emulator.system_path(host),
                           username='fence', password=password)

    def test_force_off_confirmed_only_that_host(self):
        result = self.power.power_off(self.bmc('compute-1'))
        self.assertTrue(result.ok, result.reason)
        self.assertEqual('Off', result.state)
        self.assertEqual('Off', self.emulator.power_state('compute-1'))
        self.assertEqual('On', self.emulator.power_state('compute-2'))
        # Already off: confirmed at once, nothing asked of the BMC.
        again = self.power.power_off(self.bmc('compute-1'))
        self.assertTrue(again.ok)
        self.assertEqual(1, again.attempts)
        self.assertTrue(self.power.power_on(self.bmc('compute-1')).ok)
        self.assertEqual('On', self.emulator.power_state('compute-1'))

    def test_wrong_credentials_not_retried_never_logged(self):
        result = self.power.power_off(self.bmc('compute-2', 'wrong-pw-X1'))
        self.assertFalse(result.ok)
        self.assertEqual(1, result.attempts)
        self.assertIn('HTTP 401', result.reason)
        self.assertEqual('On', self.emulator.power_state('compute-2'))
        self.assertNotIn('wrong-pw-X1', self.log.output)
        self.assertNotIn(PASSWORD, self.log.output)

    def test_refused_retried_within_bounds(self):
        closed = 'http://127.0.0.1:%d' % services.free_port()
        result = self.power.power_off(self.bmc('compute-2', address=closed))
        self.assertFalse(result.ok)
        self.assertEqual(3, result.attempts)
        self.assertIn('connection refused', result.reason)
        self.assertEqual(2, self.log.output.count('retry '))
