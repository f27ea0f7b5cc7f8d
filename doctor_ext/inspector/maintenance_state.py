"""The state of a host in maintenance, and its file.

In: the tracker's record of a host (:class:`HostMaintenance`) and the
instances still on it. Out: one JSON file per host under ``state_dir``,
written atomically, removed when the maintenance ends, read back when the
agent starts and by ``doctor-maintenance-status``
(:func:`read_states`). It touches those files only.
"""

import datetime
import json
import os
import time
import urllib.parse
import uuid

from oslo_log import log

from doctor_ext.evaluator import events as events_mod

LOG = log.getLogger(__name__)

IN_MAINTENANCE = 'maintenance'
STATE_SUFFIX = '.json'


def utc(epoch):
    return datetime.datetime.fromtimestamp(
        epoch, datetime.timezone.utc).replace(tzinfo=None)


def _iso(value):
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = utc(value)
    return value.isoformat() + 'Z'


def _parse_iso(text):
    if not text:
        return None
    return events_mod.parse_datetime(text)


def _when(value):
    """A naive UTC datetime from a datetime trait (or its text), or None."""
    try:
        return _parse_iso(value)
    except (TypeError, ValueError):
        LOG.warning('Ignoring a maintenance window time that is not a '
                    'date: %r', value)
        return None


def state_file(state_dir, host):
    return os.path.join(state_dir,
                        urllib.parse.quote(host, safe='') + STATE_SUFFIX)


class HostMaintenance:
    """One host's maintenance, as the tracker and the state file see it."""

    def __init__(self, host, reason, source, session_id=None, project=None,
                 window_start=None, window_end=None, started=None):
        self.host = host
        self.reason = reason
        self.source = source
        self.session_id = session_id or str(uuid.uuid4())
        self.project = project
        self.started = started or time.time()
        self.window_start = _when(window_start) or utc(self.started)
        self.window_end = _when(window_end)
        self.owners = {}          # instance_id -> project_id, warned
        self.notified = None      # when the owners were told
        self.ready = False        # owners told: emptiness may be reported
        self.empty_since = None
        self.admin_notified = None
        self.migrations = {}      # instance_id -> Nova's answer
        self.migration_requested = None
        self.times = {}
        self.saved = None         # remaining ids last written

    def to_dict(self, remaining, admin_project=None):
        projects = {}
        for inst in remaining:
            projects.setdefault(inst.project_id, []).append(
                inst.instance_id)
        return {
            'host': self.host,
            'state': 'empty' if not remaining and self.ready
            else IN_MAINTENANCE,
            'reason': self.reason,
            'source': self.source,
            'session_id': self.session_id,
            'admin_project_id': admin_project,
            'started': _iso(self.started),
            'window_start': _iso(self.window_start),
            'window_end': _iso(self.window_end),
            'owners_notified': _iso(self.notified),
            'instances_warned': len(self.owners),
            'projects_warned': len(set(self.owners.values())),
            'owners': dict(self.owners),
            'remaining': sorted(
                ({'instance_id': i.instance_id, 'project_id': i.project_id,
                  'user_id': i.user_id} for i in remaining),
                key=lambda r: (r['project_id'] or '', r['instance_id'])),
            'remaining_by_project': {p: sorted(ids) for p, ids in
                                     sorted(projects.items())},
            'empty_since': _iso(self.empty_since),
            'admin_notified': _iso(self.admin_notified),
            'migration_requested': _iso(self.migration_requested),
            'migrations': dict(self.migrations),
            'updated': _iso(time.time()),
        }

    @classmethod
    def from_dict(cls, data):
        started = _parse_iso(data.get('started'))
        rec = cls(data['host'], data.get('reason'), data.get('source'),
                  session_id=data.get('session_id'),
                  project=data.get('admin_project_id'),
                  window_start=_parse_iso(data.get('window_start')),
                  window_end=_parse_iso(data.get('window_end')),
                  started=started.replace(
                      tzinfo=datetime.timezone.utc).timestamp()
                  if started else None)
        rec.owners = dict(data.get('owners') or {})
        notified = _parse_iso(data.get('owners_notified'))
        rec.notified = notified.replace(
            tzinfo=datetime.timezone.utc).timestamp() if notified else None
        rec.ready = True
        admin = _parse_iso(data.get('admin_notified'))
        rec.admin_notified = admin.replace(
            tzinfo=datetime.timezone.utc).timestamp() if admin else None
        rec.migrations = dict(data.get('migrations') or {})
        requested = _parse_iso(data.get('migration_requested'))
        rec.migration_requested = requested.replace(
            tzinfo=datetime.timezone.utc).timestamp() if requested else None
        return rec


class StateFiles:
    """The state files of the hosts in maintenance, under ``state_dir``.

    A failure to write is logged once at WARNING, then at DEBUG: the state
    lives on in memory.
    """

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self._warned = False

    def write(self, host, data):
        """Write ``data`` as the state of ``host``; True if written."""
        path = state_file(self.state_dir, host)
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            tmp = '%s.%d.tmp' % (path, os.getpid())
            with open(tmp, 'w') as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as e:
            self._io_error('Cannot write the maintenance state of host '
                           '%s to %s: %s' % (host, path, e))
            return False
        return True

    def remove(self, host):
        try:
            os.unlink(state_file(self.state_dir, host))
        except FileNotFoundError:
            pass
        except OSError as e:
            self._io_error('Cannot remove the maintenance state of host '
                           '%s: %s' % (host, e))

    def _io_error(self, message):
        if self._warned:
            LOG.debug('%s', message)
        else:
            self._warned = True
            LOG.warning('%s (the state stays in memory and in this log)',
                        message)

    def restore(self):
        """The records of the state files: [(HostMaintenance, dict)]."""
        try:
            states = read_states(self.state_dir)
        except OSError as e:
            LOG.warning('Cannot read the maintenance states in %s: %s',
                        self.state_dir, e)
            return []
        out = []
        for data in states:
            try:
                out.append((HostMaintenance.from_dict(data), data))
            except (KeyError, TypeError, ValueError) as e:
                LOG.error('Ignoring maintenance state %s: %s',
                          data.get('_file'), e)
        return out


def read_states(state_dir, hosts=None):
    """The state dicts of the hosts in maintenance, from ``state_dir``.

    A missing directory means no host in maintenance. Each dict also has
    ``_file``, the file it came from.
    """
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return []
    wanted = set(hosts or ())
    out = []
    for name in names:
        if not name.endswith(STATE_SUFFIX):
            continue
        path = os.path.join(state_dir, name)
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            LOG.warning('Cannot read %s: %s', path, e)
            continue
        if not isinstance(data, dict) or 'host' not in data:
            continue
        if wanted and data['host'] not in wanted:
            continue
        data['_file'] = path
        out.append(data)
    return out
