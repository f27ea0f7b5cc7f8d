"""The BMC file: good entries used, bad ones named and dropped alone."""

import os
import textwrap

import fixtures
from oslotest import base

from doctor_ext.inspector import bmc

GOOD = textwrap.dedent('''\
    compute-1:
      address: https://10.0.0.11/
      system: /redfish/v1/Systems/1
      username: fence
      password: hunter2-secret
      group: rack-1
    compute-2:
      address: http://10.0.0.12
      verify: false
    ''')


class TestParse(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            name='doctor_ext.inspector.bmc'))

    def test_good_entries(self):
        found = bmc.parse(GOOD)
        self.assertEqual({'compute-1', 'compute-2'}, set(found))
        one = found['compute-1']
        self.assertEqual(('https://10.0.0.11', '/redfish/v1/Systems/1',
                          'fence', 'rack-1', True),
                         (one.address, one.system, one.username, one.group,
                          one.verify))
        self.assertFalse(found['compute-2'].verify)
        # The password is never in a repr (log lines, tracebacks).
        self.assertNotIn('hunter2', repr(one))

    def test_bad_entries_named_and_dropped_alone(self):
        text = GOOD + textwrap.dedent('''\
            no-address:
              username: u
              password: hunter2-secret
            ftp-host:
              address: ftp://10.0.0.13
            half-credentials:
              address: https://10.0.0.14
              password: hunter2-secret
            typo:
              address: https://10.0.0.15
              pasword: hunter2-secret
            creds-in-url:
              address: https://u:hunter2-secret@10.0.0.16
            not-a-mapping: https://10.0.0.17
            ''')
        found = bmc.parse(text, 'BMC file x.yaml')
        self.assertEqual({'compute-1', 'compute-2'}, set(found))
        out = self.log.output
        for host, why in (('no-address', 'address is missing'),
                          ('ftp-host', 'is not an http(s) URL'),
                          ('half-credentials', 'go together'),
                          ('typo', 'unknown key(s) pasword'),
                          ('creds-in-url', 'address carries credentials'),
                          ('not-a-mapping', 'not a mapping')):
            self.assertIn('BMC file x.yaml: host %s dropped: ' % host, out)
            self.assertIn(why, out)
        self.assertNotIn('hunter2', out)

    def test_not_yaml_names_the_place_not_the_line(self):
        e = self.assertRaises(bmc.BadInventory, bmc.parse,
                              'compute-1: {password: "hunter2-secret\n',
                              'BMC file x.yaml')
        self.assertIn('BMC file x.yaml is not valid YAML (line', str(e))
        self.assertNotIn('hunter2', str(e))
        self.assertRaises(bmc.BadInventory, bmc.parse, '- a\n- b\n')


class TestInventory(base.BaseTestCase):

    def test_read_again_when_changed_missing_means_none(self):
        log = self.useFixture(fixtures.FakeLogger(
            name='doctor_ext.inspector.bmc'))
        path = self.useFixture(fixtures.TempDir()).join('bmc.yaml')
        inventory = bmc.Inventory(path)
        self.assertIsNone(inventory.get('compute-1'))
        self.assertIn('cannot be read', log.output)
        with open(path, 'w') as f:
            f.write(GOOD)
        self.assertEqual('fence', inventory.get('compute-1').username)
        self.assertEqual(1, inventory.group_size('rack-1'))
        with open(path, 'w') as f:
            f.write('compute-3:\n  address: https://10.0.0.13\n')
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
        self.assertIsNone(inventory.get('compute-1'))
        self.assertIsNotNone(inventory.get('compute-3'))
        # A broken file keeps the previous map.
        with open(path, 'w') as f:
            f.write('[')
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10 ** 9))
        self.assertIsNotNone(inventory.get('compute-3'))
        self.assertIn('the previous map is kept', log.output)
