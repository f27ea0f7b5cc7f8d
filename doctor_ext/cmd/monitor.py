"""Command-line tools of the monitor.

``doctor-monitor`` pings compute hosts and reports their faults::

    doctor-monitor --config-file /etc/doctor-ext/doctor-monitor.conf \\
        --host compute-1:192.0.2.11 --host compute-2:192.0.2.12

``doctor-report`` sends one report (a fault injected by hand, or by another
monitor) and prints its monitor_event_id::

    doctor-report --host compute-1 [--status down|up] [--cause TEXT]
                  [--severity critical] [--transport-url rabbit://...]

Both read the options of :mod:`doctor_ext.monitor.report`
(``[doctor_monitor]``) and oslo.messaging's (the bus:
``[oslo_messaging_notifications] transport_url``, else ``[DEFAULT]
transport_url``) from their config files, and log with oslo.log.
"""

import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log

from doctor_ext.monitor import icmp
from doctor_ext.monitor import ping
from doctor_ext.monitor import report

LOG = log.getLogger(__name__)

PROJECT = 'doctor-ext'


def _make_conf(cli_opts):
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    report.register_opts(conf)
    conf.register_cli_opts(cli_opts)
    return conf


def _parse(conf, argv, prog):
    try:
        conf(argv, project=PROJECT, prog=prog)
    except cfg.Error as e:
        sys.stderr.write('%s: %s\n' % (prog, e))
        return False
    return True


PING_CLI_OPTS = [
    cfg.MultiStrOpt('host', metavar='NAME:ADDRESS', default=[],
                    help='A host to watch (repeatable), in addition to '
                         '[doctor_ping] hosts. NAME is the compute host as '
                         'Nova names it.'),
]


def ping_main(argv=None):
    """``doctor-monitor``: ping the hosts until SIGTERM or SIGINT."""
    prog = 'doctor-monitor'
    conf = _make_conf(PING_CLI_OPTS)
    ping.register_opts(conf)
    if not _parse(conf, sys.argv[1:] if argv is None else argv, prog):
        return 2
    log.setup(conf, prog)
    opts = conf[ping.GROUP]
    try:
        hosts = ping.parse_hosts(list(opts.hosts) + list(conf.host))
    except ValueError as e:
        LOG.error('%s', e)
        return 2
    if not hosts:
        LOG.error('No host to watch: give --host NAME:ADDRESS or '
                  '[%s] hosts', ping.GROUP)
        return 2

    stop = threading.Event()

    def _stop(signum, frame):
        LOG.info('Signal %d received, stopping', signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)

    reporter = report.Reporter(conf)
    try:
        try:
            monitor = ping.PingMonitor(
                hosts, reporter, interval=opts.interval,
                timeout=opts.timeout,
                misses_before_down=opts.misses_before_down,
                severity=conf[report.GROUP].severity)
        except (icmp.ProbeUnavailable, ValueError) as e:
            LOG.error('%s', e)
            return 1
        try:
            monitor.run(stop)
        finally:
            monitor.close()
    finally:
        reporter.close()
    return 0


REPORT_CLI_OPTS = [
    cfg.StrOpt('host', required=True, metavar='NAME',
               help='The host the report is about, as Nova names it.'),
    cfg.StrOpt('status', default=report.DOWN, choices=report.STATUSES,
               help='down (compute.host.down) or up (compute.host.up).'),
    cfg.StrOpt('cause', help='Why (free text, at most 255 characters).'),
    cfg.StrOpt('severity', choices=report.SEVERITY_CHOICES,
               help='Default: [doctor_monitor] severity for down, cleared '
                    'for up.'),
    cfg.StrOpt('monitor', default='doctor-report',
               help='The monitor field of the report.'),
    cfg.StrOpt('monitor-event-id', dest='monitor_event_id',
               help='Identifier of the report (default: a new UUID).'),
    cfg.StrOpt('transport-url', dest='report_transport_url',
               metavar='URL',
               help='The bus to send to (default: [oslo_messaging_'
                    'notifications] transport_url, else [DEFAULT] '
                    'transport_url).'),
]


def report_main(argv=None):
    """``doctor-report``: send one report, print its monitor_event_id."""
    prog = 'doctor-report'
    conf = _make_conf(REPORT_CLI_OPTS)
    # stdout carries the monitor_event_id alone.
    conf.set_default('use_stderr', True)
    if not _parse(conf, sys.argv[1:] if argv is None else argv, prog):
        return 2
    log.setup(conf, prog)
    transport = report.get_transport(conf, url=conf.report_transport_url)
    try:
        reporter = report.Reporter(conf, transport)
        event_id = reporter.report(
            conf.host, status=conf.status, monitor=conf.monitor,
            monitor_event_id=conf.monitor_event_id, cause=conf.cause,
            severity=conf.severity)
    except report.InvalidReport as e:
        LOG.error('Invalid report: %s', e)
        return 2
    except report.ReportNotSent as e:
        LOG.error('%s', e)
        return 1
    finally:
        transport.cleanup()
    print(event_id)
    return 0
