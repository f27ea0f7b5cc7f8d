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

from doctor_ext_lab import consumer as consumer_mod
from doctor_ext_lab import nova as nova_mod
from doctor_ext_lab import services
from doctor_ext_lab import stock as stock_mod

PIPELINES = ['stock', 'doctor_ext']


def say(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 2)


def process_tree(pid):
    import psutil
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid):
    total = 0.0
    for p in process_tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:
            pass
    return total


def index_bytes_per_alarm(db_url):
    """Python memory the evaluator keeps per alarm once loaded and indexed.

    The agent's own loading path (store, compile, index), run here under
    tracemalloc against the pipeline's database: what the index holds,
    apart from the interpreter, Ceilometer and the allocator's slack that
    the agent's RSS also counts.
    """
    import gc
    import tracemalloc

    from oslo_config import cfg

    from doctor_ext.evaluator import index as index_mod
    from doctor_ext.evaluator import store as store_mod
    from doctor_ext.evaluator import sync as sync_mod
    conf = cfg.ConfigOpts()
    conf([], project='doctor-bench')
    store = store_mod.AodhStore(conf)
    conf.set_override('aodh_connection', db_url, group='doctor_evaluator')
    try:
        list(store.event_alarms(page=10))       # imports, pool, caches
        gc.collect()
        tracemalloc.start()
        try:
            index = index_mod.AlarmIndex()
            index.replace_all(sync_mod.compile_all(store.event_alarms()))
            gc.collect()
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return round(kept / max(1, len(index)), 1), len(index)
    finally:
        store.dispose()


def rss_bytes(pid):
    """RSS of the worker (largest process of the tree)."""
    best = 0
    for p in process_tree(pid):
        try:
            best = max(best, p.memory_info().rss)
        except Exception:
            pass
    return best


class Side:
    """One pipeline: its vhost, database, Nova double, agent, emitters."""

    def __init__(self, name, consumers, workdir, db_url):
        self.name = name
        self.consumers = consumers
        self.broker = services.Broker().start()
        self.nova = nova_mod.NovaDouble(transport_url=self.broker.url,
                                        notify_retry=0).start()
        cls = stock_mod.StockStack if name == 'stock' else services.Stack
        options = {}
        if name == 'doctor_ext':
            options = {'doctor_evaluator': {'timeline_log': 'False'},
                       'doctor_inspector': {'timeline_log': 'False'}}
        self.stack = cls(self.nova.credentials(),
                         transport_url=self.broker.url, db_url=db_url,
                         workdir=os.path.join(workdir, name),
                         agent_options=options)
        os.makedirs(self.stack.workdir, exist_ok=True)
        self.stack.broker = self.broker
        self.inspector = None
        self._nova_notifier = None
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
        for p in list(self.stack.agents):
            p.stop()
            self.stack.processes.remove(p)
            self.stack.agents.remove(p)
        if self.name == 'stock':
            for p in list(self.stack.evaluators):
                p.stop()
                self.stack.processes.remove(p)
            self.stack.evaluators = [
                self.stack.start_aodh_service('aodh-listener')]
        self.stack.start_agent()

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
    def nova_notifier(self):
        if self._nova_notifier is None:
            from oslo_config import cfg
            import oslo_messaging

            from doctor_ext.monitor import report
            conf = cfg.ConfigOpts()
            conf([], project='bench')
            transport = report.get_transport(conf, url=self.broker.url,
                                             exchange='nova')
            self._nova_notifier = oslo_messaging.Notifier(
                transport, driver='messagingv2', topics=['notifications'],
                publisher_id='nova-compute:bench')
        return self._nova_notifier

    def instance_error(self, vm, project, host):
        """Nova's legacy compute.instance.update for a VM gone to error."""
        self.nova_notifier().info({}, 'compute.instance.update', {
            'instance_id': vm, 'tenant_id': project, 'user_id': 'u',
            'state': 'error', 'old_state': 'active', 'host': host,
            'node': host, 'display_name': vm, 'state_description': ''})

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


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = []
        self.workdir = args.workdir or '/tmp/doctor-bench-%s' % (
            uuid.uuid4().hex[:6])
        os.makedirs(self.workdir, exist_ok=True)
        self.consumers = [consumer_mod.Consumer().start()
                          for _ in range(args.consumers)]
        self.sides = {}
        self.curves = {'vms': {}, 'alarms': {}}

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
            side = Side(name, self.consumers, self.workdir, self.args.db_url)
            self.sides[name] = side
            side.start_services()
        self.build()
        for name in PIPELINES:
            say('starting the %s agent (%d alarms)' % (
                name, len(self.sides[name].alarm_rows)))
            self.sides[name].start_agent()

    def build(self):
        a = self.args
        self.single = {}
        self.hosts = {}
        self.burst = {}
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

    # -- scenarios -------------------------------------------------------
    def one_fault(self):
        say('scenario 1: %d single instance faults per pipeline'
            % self.args.faults)
        lat = {n: [] for n in PIPELINES}
        lost = {n: 0 for n in PIPELINES}
        for i in range(self.args.faults):
            for name in PIPELINES:
                vm, project = self.single[name][i]
                path = '/%s/single' % name
                before = sum(c.count(path) for c in self.consumers)
                sent = time.time()
                self.sides[name].instance_error(vm, project, 'single-host')
                if not self.wait_path(path, before + 1, 10):
                    lost[name] += 1
                    continue
                got = [r for r in self.received(path)
                       if _instance(r.body) == vm]
                if got:
                    lat[name].append(got[0].time - sent)
        out = {}
        for name in PIPELINES:
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
                self.add('host failure, %d VMs, Nova %d ms (last owner ms)'
                         % (n, lat), {'stock': stock, 'doctor_ext': doctor},
                         'last_ms')

    def _host_failure(self, side, host, vms, name):
        path = '/%s/%s' % (name, host)
        sent = time.time()
        side.host_down(host)
        ok = self.wait_path(path, len(vms), self.args.timeout)
        got = self.received(path)
        times = sorted(r.time for r in got)
        unique = {_instance(r.body) for r in got}
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
            if (all((side.nova.server(vm) or {}).get('status') == 'ERROR'
                    for vm in ids) and
                    not side.broker.ready('notifications.info')):
                return
            time.sleep(0.1)
        say('%s: fencing still going on after %.0f s' % (
            side.name, self.args.timeout))

    def alarm_scale(self):
        a = self.args
        levels = sorted(a.alarm_scale)
        loaded = {name: 0 for name in PIPELINES}
        rss_base = {}
        for level in levels:
            row = {}
            for name in PIPELINES:
                side = self.sides[name]
                add = level - loaded[name]
                say('scenario 3: %s with %d alarms in place (+%d)'
                    % (name, level, add))
                project = 'scale'
                host = 'scale-host-%d' % level
                vms = side.add_vms(host, min(add, a.scale_faults), [project],
                                   '/%s/scale-%d' % (name, level),
                                   self.consumer_of)
                side.alarm_rows.extend(
                    services.alarm_row(project, str(uuid.uuid4()),
                                       self.consumer_of(project).url(
                                           '/never'))
                    for _ in range(add - len(vms)))
                loaded[name] = level
                side.restart()
                pid = side.evaluator_pid
                faults = vms[:a.scale_faults if name == 'doctor_ext' or
                             level < 100000 else a.scale_faults_stock_max]
                path = '/%s/scale-%d' % (name, level)
                lat = []
                # Warm up (the stock evaluator loads the project's alarms
                # on its first event; that one is reported apart).
                first = None
                cpu0 = cpu_seconds(pid)
                for i, (vm, p) in enumerate(faults):
                    sent = time.time()
                    side.instance_error(vm, p, host)
                    if not self.wait_path(path, i + 1, a.timeout):
                        break
                    got = [r for r in self.received(path)
                           if _instance(r.body) == vm]
                    if not got:
                        continue
                    if first is None:
                        first = got[0].time - sent
                    else:
                        lat.append(got[0].time - sent)
                cpu = cpu_seconds(pid) - cpu0
                rss = rss_bytes(side.stack.agents[0].pid)
                rss_base.setdefault(name, (level, rss))
                row[name] = {
                    'alarms': level, 'faults': len(faults),
                    'p50_ms': ms(statistics.median(lat)) if lat else None,
                    'first_ms': ms(first),
                    'cpu_ms_per_event': ms(cpu / max(1, len(faults))),
                    'agent_rss_mib': round(rss / 2 ** 20, 1)}
                if name == 'stock':
                    row[name]['aodh_listener_rss_mib'] = round(
                        rss_bytes(pid) / 2 ** 20, 1)
                base_level, base_rss = rss_base[name]
                if level > base_level:
                    row[name]['rss_bytes_per_alarm'] = round(
                        (rss - base_rss) / (level - base_level), 1)
                if name == 'doctor_ext' and level == levels[-1]:
                    per_alarm, count = index_bytes_per_alarm(
                        side.stack.db.url)
                    row[name].update(index_bytes_per_alarm=per_alarm,
                                     index_alarms=count)
                self.curves['alarms'].setdefault(name, []).append(
                    (level, row[name]['p50_ms']))
            self.add('alarm scale, %d alarms (p50 ms)' % level, row,
                     'p50_ms')

    def freshness(self):
        a = self.args
        row = {}
        for name in PIPELINES:
            side = self.sides[name]
            project = 'fresh-%s' % name
            samples = a.fresh_samples if name == 'doctor_ext' else \
                a.fresh_samples_stock
            values = []
            side.nova.add_host('fresh-host')
            warm = side.nova.add_server('fresh-host', project)
            stack = side.stack
            warm_path = '/%s/fresh-warm' % name
            stack.create_doctor_alarm(project, warm, self.consumer_of(
                project).url(warm_path), repeat=True)
            for i in range(samples):
                # The project's alarms are in use (Aodh's cache is warm)
                # when a new one is created: the case its TTL cache hides.
                warmed = sum(c.count(warm_path) for c in self.consumers)
                deadline = time.monotonic() + a.fresh_timeout
                while not self.wait_path(warm_path, warmed + 1, 0.2):
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
                got = None
                while time.monotonic() < deadline:
                    side.instance_error(vm, project, 'fresh-host')
                    if self.wait_path(path, 1, 0.05):
                        got = self.received(path)[0].time
                        break
                values.append(got - accepted if got else None)
            ok = [v for v in values if v is not None]
            row[name] = {'samples': len(values),
                         'not_effective_within_s': a.fresh_timeout
                         if len(ok) < len(values) else None,
                         'median_ms': ms(statistics.median(ok)) if ok
                         else None,
                         'max_ms': ms(max(ok)) if ok else None}
        self.add('alarm freshness (median ms)', row, 'median_ms')

    def bursts(self):
        a = self.args
        row = {}
        for name in PIPELINES:
            side = self.sides[name]
            say('scenario 5: %s burst of %d fault events' % (name, a.burst))
            path = '/%s/burst' % name
            pid = side.evaluator_pid
            cpu0 = cpu_seconds(pid)
            start = time.time()
            for vm, project in self.burst[name]:
                side.instance_error(vm, project, 'burst-host')
            sent = time.time()
            self.wait_path(path, a.burst, a.burst_timeout)
            got = self.received(path)
            unique = {_instance(r.body) for r in got}
            last = max((r.time for r in got), default=None)
            dur = (last - start) if last else None
            row[name] = {
                'events': a.burst, 'send_s': round(sent - start, 3),
                'delivered': len(unique), 'lost': a.burst - len(unique),
                'duplicates': len(got) - len(unique),
                'duration_s': round(dur, 3) if dur else None,
                'events_per_s': round(len(unique) / dur, 1) if dur else None,
                'cpu_ms_per_event': ms((cpu_seconds(pid) - cpu0) / a.burst)}
        self.add('burst of %d faults (events/s)' % a.burst, row,
                 'events_per_s', higher_is_better=True)

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
        self.results.append(entry)
        say('%s: stock %s, doctor-ext %s, ratio %s' % (name, s, d, ratio))

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
        lines = ['%-52s %12s %12s %8s' % ('scenario', 'stock',
                                          'doctor-ext', 'ratio'),
                 '-' * 88]
        for r in self.results:
            key = r['headline']
            lines.append('%-52s %12s %12s %8s' % (
                r['name'], r['stock'].get(key), r['doctor_ext'].get(key),
                r['ratio']))
        return '\n'.join(lines)

    def rst(self, path, duration):
        """The table of this run, for the performance page to include."""
        m = self.machine()
        rows = [('Scenario', 'Figure', 'Stock', 'doctor-ext', 'Ratio')]
        for r in self.results:
            key = r['headline']
            rows.append((r['name'], key, str(r['stock'].get(key)),
                         str(r['doctor_ext'].get(key)), str(r['ratio'])))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
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
        lines += [sep, '']
        with open(path, 'w') as f:
            f.write('\n'.join(lines))

    def plot(self, path):
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for lat, curves in sorted(self.curves['vms'].items()):
            for name, style in (('stock', '--'), ('doctor_ext', '-')):
                pts = [(n, v) for n, v in curves.get(name, []) if v]
                if pts:
                    ax1.plot(*zip(*pts), style, marker='o',
                             label='%s, Nova %d ms' % (
                                 name.replace('_', '-'), lat))
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
        fig.suptitle('doctor-ext vs stock Ceilometer+Aodh (%s, %d cores)'
                     % (self.machine()['date'], os.cpu_count()))
        fig.tight_layout()
        fig.savefig(path, dpi=110)

    def teardown(self):
        for side in self.sides.values():
            try:
                side.stop()
            except Exception as e:
                say('stopping %s: %s' % (side.name, e))
        for c in self.consumers:
            c.stop()


def _instance(body):
    try:
        for name, _, value in body['reason_data']['event']['traits']:
            if name == 'instance_id':
                return value
    except (KeyError, TypeError, ValueError):
        pass
    return None


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
    p.add_argument('--scale-faults-stock-max', type=int, default=5)
    p.add_argument('--fresh-samples', type=int, default=10)
    p.add_argument('--fresh-samples-stock', type=int, default=1)
    p.add_argument('--fresh-timeout', type=float, default=70.0)
    p.add_argument('--burst', type=int, default=10000)
    p.add_argument('--burst-timeout', type=float, default=180.0)
    p.add_argument('--consumers', type=int, default=10)
    p.add_argument('--timeout', type=float, default=60.0)
    p.add_argument('--db-url',
                   default='postgresql://postgres@127.0.0.1/postgres')
    p.add_argument('--scenarios', nargs='+', default=[
        'one', 'host', 'fresh', 'burst', 'scale'])
    p.add_argument('--only', choices=['stock', 'doctor_ext'],
                   help='run one pipeline only (for profiling; no ratios)')
    p.add_argument('--json', metavar='FILE')
    p.add_argument('--plot', metavar='FILE')
    p.add_argument('--rst', metavar='FILE',
                   help='write the table as reStructuredText')
    p.add_argument('--workdir')
    return p.parse_args(argv)


def main(argv=None):
    # oslo.service warns that eventlet is deprecated when Ceilometer's
    # modules load: true, but not this command's business.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.only:
        # Profiling one side: the other is neither started nor measured.
        PIPELINES[:] = [args.only]
    bench = Bench(args)
    started = time.monotonic()
    try:
        bench.setup()
        steps = {'one': bench.one_fault, 'host': bench.host_failures,
                 'fresh': bench.freshness, 'burst': bench.bursts,
                 'scale': bench.alarm_scale}
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
