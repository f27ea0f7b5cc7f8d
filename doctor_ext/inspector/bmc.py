"""The operator's map of compute hosts to their BMCs (Redfish).

``[doctor_fencing] bmc_file`` names a YAML file with one mapping per
compute host (the name Nova and the monitor give it)::

    compute-1:
      address: https://10.0.0.11     # the BMC's Redfish root
      system: /redfish/v1/Systems/1  # optional: the BMC's only system
      username: fence
      password: s3cret
      verify: true                   # false, or a CA bundle path
      group: rack-1                  # optional: the storm guard's group

A host that is not in the file has no BMC: it is fenced logically (Nova
only), and the log says so. An entry that is wrong (no address, an address
that is not http(s), a username without a password, an unknown key) is
dropped alone, with an error naming the host and what is wrong; the
others are used. No password ever reaches a log line or an exception
message: :class:`Bmc` hides it from ``repr``.

The file is read again when it changes (its modification time), so an
operator adds a host without restarting the agents.
"""

import dataclasses
import os
import threading
import urllib.parse

from oslo_log import log
import yaml

LOG = log.getLogger(__name__)

KEYS = frozenset(('address', 'system', 'username', 'password', 'verify',
                  'group'))


class BadInventory(ValueError):
    """The whole file cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Bmc:
    """How to reach one host's BMC."""

    host: str
    address: str
    system: str = None
    username: str = None
    password: str = dataclasses.field(default=None, repr=False)
    verify: object = True
    group: str = None


def _entry(host, value):
    """A :class:`Bmc` from one entry; ValueError naming what is wrong."""
    if not isinstance(value, dict):
        raise ValueError('the entry is not a mapping')
    unknown = sorted(set(map(str, value)) - KEYS)
    if unknown:
        raise ValueError('unknown key(s) %s (known: %s)'
                         % (', '.join(unknown), ', '.join(sorted(KEYS))))
    address = value.get('address')
    if not isinstance(address, str) or not address:
        raise ValueError('address is missing')
    parsed = urllib.parse.urlsplit(address)
    if parsed.scheme not in ('http', 'https') or not parsed.hostname:
        raise ValueError('address %r is not an http(s) URL'
                         % address[:100])
    if parsed.username or parsed.password:
        raise ValueError('address carries credentials: use username and '
                         'password')
    username, password = value.get('username'), value.get('password')
    if (username is None) != (password is None):
        raise ValueError('username and password go together')
    for name in ('system', 'username', 'password', 'group'):
        if value.get(name) is not None and not isinstance(value[name], str):
            raise ValueError('%s is not a string' % name)
    verify = value.get('verify', True)
    if not isinstance(verify, (bool, str)):
        raise ValueError('verify is neither true/false nor a CA path')
    return Bmc(host=host, address=address.rstrip('/'),
               system=value.get('system'), username=username,
               password=password, verify=verify, group=value.get('group'))


def parse(text, source='the BMC file'):
    """``{host: Bmc}`` from YAML text; bad entries are logged and dropped.

    :raises BadInventory: the text is not YAML, or not a mapping.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # The parser's message quotes lines of the file: keep its position
        # only, a password may be on that line.
        mark = getattr(e, 'problem_mark', None)
        where = (' (line %d, column %d)' % (mark.line + 1, mark.column + 1)
                 if mark is not None else '')
        raise BadInventory('%s is not valid YAML%s' % (source, where))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInventory('%s is not a mapping of host names' % source)
    found = {}
    for host, value in data.items():
        name = str(host)[:255]
        try:
            found[name] = _entry(name, value)
        except ValueError as e:
            LOG.error('%s: host %s dropped: %s', source, name, e)
    return found


class Inventory:
    """The BMC file, read again when it changes. Thread-safe."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._bmcs = {}

    def _load(self):
        if not self.path:
            return {}
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except OSError as e:
            if self._stamp != 'missing':
                LOG.error('BMC file %s cannot be read (%s): every host is '
                          'fenced logically', self.path, e.strerror)
            self._stamp, self._bmcs = 'missing', {}
            return self._bmcs
        if stamp == self._stamp:
            return self._bmcs
        try:
            with open(self.path) as f:
                bmcs = parse(f.read(), 'BMC file %s' % self.path)
        except (OSError, UnicodeDecodeError, BadInventory) as e:
            LOG.error('%s: the previous map is kept', e)
            self._stamp = stamp
            return self._bmcs
        LOG.info('BMC file %s: %d host(s) with a BMC', self.path,
                 len(bmcs))
        self._stamp, self._bmcs = stamp, bmcs
        return bmcs

    def get(self, host):
        """The host's :class:`Bmc`, or None if it has none."""
        with self._lock:
            return self._load().get(host)

    def group_size(self, group):
        """Hosts of ``group`` in the file."""
        with self._lock:
            return sum(1 for b in self._load().values() if b.group == group)
