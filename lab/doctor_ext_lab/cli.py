"""``doctor-ext-demo``: the fault scenario, or with ``--maintenance`` the
planned-maintenance one, or with ``--power-fencing`` the fault scenario
with power fencing (:mod:`.demo`, :mod:`.maintenance_demo`,
:mod:`.power_demo`)."""

import argparse
import sys
import warnings

from doctor_ext_lab import demo
from doctor_ext_lab import maintenance_demo
from doctor_ext_lab import power_demo


def parse_args(argv):
    p = argparse.ArgumentParser(prog='doctor-ext-demo',
                                description=demo.__doc__.split('\n\n')[0])
    p.add_argument('--vms', type=int, default=10,
                   help='VMs on the failing host (default 10)')
    p.add_argument('--projects', type=int, default=3,
                   help='projects owning them (default 3)')
    p.add_argument('--transport-url',
                   help='use this broker as is (default: a vhost of our own '
                        'on the local RabbitMQ)')
    p.add_argument('--db-url',
                   help='Aodh database server (e.g. postgresql://'
                        'postgres@127.0.0.1/postgres); default: SQLite')
    p.add_argument('--json', metavar='FILE', help='write the result here')
    p.add_argument('--maintenance', action='store_true',
                   help='run the planned-maintenance scenario')
    p.add_argument('--nova', choices=('double', 'real'), default='double',
                   help='the Nova double (default, starts in seconds) or '
                        'real Keystone, Placement and Nova from the '
                        "repository's tests/realnova (a first run installs "
                        'them; the cloud takes 70-100 s to start)')
    p.add_argument('--power-fencing', action='store_true',
                   help='power the failing host off through its (emulated) '
                        'BMC; owners are told twice')
    p.add_argument('--nova-latency', type=float, default=0.0,
                   help='modeled latency of each Nova call, in ms')
    p.add_argument('--ping-interval', type=float, default=0.05)
    p.add_argument('--misses', type=int, default=3)
    p.add_argument('--timeout', type=float, default=30.0)
    p.add_argument('--keep-workdir', action='store_true')
    return p.parse_args(argv)


def demo_main(argv=None):
    # oslo.service warns that eventlet is deprecated when Ceilometer's
    # modules load: true, but not this command's business.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.maintenance:
        return maintenance_demo.main(args)
    if args.power_fencing:
        return power_demo.main(args)
    if args.nova == 'real':
        # Imports tests/realnova from the checkout: only when asked for.
        from doctor_ext_lab import real_nova_demo
        return demo.main(args, real_nova_demo.RealNovaDemo)
    return demo.main(args)


if __name__ == '__main__':
    sys.exit(demo_main())
