"""A sample ICMP ping monitor, like the one of the OPNFV Doctor demo.

Every host is pinged by a thread of its own, every ``interval`` seconds, each
echo request waiting ``timeout`` seconds for its reply. A host that misses
``misses_before_down`` replies in a row is reported ``compute.host.down``
once; when it answers again it is reported ``compute.host.up`` once. The same
state is never reported twice in a row. A host that does not answer from the
start is reported down too; a host that answers from the start is not
reported (it was never down).

The probe is a plain ICMP echo (:mod:`.icmp`).

A probe that cannot be made (the socket cannot be opened, the local host
refuses to send) is logged and does not count as a miss: a broken monitor
must not fence healthy hosts. A report that cannot be sent is tried again at
the next probe, with the same monitor_event_id and detection time, unless the
host went back to its reported state meanwhile.
"""

import datetime
import threading
import time

from oslo_config import cfg
from oslo_log import log

from doctor_ext.monitor import icmp
from doctor_ext.monitor import report as report_mod

LOG = log.getLogger(__name__)

GROUP = 'doctor_ping'

OPTS = [
    cfg.FloatOpt('interval', default=0.1, min=0.0,
                 help='Seconds between two probes of a host (a probe that '
                      'times out is followed by the next one at once when '
                      'timeout >= interval).'),
    cfg.FloatOpt('timeout', default=0.1, min=0.001,
                 help='Seconds an echo request waits for its reply.'),
    cfg.IntOpt('misses_before_down', default=3, min=1,
               help='Replies a host must miss in a row to be reported '
                    'down.'),
    cfg.ListOpt('hosts', default=[],
                help='Hosts to watch, as name:address (name as Nova knows '
                     'the compute host, address an IPv4 or IPv6 address or '
                     'a resolvable name).'),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def parse_hosts(items):
    """Turn ``name:address`` strings into a {name: address} dict.

    A bare ``name`` is its own address. The address may be IPv6 (everything
    after the first colon is the address).

    :raises ValueError: naming the bad item
    """
    hosts = {}
    for item in items:
        name, sep, address = item.strip().partition(':')
        name = name.strip()
        address = address.strip() if sep else name
        if not name or not address:
            raise ValueError('host %r is not name:address' % item)
        if name in hosts and hosts[name] != address:
            raise ValueError('host %r is given twice, with addresses %r and '
                             '%r' % (name, hosts[name], address))
        hosts[name] = address
    return hosts


class PingMonitor:
    """Watch hosts with a probe; report their down/up transitions.

    :param hosts: {host name (as Nova names it): address}
    :param reporter: has ``send(report) -> monitor_event_id`` (a
        :class:`doctor_ext.monitor.report.Reporter`)
    :param interval: seconds between two probes of a host
    :param timeout: seconds a probe waits for the reply
    :param misses_before_down: replies missed in a row before a host is down
    :param probe: ``probe(address, timeout) -> bool``, called from one thread
        per host at once (so it must be thread-safe); None: an
        :class:`.icmp.IcmpProbe` (sockets opened now, so that a missing
        privilege fails here)
    :param severity: severity of the down reports (None: critical)
    :param monitor: the ``monitor`` field of the reports

    ``states[host]`` is the last reported (or, before any report, the first
    seen) state: None, ``'up'`` or ``'down'``. ``detected_at[host]`` is the
    ``time.time()`` at which the host was last decided down,
    ``recovered_at[host]`` when it was last decided up again; ``probes``
    counts the probes made per host.
    """

    def __init__(self, hosts, reporter, interval=0.1, timeout=0.1,
                 misses_before_down=3, probe=None, severity=None,
                 monitor='ping'):
        if not hosts:
            raise ValueError('no host to watch')
        if interval < 0:
            raise ValueError('interval must be >= 0, not %r' % interval)
        if timeout <= 0:
            raise ValueError('timeout must be > 0, not %r' % timeout)
        if misses_before_down < 1:
            raise ValueError('misses_before_down must be >= 1, not %r'
                             % misses_before_down)
        self.hosts = dict(hosts)
        for name in self.hosts:
            report_mod.build_report(name)  # the name must be reportable
        self.reporter = reporter
        self.interval = interval
        self.timeout = timeout
        self.misses_before_down = misses_before_down
        self.severity = severity
        self.monitor = monitor
        self._own_probe = probe is None
        if probe is None:
            probe = icmp.IcmpProbe()
            try:
                for address in self.hosts.values():
                    probe.check(address)
            except Exception:
                probe.close()
                raise
        self.probe = probe
        self.states = dict.fromkeys(self.hosts)
        self.misses = dict.fromkeys(self.hosts, 0)
        self.probes = dict.fromkeys(self.hosts, 0)
        self._probe_errors = dict.fromkeys(self.hosts, 0)
        self.detected_at = {}
        self.recovered_at = {}
        self._pending = {}
        self._stop = threading.Event()
        self._thread = None

    def state(self, host):
        """The last reported (or first seen) state: None, 'up' or 'down'."""
        return self.states.get(host)

    # One host ---------------------------------------------------------

    def check(self, host):
        """Probe ``host`` once and report a transition if there is one."""
        address = self.hosts[host]
        try:
            alive = bool(self.probe(address, self.timeout))
        except Exception:
            errors = self._probe_errors[host] = self._probe_errors[host] + 1
            if errors == 1 or errors % 100 == 0:
                LOG.exception('Cannot probe %s (%s), %d time(s) in a row; '
                              'not counted as a miss', host, address, errors)
            return
        if self._probe_errors[host]:
            LOG.info('Probing %s (%s) works again', host, address)
            self._probe_errors[host] = 0
        self.probes[host] += 1
        if alive:
            self.misses[host] = 0
            self._move(host, report_mod.UP, address)
            return
        self.misses[host] += 1
        if self.misses[host] >= self.misses_before_down:
            self._move(host, report_mod.DOWN, address)
        elif self.states[host] == report_mod.DOWN:
            # A recovery not sent yet is off if the host stops answering.
            self._pending.pop(host, None)

    def _move(self, host, status, address):
        current = self.states[host]
        if current is None and status == report_mod.UP:
            self.states[host] = status  # first seen up: nothing happened
            LOG.info('Host %s (%s) is up', host, address)
            return
        if current == status:
            self._pending.pop(host, None)
            return
        pending = self._pending.get(host)
        if pending is None or pending['details']['status'] != status:
            decided = time.time()
            if status == report_mod.DOWN:
                self.detected_at[host] = decided
                cause = ('no ICMP echo reply from %s to %d probes in a row'
                         % (address, self.misses[host]))
                LOG.info('Doctor monitor detected %s down at %.6f',
                         host, decided)
            else:
                self.recovered_at[host] = decided
                cause = 'ICMP echo replies from %s again' % address
                LOG.info('Doctor monitor detected %s up at %.6f',
                         host, decided)
            pending = report_mod.build_report(
                host, status=status, monitor=self.monitor, cause=cause,
                severity=self.severity if status == report_mod.DOWN else None,
                time=datetime.datetime.fromtimestamp(decided,
                                                     datetime.timezone.utc))
            self._pending[host] = pending
        try:
            self.reporter.send(pending)
        except Exception:
            LOG.exception('Cannot report %s %s; trying again at the next '
                          'probe', host, status)
            return
        self._pending.pop(host, None)
        self.states[host] = status

    # Running ----------------------------------------------------------

    def _watch(self, host, stop_event):
        while not stop_event.is_set():
            started = time.monotonic()
            self.check(host)
            stop_event.wait(max(0.0, self.interval -
                                (time.monotonic() - started)))

    def run(self, stop_event):
        """Watch every host until ``stop_event`` is set (blocks)."""
        threads = [threading.Thread(target=self._watch,
                                    args=(host, stop_event),
                                    name='doctor-ping-%s' % host,
                                    daemon=True)
                   for host in self.hosts]
        LOG.info('Watching %s every %.3f s (timeout %.3f s, down after %d '
                 'misses)', ', '.join('%s=%s' % item
                                      for item in self.hosts.items()),
                 self.interval, self.timeout, self.misses_before_down)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def start(self):
        """Run in a background thread; :meth:`stop` ends it."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError('the monitor is already running')
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,),
                                        name='doctor-ping', daemon=True)
        self._thread.start()

    def stop(self, timeout=None):
        """Stop the thread :meth:`start` started, and close the probe."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.close()

    def close(self):
        """Close the probe's sockets (if the monitor opened them)."""
        if self._own_probe:
            self.probe.close()
