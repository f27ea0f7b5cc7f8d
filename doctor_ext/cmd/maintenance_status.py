"""``doctor-maintenance-status``: the hosts in maintenance, from the files.

In: the state files the agent writes (``[doctor_maintenance] state_dir``,
:mod:`doctor_ext.inspector.maintenance_state`). Out: what an operator
reads, or JSON. It reads those files only.
"""

import argparse
import json
import sys

from oslo_config import cfg

from doctor_ext.inspector import maintenance
from doctor_ext.inspector import maintenance_state

GROUP = maintenance.GROUP


def format_state(data):
    """Lines an operator reads for one host."""
    lines = []
    window = data.get('window_start') or data.get('started')
    if data.get('window_end'):
        window = '%s - %s' % (window, data['window_end'])
    lines.append('%s: %s since %s (%s; via %s; session %s)' % (
        data['host'], 'in maintenance, EMPTY' if data['state'] == 'empty'
        else 'in maintenance', data.get('started'), data.get('reason'),
        data.get('source'), data.get('session_id')))
    lines.append('  window: %s' % window)
    lines.append('  owners warned: %s (%d instance(s) of %d project(s))' % (
        data.get('owners_notified'), data.get('instances_warned', 0),
        data.get('projects_warned', 0)))
    by_project = data.get('remaining_by_project') or {}
    lines.append('  remaining: %d instance(s) of %d project(s)' % (
        sum(len(v) for v in by_project.values()), len(by_project)))
    for project, ids in by_project.items():
        lines.append('    project %s: %s' % (project, ' '.join(ids)))
    if data.get('migration_requested'):
        failed = {k: v for k, v in (data.get('migrations') or {}).items()
                  if v != 'ok'}
        lines.append('  live migration requested at %s: %d accepted, %d '
                     'refused' % (data['migration_requested'],
                                  len(data.get('migrations') or {}) -
                                  len(failed), len(failed)))
        for server, why in sorted(failed.items()):
            lines.append('    %s: %s' % (server, why))
    if data.get('admin_notified'):
        lines.append('  administrator told it is empty: %s (project %s)' % (
            data['admin_notified'], data.get('admin_project_id')))
    lines.append('  updated: %s' % data.get('updated'))
    return lines


def _state_dir_from_config(config_files):
    conf = cfg.ConfigOpts()
    maintenance.register_opts(conf)
    args = []
    for path in config_files:
        args += ['--config-file', path]
    conf(args, project='ceilometer',
         default_config_files=None if not config_files else [])
    return conf[GROUP].state_dir


def main(argv=None):
    """``doctor-maintenance-status [--state-dir DIR] [--json] [HOST...]``."""
    p = argparse.ArgumentParser(
        prog='doctor-maintenance-status',
        description='Hosts in maintenance, as ceilometer-agent-notification '
                    '(doctor-ext) tracks them: which instances remain on '
                    'them, whose, and whether the administrator was told '
                    'they are empty.')
    p.add_argument('hosts', nargs='*', metavar='HOST')
    p.add_argument('--state-dir',
                   help='[%s] state_dir of the agent (default: read from '
                        'the config files)' % GROUP)
    p.add_argument('--config-file', action='append', default=[],
                   help='the agent\'s ceilometer.conf (default: '
                        '/etc/ceilometer/ceilometer.conf if present)')
    p.add_argument('--json', action='store_true', help='print JSON')
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    state_dir = args.state_dir or _state_dir_from_config(args.config_file)
    if not state_dir:
        print('no [%s] state_dir configured' % GROUP, file=sys.stderr)
        return 2
    try:
        states = maintenance_state.read_states(state_dir, args.hosts)
    except OSError as e:
        print('cannot read %s: %s' % (state_dir, e), file=sys.stderr)
        return 2
    found = {s['host'] for s in states}
    if args.json:
        for s in states:
            s.pop('_file', None)
        print(json.dumps(states, indent=2, sort_keys=True))
        return 0
    for s in states:
        print('\n'.join(format_state(s)))
    for host in args.hosts:
        if host not in found:
            print('%s: not in maintenance' % host)
    if not args.hosts and not states:
        print('no host in maintenance (%s)' % state_dir)
    return 0
