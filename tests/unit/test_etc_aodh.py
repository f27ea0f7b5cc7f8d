"""etc/aodh/ works as the install guide says.

The guide copies ``etc/aodh/doctor-ext.conf`` into Aodh's configuration
directory instead of editing aodh.conf. Aodh's own ``prepare_service``
(the one aodh-api runs) must then read it: here in a child process (it sets
up logging), with ``~/.aodh/aodh.conf.d``, the first directory oslo.config
looks in, standing in for ``/etc/aodh/aodh.conf.d``.
"""

import os
import shutil
import subprocess
import sys

import fixtures
from oslotest import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SNIPPET = os.path.join(ROOT, 'etc', 'aodh', 'doctor-ext.conf')

READ_DRIVERS = '''
import oslo_messaging.opts
from aodh import service
conf = service.prepare_service(argv=[], config_files=[])
for group, opts in oslo_messaging.opts.list_opts():
    if group == 'oslo_messaging_notifications':
        conf.register_opts(opts, group=group)
print('drivers=' + ','.join(conf.oslo_messaging_notifications.driver))
'''


class TestEtcAodh(base.BaseTestCase):

    def _drivers(self, home):
        env = dict(os.environ, HOME=home)
        proc = subprocess.run([sys.executable, '-c', READ_DRIVERS], env=env,
                              cwd=home, capture_output=True, text=True,
                              timeout=120)
        self.assertEqual(0, proc.returncode, proc.stderr[-3000:])
        return proc.stdout.splitlines()[-1].split('drivers=', 1)[1]

    def test_aodh_reads_the_snippet_from_its_conf_d(self):
        home = self.useFixture(fixtures.TempDir()).path
        # Without the file, aodh-api sends no notification.
        self.assertEqual('', self._drivers(home))
        conf_d = os.path.join(home, '.aodh', 'aodh.conf.d')
        os.makedirs(conf_d)
        shutil.copy(SNIPPET, conf_d)
        self.assertEqual('messagingv2', self._drivers(home))
