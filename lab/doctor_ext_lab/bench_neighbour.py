"""``doctor-ext-bench`` scenario ``neighbour``: a tenant beside a greedy one.

A mixin of :class:`doctor_ext_lab.bench.Bench`, doctor-ext only (stock has
no bound on tenants to compare with). Each sample is two host failures of
the same shape for a healthy project (``--neighbour-vms`` instances, one
alarm and one action each), in turn the first of the two:

* **alone**: nothing else on the host;
* **beside**: the host also carries a greedy project's
  ``--neighbour-greedy`` instances, created first, whose alarms have
  ``--neighbour-actions`` action URLs each, all distinct and none
  answering: the first ``--neighbour-hanging`` go to a listener whose
  connections time out (:class:`doctor_ext_lab.unreachable.Tarpit`), the
  others to link-local addresses that the egress policy refuses.

The figure is the healthy project's last owner, after the report, beside
the greedy project against alone; the target is their ratio (medians
over ``--neighbour-samples`` samples). Before the next sample, every
greedy notification is given up (its outbox rows) and the host fenced,
so that neither costs the next measurement.
"""

import statistics
import time

from doctor_ext_lab import bench_util
from doctor_ext_lab import services
from doctor_ext_lab import unreachable

NAME = 'doctor_ext'
# Seconds the agent waits to connect to a consumer (its default): the
# tarpit's own connections give up after as long.
CONNECT_TIMEOUT = 1.0


class Neighbour:

    def build_neighbour(self, side):
        """The neighbour hosts' instances and alarms (doctor-ext side)."""
        a = self.args
        self.tarpit = unreachable.Tarpit(CONNECT_TIMEOUT).start()
        self.neighbour_hosts = []
        per_host = a.neighbour_greedy * a.neighbour_actions
        for i in range(a.neighbour_samples):
            alone = 'nb-alone-%d' % i
            beside = 'nb-beside-%d' % i
            greedy = 'nb-greedy-%d' % i
            side.nova.add_host(beside)
            urls = (unreachable.loopback_urls(
                self.tarpit.port, i * a.neighbour_hanging,
                a.neighbour_hanging) + unreachable.link_local_urls(
                i * per_host, per_host - a.neighbour_hanging))
            vms = []
            for g in range(a.neighbour_greedy):
                vm = side.nova.add_server(beside, greedy)
                row = services.alarm_row(greedy, vm, None)
                row['alarm_actions'] = urls[g * a.neighbour_actions:
                                            (g + 1) * a.neighbour_actions]
                side.alarm_rows.append(row)
                vms.append((vm, greedy))
            healthy = {}
            for host in (alone, beside):
                healthy[host] = side.add_vms(
                    host, a.neighbour_vms, ['nb-healthy-%s' % host],
                    '/%s/%s' % (NAME, host), self.consumer_of)
            self.neighbour_hosts.append((alone, beside, greedy, healthy,
                                         vms))

    def neighbour(self):
        a = self.args
        side = self.sides.get(NAME)
        if side is None:
            return
        alone_ms, beside_ms = [], []
        crowd = 'beside %d x %d unreachable actions' % (
            a.neighbour_greedy, a.neighbour_actions)
        for i, (alone, beside, greedy, healthy, vms) in enumerate(
                self.neighbour_hosts):
            runs = [('alone', alone, alone_ms, None, ()),
                    (crowd, beside, beside_ms, greedy, vms)]
            # Each goes first in turn: the tail of the fault before (its
            # fencing, the events that causes) falls on both alike.
            for what, host, out, project, greedy_vms in (
                    runs[::-1] if i % 2 else runs):
                bench_util.say('scenario neighbour: host failure, %d VMs '
                               '%s' % (a.neighbour_vms, what))
                out.append(self._neighbour_fault(
                    side, host, healthy[host], project, greedy_vms))
        ok_alone = [v for v in alone_ms if v is not None]
        ok_beside = [v for v in beside_ms if v is not None]
        row = {'samples': len(alone_ms),
               'alone_ms': alone_ms, 'beside_ms': beside_ms,
               'alone_p50_ms': statistics.median(ok_alone)
               if ok_alone else None,
               # A lost healthy owner beside the greedy project: no figure.
               'beside_p50_ms': statistics.median(ok_beside)
               if ok_beside and len(ok_beside) == len(beside_ms) else None,
               'greedy_notifications': a.neighbour_greedy *
               a.neighbour_actions, 'greedy_hanging': a.neighbour_hanging}
        self.add('neighbour: %d VMs beside %d unreachable actions (last '
                 'owner p50 ms)' % (a.neighbour_vms, a.neighbour_greedy *
                                    a.neighbour_actions),
                 {'doctor_ext': row}, 'beside_p50_ms')

    def _neighbour_fault(self, side, host, vms, greedy=None, greedy_vms=()):
        """Ms to the last healthy owner of ``host``'s failure."""
        path = '/%s/%s' % (NAME, host)
        sent = time.time()
        side.host_down(host)
        ok = self.wait_path(path, len(vms), self.args.timeout)
        times = [r.time for r in self.received(path)]
        if greedy is not None:
            self._given_up(side, greedy, len(greedy_vms) *
                           self.args.neighbour_actions)
        self._settle(side, list(vms) + list(greedy_vms))
        return bench_util.ms(max(times) - sent) if ok and times else None

    def _given_up(self, side, project, count):
        """Wait until the ``count`` rows of ``project`` are all given up."""
        deadline = time.monotonic() + max(self.args.timeout, 300.0)
        states = {}
        while time.monotonic() < deadline:
            states = unreachable.outbox_states(side.stack.db.url, project)
            if states.get('given_up') == count:
                return
            time.sleep(0.5)
        bench_util.say('neighbour: greedy outbox not all given up: %s'
                       % states)

    def stop_neighbour(self):
        tarpit = getattr(self, 'tarpit', None)
        if tarpit is not None:
            tarpit.stop()
