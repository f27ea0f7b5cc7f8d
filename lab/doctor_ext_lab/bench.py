"""``doctor-ext-bench``: doctor-ext against the stock Doctor path, one run.

Both pipelines run side by side on this machine, each with its own RabbitMQ
vhost, Aodh database (PostgreSQL) and Nova double, and the same consumers:

* stock: a Doctor sample-style inspector, ``ceilometer-agent-notification``
  with the stock event pipeline (``notifier://?topic=alarm.all``),
  ``aodh-listener`` and ``aodh-notifier`` (:mod:`doctor_ext_lab.stock`);
* doctor-ext: ``ceilometer-agent-notification`` with doctor-ext.

Runs alternate between the two so that drift hits both. Scenarios: one
instance fault, host failure with N VMs, alarm scale, alarm freshness,
burst. Prints a table; ``--json FILE`` writes the figures, ``--plot FILE``
a PNG of latency against VMs and against alarms.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import uuid
import warnings

from doctor_ext_lab import bench_cold
from doctor_ext_lab import bench_floor
from doctor_ext_lab import bench_scenarios
from doctor_ext_lab import bench_targets
from doctor_ext_lab import bench_util
from doctor_ext_lab import consumer as consumer_mod
from doctor_ext_lab import nova as nova_mod
from doctor_ext_lab import services
from doctor_ext_lab import stock as stock_mod

PIPELINES = bench_util.PIPELINES
say, pct, ms = bench_util.say, bench_util.pct, bench_util.ms
cpu_seconds, rss_bytes = bench_util.cpu_seconds, bench_util.rss_bytes
index_bytes_per_alarm = bench_util.index_bytes_per_alarm


class Side:
    """One pipeline: its vhost, database, Nova double, agent, emitters."""

    def __init__(self, name, consumers, workdir, db_url, timeline=False,
                 agent_options=()):
        self.name = name
        self.consumers = consumers
        self.broker = services.Broker().start()
        self.nova = nova_mod.NovaDouble(transport_url=self.broker.url,
                                        notify_retry=0).start()
        cls = stock_mod.StockStack if name == 'stock' else services.Stack
        options = {}
        if name == 'doctor_ext':
            timeline = str(bool(timeline))
            options = {'doctor_evaluator': {'timeline_log': timeline},
                       'doctor_inspector': {'timeline_log': timeline}}
            for item in agent_options:
                key, _, value = item.partition('=')
                section, _, key = key.rpartition('.')
                options.setdefault(section, {})[key] = value
        self.stack = cls(self.nova.credentials(),
                         transport_url=self.broker.url, db_url=db_url,
                         workdir=os.path.join(workdir, name),
                         agent_options=options)
        os.makedirs(self.stack.workdir, exist_ok=True)
        self.stack.broker = self.broker
        self.inspector = None
        self.emitter = bench_floor.Emitter(self.broker.url)
        self._reporter = None
        self.alarm_rows = []

    def start_services(self):
        self.stack.db.start()
        self.stack.start_aodh()

    def flush_alarms(self):
        if self.alarm_rows:
            self.stack.db.insert_alarms(self.alarm_rows)
            self.alarm_rows = []

    def start_agent(self):
        self.flush_alarms()
        agent = self.stack.start_agent()
        if self.name == 'stock':
            self.inspector = stock_mod.SampleInspector(
                self.nova.credentials(), self.broker.url).start()
        return agent

    def restart(self):
        """Restart the evaluating processes (after loading alarms)."""
        self.flush_alarms()
        self.stop_agent()
        if self.name == 'stock':
            for p in list(self.stack.evaluators):
                p.stop()
                self.stack.processes.remove(p)
            self.stack.evaluators = [
                self.stack.start_aodh_service('aodh-listener')]
        self.stack.start_agent()

    @property
    def cpu_pids(self):
        """The processes whose CPU an event costs.

        Every process of the pipeline that handles it: the agent's tree;
        for stock also aodh-listener and aodh-notifier.
        """
        pids = [p.pid for p in self.stack.agents]
        if self.name == 'stock':
            pids += [p.pid for p in self.stack.processes
                     if p.name in ('aodh-listener', 'aodh-notifier')]
        return pids

    def stop_agent(self):
        """Stop the Ceilometer agent(s); their queues stay."""
        for p in list(self.stack.agents):
            p.stop()
            self.stack.processes.remove(p)
            self.stack.agents.remove(p)
            # The next agent takes this log file: its readiness lines
            # must be its own.
            if os.path.exists(p.log_file):
                os.rename(p.log_file, '%s.%d' % (p.log_file, time.time()))

    @property
    def evaluator_pid(self):
        if self.name == 'stock':
            return self.stack.evaluators[0].pid
        return self.stack.agents[0].pid

    # -- building ----------------------------------------------------------
    def add_vms(self, host, count, projects, path, consumer_of):
        """VMs on ``host`` over ``projects``, a Doctor alarm each."""
        self.nova.add_host(host)
        vms = []
        for i in range(count):
            project = projects[i % len(projects)]
            vm = self.nova.add_server(host, project)
            action = consumer_of(project).url(path)
            self.alarm_rows.append(services.alarm_row(project, vm, action))
            vms.append((vm, project))
        return vms

    # -- faults ------------------------------------------------------------
    def instance_error(self, vm, project, host):
        """Nova's legacy compute.instance.update for a VM gone to error."""
        self.emitter.instance_error(vm, project, host)

    def reporter(self):
        if self._reporter is None:
            # Signed with the secret the doctor-ext agent shares.
            self._reporter = self.stack.reporter()
        return self._reporter

    def host_down(self, host):
        """The monitor's report: on the bus (doctor-ext) or by HTTP."""
        if self.name == 'stock':
            import requests
            body = [{'id': str(uuid.uuid4()),
                     'time': datetime.datetime.utcnow().isoformat(),
                     'type': 'compute.host.down',
                     'details': {'hostname': host, 'status': 'down',
                                 'monitor': 'bench',
                                 'monitor_event_id': str(uuid.uuid4())}}]
            # The sample inspector answers once it has fenced: do not wait.
            import threading
            threading.Thread(target=requests.put, args=(self.inspector.url,),
                             kwargs={'json': body, 'timeout': 600},
                             daemon=True).start()
        else:
            self.reporter().report(host, monitor='bench')

    def stop(self):
        if self.inspector is not None:
            self.inspector.stop()
        if self._reporter is not None:
            self._reporter.close()
        self.stack.stop()
        self.nova.stop()


class Bench(bench_scenarios.Scenarios, bench_cold.ColdFault):
    def __init__(self, args):
        self.args = args
        self.results = []
        self.workdir = args.workdir or '/tmp/doctor-bench-%s' % (
            uuid.uuid4().hex[:6])
        os.makedirs(self.workdir, exist_ok=True)
        self.consumers = [consumer_mod.Consumer().start()
                          for _ in range(args.consumers)]
        self.sides = {}
        self.floor = None
        self.floor_urllib3 = None
        self.curves = {'vms': {}, 'alarms': {}, 'floor_vms': {}}

    def consumer_of(self, project):
        return self.consumers[hash(project) % len(self.consumers)]

    def wait_path(self, path, count, timeout):
        """Wait for ``count`` POSTs on ``path`` over all consumers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(c.count(path) for c in self.consumers) >= count:
                return True
            time.sleep(0.002)
        return False

    def received(self, path):
        return [r for c in self.consumers for r in c.received
                if r.path == path]

    # -- set-up --------------------------------------------------------------
    def setup(self):
        for name in PIPELINES:
            say('starting the %s services' % name)
            side = Side(name, self.consumers, self.workdir, self.args.db_url,
                        timeline=self.args.timeline,
                        agent_options=self.args.agent_option)
            self.sides[name] = side
            side.start_services()
        # The floor: same broker, same consumers, a vhost of its own; the
        # notifier's client, and urllib3 for the fan-out's comparison.
        self.floor = bench_floor.FloorSide(self.consumers, self.workdir)
        self.floor_urllib3 = bench_floor.FloorSide(
            self.consumers, self.workdir, client='urllib3')
        self.build()
        for name in PIPELINES:
            say('starting the %s agent (%d alarms)' % (
                name, len(self.sides[name].alarm_rows)))
            self.sides[name].start_agent()
        say('starting the floor listeners')
        self.floor.start()
        self.floor_urllib3.start()
        # The floor is the least any design can do: its connections to the
        # consumers are open before it is measured.
        for side in (self.floor, self.floor_urllib3):
            self._floor_host(side, 'warm-up')

    def build(self):
        a = self.args
        self.single = {}
        self.hosts = {}
        self.burst = {}
        self.burst_path = {}
        self.cold = {}
        self.cold_path = {}
        self.racks = {}
        for name, side in self.sides.items():
            projects = ['single-%d' % i for i in range(20)]
            self.single[name] = side.add_vms(
                'single-host', a.faults, projects, '/%s/single' % name,
                self.consumer_of)
            for n in a.vms:
                for lat in a.nova_latency:
                    variants = ('shortcut', 'conservative') \
                        if name == 'stock' else ('doctor_ext',)
                    for v in variants:
                        host = 'hf-%d-%d-%s' % (n, lat, v)
                        projects = ['%s-p%d' % (host, i)
                                    for i in range(max(1, n // 10))]
                        self.hosts[(name, n, lat, v)] = (
                            host, side.add_vms(host, n, projects,
                                               '/%s/%s' % (name, host),
                                               self.consumer_of))
            projects = ['burst-%d' % i for i in range(100)]
            self.burst[name] = side.add_vms(
                'burst-host', a.burst, projects, '/%s/burst' % name,
                self.consumer_of)
            self.burst_path[name] = '/%s/burst' % name
            self.cold[name] = side.add_vms(
                'cold-host', a.cold_repeat * (2 + a.cold_warm) + 1,
                ['cold-%d' % i for i in range(10)],
                '/%s/cold' % name, self.consumer_of)
            self.cold_path[name] = '/%s/cold' % name
            self.racks[name] = []
            for h in range(a.rack_hosts):
                host = 'rack-%d' % h
                projects = ['%s-p%d' % (host, i)
                            for i in range(max(1, a.rack_vms // 10))]
                self.racks[name].append((host, [vm for vm, _ in side.add_vms(
                    host, a.rack_vms, projects, '/%s/rack' % name,
                    self.consumer_of)]))
        self.build_floor()

    def build_floor(self):
        a = self.args
        f = self.floor
        projects = ['single-%d' % i for i in range(20)]
        self.single['floor'] = f.add_vms('single-host', a.faults, projects)
        self.burst['floor'] = f.add_vms(
            'burst-host', a.burst, ['burst-%d' % i for i in range(100)])
        self.burst_path['floor'] = f.path('burst-host')
        self.cold['floor'] = f.add_vms(
            'cold-host', a.cold_repeat * (2 + a.cold_warm) + 1,
            ['cold-%d' % i for i in range(10)])
        self.cold_path['floor'] = f.path('cold-host')
        self.racks['floor'] = [
            (host, [vm for vm, _ in f.add_vms(host, a.rack_vms, [
                '%s-p%d' % (host, i)
                for i in range(max(1, a.rack_vms // 10))])])
            for host in ('rack-%d' % h for h in range(a.rack_hosts))]
        for side in (self.floor, self.floor_urllib3):
            side.add_vms('hf-warm-up', max(a.vms), ['warm-%d' % i
                                                    for i in range(10)])
            for n in a.vms:
                host = 'hf-%d' % n
                side.add_vms(host, n, ['%s-p%d' % (host, i)
                                       for i in range(max(1, n // 10))])

    # -- scenarios -------------------------------------------------------
    def one_fault(self):
        say('scenario 1: %d single instance faults per pipeline'
            % self.args.faults)
        names = PIPELINES + ['floor']
        lat = {n: [] for n in names}
        lost = {n: 0 for n in names}
        for i in range(self.args.faults):
            for name in names:
                vm, project = self.single[name][i]
                if name == 'floor':
                    side, path = self.floor, self.floor.path('single-host')
                else:
                    side, path = self.sides[name], '/%s/single' % name
                before = sum(c.count(path) for c in self.consumers)
                sent = time.time()
                side.instance_error(vm, project, 'single-host')
                if not self.wait_path(path, before + 1, 10):
                    lost[name] += 1
                    continue
                got = [r for r in self.received(path)
                       if consumer_mod.instance_of(r.body) == vm]
                if got:
                    lat[name].append(got[0].time - sent)
        out = {}
        for name in names:
            v = lat[name]
            out[name] = {'faults': len(v) + lost[name], 'lost': lost[name],
                         'p50_ms': ms(pct(v, 50)), 'p95_ms': ms(pct(v, 95)),
                         'p99_ms': ms(pct(v, 99)),
                         'first_ms': ms(v[0]) if v else None}
        self.add('one instance fault (p50 ms)', out, 'p50_ms')

    def host_failures(self):
        a = self.args
        for lat in a.nova_latency:
            for n in a.vms:
                row = {}
                for name in PIPELINES:
                    side = self.sides[name]
                    side.nova.set_latency(lat / 1000.0)
                    variants = ('shortcut', 'conservative') \
                        if name == 'stock' else ('doctor_ext',)
                    for v in variants:
                        host, vms = self.hosts[(name, n, lat, v)]
                        if name == 'stock':
                            side.inspector.shortcut = v == 'shortcut'
                            side.inspector.refresh_servers()
                        say('scenario 2: %s (%s) host failure, %d VMs, '
                            'Nova %d ms' % (name, v, n, lat))
                        row[v] = self._host_failure(side, host, vms, name)
                    side.nova.set_latency(0)
                stock_best = min(
                    (row[v]['last_ms'] for v in ('shortcut', 'conservative')
                     if v in row and row[v]['last_ms'] is not None),
                    default=None)
                self.curves['vms'].setdefault(lat, {}).setdefault(
                    'stock', []).append((n, stock_best))
                doctor = row.get('doctor_ext', {})
                self.curves['vms'][lat].setdefault('doctor_ext', []).append(
                    (n, doctor.get('last_ms')))
                stock = {v: row[v] for v in ('shortcut', 'conservative')
                         if v in row}
                stock['last_ms'] = stock_best
                # The floor has no Nova to wait for: one broker hop, then
                # the fan-out of n POSTs from one process, with the
                # notifier's client and with urllib3.
                floor = self._floor_host(self.floor, n)
                floor['urllib3'] = self._floor_host(self.floor_urllib3, n)
                self.curves['floor_vms'].setdefault(n, []).append(
                    floor.get('last_ms'))
                self.add('host failure, %d VMs, Nova %d ms (last owner ms)'
                         % (n, lat), {'stock': stock, 'doctor_ext': doctor,
                                      'floor': floor}, 'last_ms')

    def _floor_host(self, side, n):
        host = 'hf-%s' % n
        n = len(side.hosts[host])
        path = side.path(host)
        say('scenario 2: floor (%s client) host failure, %d VMs'
            % (side.client, n))
        before = sum(c.count(path) for c in self.consumers)
        sent = time.time()
        side.host_down(host)
        ok = self.wait_path(path, before + n, self.args.timeout)
        times = sorted(r.time for r in self.received(path) if r.time >= sent)
        return {'vms': n, 'notified': len(times),
                'first_ms': ms(times[0] - sent) if times else None,
                'last_ms': ms(times[-1] - sent) if times and ok else None}

    def _host_failure(self, side, host, vms, name):
        path = '/%s/%s' % (name, host)
        sent = time.time()
        side.host_down(host)
        ok = self.wait_path(path, len(vms), self.args.timeout)
        got = self.received(path)
        times = sorted(r.time for r in got)
        unique = {consumer_mod.instance_of(r.body) for r in got}
        result = {'vms': len(vms), 'notified': len(unique),
                  'lost': len(vms) - len(unique),
                  'duplicates': len(got) - len(unique),
                  'first_ms': ms(times[0] - sent) if times else None,
                  'last_ms': ms(times[-1] - sent) if times and ok else None,
                  'spread_ms': ms(times[-1] - times[0]) if times else None}
        self._settle(side, vms)
        return result

    def _settle(self, side, vms):
        """Let the fencing of the host end before the next measurement.

        Both inspectors fence after (or while) the owners are told: 1,000
        reset-state calls and the Nova notifications they cause would
        otherwise take the CPU from the next scenario.
        """
        ids = [vm for vm, _ in vms]
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            # ready() is None when the broker could not be asked: not
            # drained.
            if (all((side.nova.server(vm) or {}).get('status') == 'ERROR'
                    for vm in ids) and
                    side.broker.ready('notifications.info') == 0):
                return
            time.sleep(0.1)
        say('%s: fencing still going on after %.0f s' % (
            side.name, self.args.timeout))

    def freshness(self):
        """Alarm creation to the first notification of an event for it.

        Stock's samples run side by side, each in a project of its own
        (each takes up to Aodh's 60 s cache TTL); doctor-ext's one after
        the other.
        """
        import concurrent.futures
        a = self.args
        row = {}
        for name in PIPELINES:
            side = self.sides[name]
            side.nova.add_host('fresh-host')
            if name == 'stock':
                with concurrent.futures.ThreadPoolExecutor(
                        a.fresh_samples_stock) as pool:
                    values = list(pool.map(
                        lambda i: self._fresh_sample(side, name, i),
                        range(a.fresh_samples_stock)))
            else:
                values = [self._fresh_sample(side, name, i)
                          for i in range(a.fresh_samples)]
            ok = [v for v in values if v is not None]
            row[name] = {'samples': len(values),
                         'not_effective_within_s': a.fresh_timeout
                         if len(ok) < len(values) else None,
                         'median_ms': ms(statistics.median(ok)) if ok
                         else None,
                         'max_ms': ms(max(ok)) if ok else None}
        self.add('alarm freshness (median ms)', row, 'median_ms')

    def _fresh_sample(self, side, name, i):
        a = self.args
        project = 'fresh-%s-%d' % (name, i)
        stack = side.stack
        warm = side.nova.add_server('fresh-host', project)
        warm_path = '/%s/fresh-warm-%d' % (name, i)
        stack.create_doctor_alarm(project, warm, self.consumer_of(
            project).url(warm_path), repeat=True)
        # The project's alarms are in use (Aodh's cache is warm) when a
        # new one is created: the case its TTL cache hides.
        deadline = time.monotonic() + a.fresh_timeout
        while not self.wait_path(warm_path, 1, 0.2):
            side.instance_error(warm, project, 'fresh-host')
            if time.monotonic() > deadline:
                break
        vm = side.nova.add_server('fresh-host', project)
        path = '/%s/fresh-%d' % (name, i)
        say('scenario 4: %s alarm freshness, sample %d' % (name, i))
        stack.create_doctor_alarm(project, vm, self.consumer_of(
            project).url(path))
        accepted = time.time()
        deadline = time.monotonic() + a.fresh_timeout
        while time.monotonic() < deadline:
            side.instance_error(vm, project, 'fresh-host')
            if self.wait_path(path, 1, 0.05):
                return self.received(path)[0].time - accepted
        return None

    # -- output ----------------------------------------------------------
    def add(self, name, row, key, higher_is_better=False):
        for side in ('stock', 'doctor_ext'):
            row.setdefault(side, {})
        s, d = row['stock'].get(key), row['doctor_ext'].get(key)
        ratio = None
        if s and d:
            ratio = round(d / s if higher_is_better else s / d, 2)
        entry = {'name': name, 'stock': row['stock'],
                 'doctor_ext': row['doctor_ext'], 'ratio': ratio,
                 'headline': key}
        f = (row.get('floor') or {}).get(key)
        if 'floor' in row:
            # doctor-ext against the floor: latency / floor latency, or
            # rate / floor rate.
            entry['floor'] = row['floor']
            entry['vs_floor'] = round(d / f, 2) if d and f else None
        self.results.append(entry)
        say('%s: stock %s, doctor-ext %s, ratio %s, floor %s' % (
            name, s, d, ratio, f))

    def machine(self):
        import importlib.metadata as md
        return {
            'date': datetime.datetime.utcnow().strftime('%Y-%m-%d'),
            'cpus': os.cpu_count(), 'python': platform.python_version(),
            'platform': platform.platform(),
            'versions': {p: md.version(p) for p in (
                'ceilometer', 'aodh', 'oslo.messaging', 'doctor-ext')},
            'broker': 'RabbitMQ on 127.0.0.1 (one vhost per pipeline)',
            'database': 'PostgreSQL on 127.0.0.1 (one per pipeline)',
            'nova_latency_ms': self.args.nova_latency,
        }

    def table(self):
        lines = ['%-52s %10s %10s %8s %9s %8s' % (
            'scenario', 'stock', 'doctor-ext', 'ratio', 'floor', 'vs floor'),
            '-' * 100]
        for r in self.results:
            key = r['headline']
            lines.append('%-52s %10s %10s %8s %9s %8s' % (
                r['name'], r['stock'].get(key), r['doctor_ext'].get(key),
                r['ratio'], r.get('floor', {}).get(key), r.get('vs_floor')))
        lines += ['', 'targets:'] + [
            '  %-70s %8s %9s %s' % (t['figure'], t['value'], t['target'],
                                    {True: 'met', False: 'MISSED',
                                     None: 'n/a'}[t['met']])
            for t in self.targets()]
        return '\n'.join(lines)

    def targets(self):
        return bench_targets.evaluate(self.results, max(self.args.vms),
                                      max(self.args.alarm_scale))

    def rst(self, path, duration):
        """The table of this run, for the performance page to include."""
        m = self.machine()
        rows = [('Scenario', 'Figure', 'Stock', 'doctor-ext', 'Ratio',
                 'Floor', 'vs floor')]
        for r in self.results:
            key = r['headline']
            rows.append((r['name'], key, str(r['stock'].get(key)),
                         str(r['doctor_ext'].get(key)), str(r['ratio']),
                         str(r.get('floor', {}).get(key, '')),
                         str(r.get('vs_floor', ''))))
        widths = [max(len(row[i]) for row in rows) for i in range(7)]
        sep = '  '.join('=' * w for w in widths)
        lines = ['.. Generated by doctor-ext-bench; do not edit.', '',
                 'Run of %s on %d cores, Python %s, %s; Ceilometer %s, '
                 'Aodh %s; modeled Nova latency %s ms; %.0f s in all.'
                 % (m['date'], m['cpus'], m['python'], m['platform'],
                    m['versions']['ceilometer'], m['versions']['aodh'],
                    ' and '.join(str(x) for x in m['nova_latency_ms']),
                    duration), '', sep]
        for i, row in enumerate(rows):
            lines.append('  '.join(c.ljust(w) for c, w in zip(row, widths))
                         .rstrip())
            if i == 0:
                lines.append(sep)
        lines += [sep, '', 'Targets of this run (ratios of its own figures):',
                  ''] + bench_targets.rst_lines(self.targets()) + ['']
        with open(path, 'w') as f:
            f.write('\n'.join(lines))

    def plot(self, path):
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
        fig, axes = plt.subplots(2, 2, figsize=(11, 8.4))
        (ax1, ax2), (ax3, ax4) = axes
        for lat, curves in sorted(self.curves['vms'].items()):
            for name, style in (('stock', '--'), ('doctor_ext', '-')):
                pts = [(n, v) for n, v in curves.get(name, []) if v]
                if pts:
                    ax1.plot(*zip(*pts), style, marker='o',
                             label='%s, Nova %d ms' % (
                                 name.replace('_', '-'), lat))
        pts = [(n, min(v for v in vs if v)) for n, vs in
               sorted(self.curves['floor_vms'].items()) if any(vs)]
        if pts:
            ax1.plot(*zip(*pts), ':', marker='s', color='black',
                     label='floor (broker hop + fan-out)')
        ax1.set_xscale('log')
        ax1.set_yscale('log')
        ax1.axhline(1000, color='grey', lw=0.8)
        ax1.set_xlabel('VMs on the failing host')
        ax1.set_ylabel('report to last owner notified (ms)')
        ax1.set_title('Host failure')
        ax1.legend(fontsize=8)
        for name, style in (('stock', '--'), ('doctor_ext', '-')):
            pts = [(n, v) for n, v in self.curves['alarms'].get(name, [])
                   if v]
            if pts:
                ax2.plot(*zip(*pts), style, marker='o',
                         label=name.replace('_', '-'))
        ax2.set_xscale('log')
        ax2.set_yscale('log')
        ax2.set_xlabel('event alarms in place (one project)')
        ax2.set_ylabel('fault to owner notified, p50 (ms)')
        ax2.set_title('Alarm scale')
        ax2.legend(fontsize=8)
        self._bars(ax3, self.curves.get('rack', {}),
                   'rack (%d hosts x %d VMs): last owner (ms)' % (
                       self.args.rack_hosts, self.args.rack_vms))
        cold = next((r for r in self.results
                     if r['name'].startswith('cold fault')), None)
        if cold:
            names = [n for n in ('stock', 'doctor_ext', 'floor')
                     if cold.get(n)]
            x = range(len(names))
            ax4.bar([i - 0.2 for i in x],
                    [cold[n].get('warm_p50_ms') or 0 for n in names], 0.4,
                    label='warm p50')
            ax4.bar([i + 0.2 for i in x],
                    [cold[n].get('cold_ms') or 0 for n in names], 0.4,
                    label='cold (after %d s idle)' % self.args.cold_idle)
            ax4.set_xticks(list(x))
            ax4.set_xticklabels([n.replace('_', '-') for n in names])
            ax4.set_yscale('log')
            ax4.set_ylabel('fault to owner notified (ms)')
            ax4.legend(fontsize=8)
        ax4.set_title('Cold fault')
        fig.suptitle('doctor-ext vs stock Ceilometer+Aodh and the floor '
                     '(%s, %d cores, shared)' % (
                         self.machine()['date'], os.cpu_count()))
        fig.tight_layout()
        fig.savefig(path, dpi=110)

    @staticmethod
    def _bars(ax, values, title):
        names = [n for n in ('stock', 'doctor_ext', 'floor')
                 if values.get(n)]
        if names:
            bars = ax.bar([n.replace('_', '-') for n in names],
                          [values[n] for n in names],
                          color=[{'stock': 'tab:blue',
                                  'doctor_ext': 'tab:orange',
                                  'floor': 'black'}[n] for n in names])
            for bar, n in zip(bars, names):
                ax.annotate('%.0f' % values[n], (bar.get_x() +
                            bar.get_width() / 2, bar.get_height()),
                            ha='center', va='bottom', fontsize=8)
            ax.set_yscale('log')
        ax.set_title(title)

    def teardown(self):
        for side in list(self.sides.values()) + [
                s for s in (self.floor, self.floor_urllib3) if s]:
            try:
                side.stop()
            except Exception as e:
                say('stopping %s: %s' % (side.name, e))
        for c in self.consumers:
            c.stop()


def parse_args(argv):
    p = argparse.ArgumentParser(prog='doctor-ext-bench',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--faults', type=int, default=200)
    p.add_argument('--vms', type=int, nargs='+', default=[10, 100, 1000])
    p.add_argument('--nova-latency', type=int, nargs='+', default=[0, 100],
                   help='modeled Nova latency per call, ms')
    p.add_argument('--alarm-scale', type=int, nargs='+',
                   default=[100, 10000, 100000])
    p.add_argument('--scale-faults', type=int, default=20)
    p.add_argument('--alarm-scale-more', type=int, nargs='*',
                   default=[1000000],
                   help='further alarm levels, doctor-ext only above '
                        '--stock-scale-max')
    p.add_argument('--stock-scale-max', type=int, default=100000,
                   help='largest alarm level stock is run at')
    p.add_argument('--scale-faults-stock-max', type=int, default=10,
                   help='faults at 100,000 alarms for stock, beside the '
                        'first one after the restart')
    p.add_argument('--restart-timeout', type=float, default=300.0)
    p.add_argument('--fresh-samples', type=int, default=10)
    p.add_argument('--fresh-samples-stock', type=int, default=5,
                   help='run side by side, each in its own project')
    p.add_argument('--fresh-timeout', type=float, default=70.0)
    p.add_argument('--burst', type=int, default=10000)
    p.add_argument('--burst-timeout', type=float, default=180.0)
    p.add_argument('--cold-idle', type=float, default=300.0,
                   help='seconds every pipeline idles before the cold '
                        'fault')
    p.add_argument('--cold-warm', type=int, default=20,
                   help='warm faults after the cold one, for the ratio')
    p.add_argument('--cold-repeat', type=int, default=1,
                   help='cycles of idle, cold fault and warm faults: one '
                        'cold sample each (the median is reported)')
    p.add_argument('--cold-checkpoint', action='store_true',
                   help='each cold cycle ends with a forced PostgreSQL '
                        'CHECKPOINT and one more doctor-ext fault')
    p.add_argument('--cold-profile', metavar='DIR',
                   help="py-spy (on PATH) samples the doctor-ext agent's "
                        'worker around each cold fault and the first warm '
                        'one after it; raw profiles to DIR')
    p.add_argument('--agent-option', action='append', default=[],
                   metavar='SECTION.KEY=VALUE',
                   help="an option of the doctor-ext agent's "
                        'ceilometer.conf, e.g. notification.workers=2 '
                        '(repeatable)')
    p.add_argument('--rack-hosts', type=int, default=10)
    p.add_argument('--rack-vms', type=int, default=200)
    p.add_argument('--rack-stock-timeout', type=float, default=300.0)
    p.add_argument('--consumers', type=int, default=10)
    p.add_argument('--timeout', type=float, default=60.0)
    p.add_argument('--db-url',
                   default='postgresql://postgres@127.0.0.1/postgres')
    p.add_argument('--scenarios', nargs='+', default=[
        'one', 'host', 'rack', 'fresh', 'burst', 'scale', 'cold'])
    p.add_argument('--only', choices=['stock', 'doctor_ext'],
                   help='run one pipeline only (for profiling; no ratios)')
    p.add_argument('--json', metavar='FILE')
    p.add_argument('--plot', metavar='FILE')
    p.add_argument('--rst', metavar='FILE',
                   help='write the table as reStructuredText')
    p.add_argument('--workdir')
    p.add_argument('--timeline', action='store_true',
                   help="doctor-ext's timeline log on (for profiling; it "
                        "costs time)")
    return p.parse_args(argv)


def main(argv=None):
    # oslo.service warns that eventlet is deprecated when Ceilometer's
    # modules load: true, but not this command's business.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.alarm_scale = sorted(set(args.alarm_scale + args.alarm_scale_more))
    if args.only:
        # Profiling one side: the other is neither started nor measured.
        PIPELINES[:] = [args.only]
    bench = Bench(args)
    started = time.monotonic()
    try:
        bench.setup()
        steps = {'one': bench.one_fault, 'host': bench.host_failures,
                 'fresh': bench.freshness, 'burst': bench.bursts,
                 'scale': bench.alarm_scale, 'cold': bench.cold_fault,
                 'rack': bench.rack}
        for name in args.scenarios:
            steps[name]()
    except KeyboardInterrupt:
        say('interrupted')
        return 130
    finally:
        bench.teardown()
    print()
    print(bench.table())
    out = {'scenarios': bench.results, 'machine': bench.machine(),
           'targets': bench.targets(),
           'duration_s': round(time.monotonic() - started, 1)}
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2, sort_keys=True)
        say('wrote %s' % args.json)
    if args.plot:
        bench.plot(args.plot)
        say('wrote %s' % args.plot)
    if args.rst:
        bench.rst(args.rst, out['duration_s'])
        say('wrote %s' % args.rst)
    return 0


if __name__ == '__main__':
    sys.exit(main())
