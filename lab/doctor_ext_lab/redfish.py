"""A Redfish BMC for the lab: sushy-tools' emulator with its fake driver.

One ``sushy-emulator --fake`` process serves one emulated system per
compute host (named after the host, powered on at start), on loopback.
Its fake driver applies a power change 1 to 11 s after it is asked, as
real hardware does not act at once. The power state is read back through
Redfish (:meth:`RedfishEmulator.power_state`), as any client would.

``users`` is the text of an htpasswd file with bcrypt digests (the
emulator's ``SUSHY_EMULATOR_AUTH_FILE``): with it, every call but the
service root needs those credentials.
"""

import os
import shutil
import tempfile
import uuid

import fixtures
import requests
import yaml

from doctor_ext_lab import services

NAMESPACE = uuid.UUID('0b8f6f0e-7a51-4f1c-a7a2-2f5c1c9e8d31')


class RedfishEmulator:
    """sushy-emulator serving ``hosts``; stop() when done."""

    def __init__(self, hosts, workdir=None, users=None, credentials=None):
        self.hosts = list(hosts)
        self.workdir = workdir or tempfile.mkdtemp(prefix='doctor-redfish-')
        self._own_workdir = workdir is None
        self.users = users
        # (username, password) the lab's clients use; None without auth.
        self.credentials = credentials
        self.port = None
        self.process = None

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def system_id(self, host):
        return str(uuid.uuid5(NAMESPACE, host))

    def system_path(self, host):
        return '/redfish/v1/Systems/%s' % self.system_id(host)

    def _config(self):
        path = os.path.join(self.workdir, 'emulator.conf')
        systems = [{'uuid': self.system_id(h), 'name': h,
                    'power_state': 'On', 'nics': []} for h in self.hosts]
        lines = ['SUSHY_EMULATOR_FAKE_DRIVER = True',
                 'SUSHY_EMULATOR_FAKE_SYSTEMS = %r' % systems,
                 'SUSHY_EMULATOR_STATE_DIR = %r' % os.path.join(
                     self.workdir, 'state'),
                 'SUSHY_EMULATOR_LISTEN_IP = %r' % '127.0.0.1',
                 'SUSHY_EMULATOR_LISTEN_PORT = %d' % self.port]
        if self.users:
            users = os.path.join(self.workdir, 'users')
            with open(users, 'w') as f:
                f.write(self.users)
            lines.append('SUSHY_EMULATOR_AUTH_FILE = %r' % users)
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        return path

    def start(self):
        self.port = services.free_port()
        config = self._config()
        log = os.path.join(self.workdir, 'sushy-emulator.log')
        self.process = services.Process('sushy-emulator', [
            os.path.join(services.BIN, 'sushy-emulator'), '--config',
            config], log)

        def up():
            try:
                return requests.get(self.url + '/redfish/v1/Systems',
                                    auth=self.credentials, timeout=1).ok
            except requests.RequestException:
                return False
        services.wait_for(up, 60, 'sushy-emulator', self.process.proc, log)
        return self

    def stop(self):
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def power_state(self, host):
        """The system's PowerState as the emulator reports it."""
        resp = requests.get(self.url + self.system_path(host),
                            auth=self.credentials, timeout=10)
        resp.raise_for_status()
        return resp.json()['PowerState']

    def bmc_entry(self, host, address=None, group=None):
        """The BMC file's entry for ``host`` (``address``: another URL)."""
        entry = {'address': address or self.url,
                 'system': self.system_path(host)}
        if self.credentials:
            entry['username'], entry['password'] = self.credentials
        if group:
            entry['group'] = group
        return entry

    def write_bmc_file(self, path, hosts=None, addresses=None, groups=None):
        """A BMC file for ``hosts`` (default all): ``{host: entry}``."""
        addresses = addresses or {}
        groups = groups or {}
        data = {h: self.bmc_entry(h, addresses.get(h), groups.get(h))
                for h in (self.hosts if hosts is None else hosts)}
        with open(path, 'w') as f:
            yaml.safe_dump(data, f)
        os.chmod(path, 0o600)
        return path


class RedfishEmulatorFixture(fixtures.Fixture):
    """A :class:`RedfishEmulator` for one test."""

    def __init__(self, hosts, users=None, credentials=None):
        super().__init__()
        self._args = (hosts, users, credentials)

    def _setUp(self):
        hosts, users, credentials = self._args
        workdir = self.useFixture(fixtures.TempDir()).path
        self.emulator = RedfishEmulator(hosts, workdir, users,
                                        credentials).start()
        self.addCleanup(self.emulator.stop)
