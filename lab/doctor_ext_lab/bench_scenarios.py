"""Scenarios of ``doctor-ext-bench`` measured against the floor.

A mixin of :class:`doctor_ext_lab.bench.Bench`: the burst (the queue
pre-loaded with the pipeline stopped), the rack, and the
alarm scale up to a million alarms with the first event after a restart.
Every scenario here runs the floor (:mod:`doctor_ext_lab.floor`) in the
same run where it has one.
"""

import statistics
import time
import uuid

from doctor_ext_lab import bench_floor
from doctor_ext_lab import bench_util
from doctor_ext_lab import consumer as consumer_mod
from doctor_ext_lab import services


_JSON_COLUMNS = ('ok_actions', 'alarm_actions', 'insufficient_data_actions',
                 'rule', 'time_constraints')


def copy_alarms(db, rows):
    """Load alarm rows as Aodh's storage would write them, with COPY.

    A million rows through the ORM's INSERT take minutes; COPY takes
    seconds. Aodh's JSON columns are text, encoded here as it encodes them.
    """
    import json

    from aodh.storage.sqlalchemy import models
    import sqlalchemy as sa

    from doctor_ext.db import api as db_api
    rows = [dict(r, **{k: json.dumps(r[k]) for k in _JSON_COLUMNS})
            for r in rows]
    engine = sa.create_engine(db._driver_url(db.url))
    try:
        with engine.begin() as conn:
            db_api.copy_rows(conn, models.Alarm.__table__, rows)
    finally:
        engine.dispose()


class Scenarios:

    # -- helpers -----------------------------------------------------------
    def wait_paths(self, paths, count, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(c.count(p) for c in self.consumers
                   for p in paths) >= count:
                return True
            time.sleep(0.002)
        return False

    def received_paths(self, paths):
        paths = set(paths)
        return [r for c in self.consumers for r in c.received
                if r.path in paths]

    def _fault_latency(self, side, vm, project, host, path, timeout):
        """Seconds from one fault on the bus to its owner's POST."""
        before = sum(c.count(path) for c in self.consumers)
        sent = time.time()
        side.instance_error(vm, project, host)
        if not self.wait_path(path, before + 1, timeout):
            return None
        got = [r for r in self.received(path)
               if consumer_mod.instance_of(r.body) == vm]
        return got[0].time - sent if got else None

    # -- burst ---------------------------------------------------------------
    def bursts(self):
        """N fault events queued with the pipeline stopped, then started.

        The rate is taken from the first POST to the last, so that it is
        the pipeline's and not the emitter's; the emitter's rate is
        reported beside it. Events not delivered within the window are told
        apart: still queued on the broker (the window was too short) or
        gone (lost).
        """
        lab = bench_util
        a = self.args
        row = {}
        for name in lab.PIPELINES + ['floor']:
            side = self.floor if name == 'floor' else self.sides[name]
            lab.say('scenario 5: %s burst of %d fault events (pre-loaded)'
                    % (name, a.burst))
            path = self.burst_path[name]
            if name == 'floor':
                side.stop_listener()
            else:
                side.stop_agent()
            start = time.time()
            for vm, project in self.burst[name]:
                side.instance_error(vm, project, 'burst-host')
            sent = time.time() - start
            started = time.time()
            if name == 'floor':
                side.start()
                pids = [side.pid]
            else:
                side.stack.start_agent(wait=False)
                pids = side.cpu_pids
            cpu0 = lab.cpu_seconds(pids)
            self.wait_path(path, a.burst, a.burst_timeout)
            cpu = lab.cpu_seconds(pids) - cpu0
            got = self.received(path)
            unique = {consumer_mod.instance_of(r.body) for r in got}
            times = sorted(r.time for r in got)
            dur = (times[-1] - times[0]) if len(times) > 1 else None
            entry = {
                'events': a.burst, 'emitter_s': round(sent, 3),
                'emitter_events_per_s': round(a.burst / sent, 1),
                'delivered': len(unique), 'lost': a.burst - len(unique),
                'duplicates': len(got) - len(unique),
                'start_to_first_s': round(times[0] - started, 3)
                if times else None,
                'duration_s': round(dur, 3) if dur else None,
                'events_per_s': round(len(unique) / dur, 1) if dur else None,
                'cpu_ms_per_event': lab.ms(cpu / a.burst),
                'window_s': a.burst_timeout}
            if len(unique) < a.burst:
                depths = bench_floor.queue_depths(side.broker) or {}
                queued = sum(depths.values())
                entry['still_queued'] = queued
                entry['verdict'] = (
                    'window too short: %d events still queued' % queued
                    if queued else 'lost')
            row[name] = entry
            if name != 'floor':
                side.stack.wait_agent(side.stack.agents[0], timeout=300)
        self.add('burst of %d faults, pre-loaded (events/s)' % a.burst, row,
                 'events_per_s', higher_is_better=True)

    # -- rack --------------------------------------------------------------
    def rack(self):
        """``--rack-hosts`` hosts x ``--rack-vms`` VMs down within 100 ms.

        The figure: the first report to the last owner notified.
        """
        lab = bench_util
        a = self.args
        row = {}
        for name in lab.PIPELINES + ['floor']:
            side = self.floor if name == 'floor' else self.sides[name]
            hosts = self.racks[name]
            total = sum(len(vms) for _, vms in hosts)
            if name == 'floor':
                paths = [side.path(h) for h, _ in hosts]
            else:
                paths = ['/%s/rack' % name]
            if name == 'stock':
                side.inspector.shortcut = True
                side.inspector.refresh_servers()
            lab.say('scenario 7: %s rack, %d hosts, %d VMs' % (
                name, len(hosts), total))
            gap = 0.1 / max(1, len(hosts))
            sent = time.time()
            for host, _ in hosts:
                side.host_down(host)
                time.sleep(gap)
            timeout = a.timeout if name != 'stock' else a.rack_stock_timeout
            ok = self.wait_paths(paths, total, timeout)
            got = self.received_paths(paths)
            times = sorted(r.time for r in got)
            unique = {consumer_mod.instance_of(r.body) for r in got}
            row[name] = {
                'hosts': len(hosts), 'vms': total, 'notified': len(unique),
                'lost': total - len(unique),
                'duplicates': len(got) - len(unique),
                'first_ms': lab.ms(times[0] - sent) if times else None,
                'last_ms': (lab.ms(times[-1] - sent) if times and ok
                            else None)}
            if name != 'floor':
                self._settle(side, [
                    (vm, None) for _, vms in hosts for vm in vms])
        self.curves['rack'] = {n: row[n].get('last_ms') for n in row}
        self.add('rack, %d hosts x %d VMs (last owner ms)' % (
            a.rack_hosts, a.rack_vms), row, 'last_ms')

    # -- alarm scale -------------------------------------------------------
    def alarm_scale(self):
        lab = bench_util
        a = self.args
        levels = sorted(a.alarm_scale)
        loaded = {name: 0 for name in lab.PIPELINES}
        rss_base = {}
        for level in levels:
            row = {}
            for name in lab.PIPELINES:
                if name == 'stock' and level > a.stock_scale_max:
                    continue
                side = self.sides[name]
                row[name] = self._scale_level(side, name, level,
                                              level - loaded[name],
                                              rss_base)
                loaded[name] = level
                self.curves['alarms'].setdefault(name, []).append(
                    (level, row[name]['p50_ms']))
            self.add('alarm scale, %d alarms (p50 ms)' % level, row,
                     'p50_ms')
        base = {n: self.curves['alarms'][n][0] for n in
                self.curves['alarms']}
        self.scale_base = base

    def _scale_level(self, side, name, level, add, rss_base):
        lab = bench_util
        a = self.args
        lab.say('scenario 3: %s with %d alarms in place (+%d)'
                % (name, level, add))
        project = 'scale'
        host = 'scale-host-%d' % level
        path = '/%s/scale-%d' % (name, level)
        nfaults = a.scale_faults if name == 'doctor_ext' or level < 100000 \
            else a.scale_faults_stock_max
        vms = side.add_vms(host, min(add, nfaults + 1), [project], path,
                           self.consumer_of)
        rest = add - len(vms)
        never = self.consumer_of(project).url('/never')
        side.flush_alarms()
        while rest > 0:
            chunk = min(rest, 100000)
            copy_alarms(side.stack.db, [
                services.alarm_row(project, str(uuid.uuid4()), never)
                for _ in range(chunk)])
            rest -= chunk
        # The first event after a restart: sent as soon as the old agent
        # is gone, served once the new one has started and loaded.
        side.stop_agent()
        if name == 'stock':
            for p in list(side.stack.evaluators):
                p.stop()
                side.stack.processes.remove(p)
        restart_vm, restart_project = vms[0]
        before = sum(c.count(path) for c in self.consumers)
        sent = time.time()
        side.instance_error(restart_vm, restart_project, host)
        if name == 'stock':
            side.stack.evaluators = [
                side.stack.start_aodh_service('aodh-listener')]
        proc = side.stack.start_agent(wait=False)
        served = None
        if self.wait_path(path, before + 1, a.restart_timeout):
            served = time.time() - sent
        side.stack.wait_agent(proc, timeout=a.restart_timeout)
        ready = time.time() - sent
        pids = side.cpu_pids
        lat = []
        cpu0 = lab.cpu_seconds(pids)
        faults = vms[1:nfaults + 1]
        for vm, p in faults:
            v = self._fault_latency(side, vm, p, host, path, a.timeout)
            if v is not None:
                lat.append(v)
        cpu = lab.cpu_seconds(pids) - cpu0
        # Stock holds the alarms in aodh-listener; doctor-ext in the agent.
        mem_pid = side.evaluator_pid
        rss = lab.rss_bytes(mem_pid)
        rss_base.setdefault(name, (level, rss))
        out = {'alarms': level, 'faults': len(faults),
               'p50_ms': lab.ms(statistics.median(lat)) if lat else None,
               'restart_first_ms': lab.ms(served),
               'restart_ready_s': round(ready, 2),
               'cpu_ms_per_event': lab.ms(cpu / max(1, len(faults))),
               'evaluator_rss_mib': round(rss / 2 ** 20, 1)}
        base_level, base_rss = rss_base[name]
        if level > base_level:
            out['rss_bytes_per_alarm'] = round(
                (rss - base_rss) / (level - base_level), 1)
        if name == 'doctor_ext' and level == max(a.alarm_scale):
            per_alarm, count = lab.index_bytes_per_alarm(side.stack.db.url)
            out.update(index_bytes_per_alarm=per_alarm, index_alarms=count)
        return out
