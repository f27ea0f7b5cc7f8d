"""``doctor-ext-fence``: the operator's view of power fencing.

``doctor-ext-fence --config-file ceilometer.conf list`` shows the newest
fences (host, method, state, why); ``doctor-ext-fence --config-file
ceilometer.conf confirm HOST`` lets the power-off of a host the storm guard
holds go ahead: the next sweep of any agent (within
``[doctor_leases]`` sweep time) powers it off and tells its owners.
The database is the one of ``[doctor_evaluator] aodh_connection``.
"""

import getpass
import sys

from oslo_config import cfg

from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import guard

FORMAT = '%-20s %-8s %-12s %-26s %s'


def _parse(argv):
    conf = cfg.ConfigOpts()
    store_mod.register_opts(conf)

    def commands(subparsers):
        subparsers.add_parser('list', help='the newest fences')
        confirm = subparsers.add_parser(
            'confirm', help="let a held power-off go ahead")
        confirm.add_argument('host')
    conf.register_cli_opt(cfg.SubCommandOpt('command', handler=commands))
    conf(argv, project='ceilometer',
         description='Power fencing of doctor-ext: list the fences, '
                     'confirm a power-off the storm guard holds.')
    return conf


def main(argv=None):
    conf = _parse(sys.argv[1:] if argv is None else argv)
    store = store_mod.AodhStore(conf, bounded=False)
    if not store.configured:
        sys.stderr.write('doctor-ext-fence: [doctor_evaluator] '
                         'aodh_connection is not set\n')
        return 2
    try:
        if conf.command.name == 'confirm':
            host = conf.command.host
            count = guard.confirm(store, host, 'doctor-ext-fence by %s'
                                  % getpass.getuser())
            if not count:
                print('No held power-off for host %s' % host)
                return 1
            print('Confirmed %d held power-off(s) of host %s: the agents '
                  'power it off at their next sweep' % (count, host))
            return 0
        print(FORMAT % ('host', 'method', 'state', 'since (UTC)', 'why'))
        for row in guard.listing(store):
            print(FORMAT % (row['host'][:20], row['method'], row['state'],
                            row['created_at'].isoformat(
                                timespec='seconds'),
                            (row['error'] or '')[:120]))
        return 0
    except store_mod.StoreUnavailable as e:
        sys.stderr.write('doctor-ext-fence: %s\n' % e)
        return 1
    finally:
        store.dispose()
