"""The cold fault of ``doctor-ext-bench``: one fault after a quiet spell.

A mixin of :class:`doctor_ext_lab.bench.Bench`. Every pipeline idles
``--cold-idle`` seconds, then takes one fault each (doctor-ext first), then
``--cold-warm`` warm faults: the cold fault against the warm p50 of the same
pipeline. ``--cold-repeat`` runs that cycle several times, for several cold
samples in one run; one fault before the first idle spell keeps the
pipeline's first fault since it started out of the samples.

With ``--timeline`` each doctor-ext fault is split into phases from the
agent's timeline log; with ``--cold-profile DIR`` py-spy samples the
agent's worker around each cold fault and the first warm fault after it
(samples of the thread holding the GIL, py-spy's ``raw`` format, one file
per fault). On PostgreSQL each doctor-ext fault also records the WAL the
server wrote meanwhile (the whole server's: full-page images after a
checkpoint show there) and whether a checkpoint came since the fault
before; with ``--cold-checkpoint`` each cycle ends with a forced
``CHECKPOINT`` and one more warm doctor-ext fault right after it, to tell
the checkpoint's penalty from the idle's.
"""

import os
import re
import shutil
import statistics
import subprocess
import time

from doctor_ext_lab import bench_util
from doctor_ext_lab import consumer as consumer_mod

# Seconds py-spy samples around a profiled fault; it starts this long
# before the fault, so that attaching is done when the fault comes.
PROFILE_LEAD = 1.0
PROFILE_SECONDS = 3


def _timeline_lines(path, offset):
    """doctor-timeline alarm lines of the log from ``offset``, and its end."""
    lines = []
    try:
        with open(path, errors='replace') as f:
            f.seek(offset)
            for line in f:
                if 'doctor-timeline alarm=' in line:
                    lines.append(dict(re.findall(
                        r'(\w+)=(\S+)', line.split('doctor-timeline', 1)[1])))
            return lines, f.tell()
    except OSError:
        return lines, offset


def phases(sent, posted, line):
    """Milliseconds of each step of one fault, from its timeline line.

    ``bus``: the bench's send to the evaluator's publisher (the broker,
    Ceilometer's conversion and pipeline, the inspector's map write);
    ``match``: parse and index lookup; ``claim``: the claim's transaction;
    ``post``: firing to the consumer's receipt (the notifier).
    """
    t = {k: float(line[k]) for k in ('received', 'parsed', 'evaluated',
                                     'fired')}
    return {'bus': bench_util.ms(t['received'] - sent),
            'match': bench_util.ms(t['evaluated'] - t['received']),
            'claim': bench_util.ms(t['fired'] - t['evaluated']),
            'post': bench_util.ms(posted - t['fired'])}


class _Wal:
    """The PostgreSQL server's WAL counters (None on another database)."""

    def __init__(self, url):
        import sqlalchemy as sa
        self._sa = sa
        self.engine = None
        if url.startswith('postgresql'):
            self.engine = sa.create_engine(url, isolation_level='AUTOCOMMIT',
                                           poolclass=sa.pool.StaticPool)

    def sample(self):
        if self.engine is None:
            return None
        with self.engine.connect() as conn:
            return tuple(conn.execute(self._sa.text(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), "
                "'0/0'), redo_lsn FROM pg_control_checkpoint()")).one())

    def checkpoint(self):
        if self.engine is not None:
            with self.engine.connect() as conn:
                conn.execute(self._sa.text('CHECKPOINT'))

    @staticmethod
    def delta(before, after, last):
        """The fault's WAL; a checkpoint since ``last`` (the fault before)."""
        if not (before and after):
            return {}
        return {'wal_kib': round(float(after[0] - before[0]) / 1024, 1),
                'checkpoint_since': after[1] != (last or before)[1]}


def _median_phases(samples):
    if not samples:
        return None
    return {k: round(statistics.median(s[k] for s in samples), 2)
            for k in samples[0] if k != 'checkpoint_since'}


class ColdFault:

    def _fault_times(self, side, vm, project, host, path, timeout):
        """(sent, posted) of one fault on the bus; posted None if lost."""
        before = sum(c.count(path) for c in self.consumers)
        sent = time.time()
        side.instance_error(vm, project, host)
        if not self.wait_path(path, before + 1, timeout):
            return sent, None
        got = [r for r in self.received(path)
               if consumer_mod.instance_of(r.body) == vm]
        return sent, (got[0].time if got else None)

    def _agent_worker(self, side):
        """The pid of the agent's (first) worker process."""
        tree = bench_util.process_tree(side.stack.agents[0].pid)
        return tree[1].pid if len(tree) > 1 else tree[0].pid

    def _profile(self, side, name):
        """Start py-spy on the agent's worker; None without py-spy."""
        spy = shutil.which('py-spy')
        if not (self.args.cold_profile and spy):
            return None
        os.makedirs(self.args.cold_profile, exist_ok=True)
        out = os.path.join(self.args.cold_profile, '%s.txt' % name)
        proc = subprocess.Popen(
            [spy, 'record', '--pid', str(self._agent_worker(side)),
             '--rate', '1000', '--duration', str(PROFILE_SECONDS),
             '--nonblocking', '--gil', '--threads', '--format', 'raw',
             '-o', out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(PROFILE_LEAD)
        return proc

    def _doctor_fault(self, side, vm, project, path, profile_name=None):
        """One doctor-ext fault: (latency s or None, phases or None)."""
        log = side.stack.agents[0].log_file
        _, offset = _timeline_lines(log, os.path.getsize(log))
        spy = self._profile(side, profile_name) if profile_name else None
        wal = self._wal.sample()
        sent, posted = self._fault_times(side, vm, project, 'cold-host',
                                         path, self.args.timeout)
        after = self._wal.sample()
        wal = _Wal.delta(wal, after, self._wal_last)
        self._wal_last = after
        if spy is not None:
            spy.wait()
        if posted is None:
            return None, None
        if not self.args.timeline:
            return posted - sent, None
        deadline = time.monotonic() + 5
        lines = []
        while not lines and time.monotonic() < deadline:
            lines, offset = _timeline_lines(log, offset)
            time.sleep(0.01)
        if not lines:
            return posted - sent, None
        return posted - sent, dict(phases(sent, posted, lines[0]), **wal)

    def _one_cold(self, name, vm, project, profile_name=None):
        side = self.floor if name == 'floor' else self.sides[name]
        path = self.cold_path[name]
        if name == 'doctor_ext':
            return self._doctor_fault(side, vm, project, path, profile_name)
        sent, posted = self._fault_times(side, vm, project, 'cold-host',
                                         path, self.args.timeout)
        return (posted - sent if posted else None), None

    def cold_fault(self):
        """``--cold-repeat`` cycles: idle, one cold fault, warm faults."""
        lab = bench_util
        a = self.args
        names = ['doctor_ext'] + [n for n in lab.PIPELINES
                                  if n != 'doctor_ext'] + ['floor']
        names = [n for n in names if n in lab.PIPELINES + ['floor']]
        cold = {n: [] for n in names}
        warm = {n: [] for n in names}
        cold_phases, warm_phases, checkpointed = [], [], []
        per_cycle = 2 + a.cold_warm
        self._wal = _Wal(self.sides['doctor_ext'].stack.db.url
                         if 'doctor_ext' in self.sides else '')
        self._wal_last = None
        # One fault first, so that no cold sample is also the pipeline's
        # first fault since it started (when the cold fault is the only
        # scenario of the run): first option lookups, statement caches.
        for name in names:
            self._one_cold(name, *self.cold[name][-1])
        for cycle in range(a.cold_repeat):
            lab.say('scenario 6: cold fault %d/%d, idle for %d s'
                    % (cycle + 1, a.cold_repeat, a.cold_idle))
            time.sleep(a.cold_idle)
            vms = {n: self.cold[n][cycle * per_cycle:
                                   (cycle + 1) * per_cycle] for n in names}
            for name in names:
                vm, project = vms[name][0]
                t, ph = self._one_cold(name, vm, project,
                                       'cold-%d' % cycle)
                cold[name].append(lab.ms(t))
                if ph:
                    cold_phases.append(ph)
            for name in names:
                for i, (vm, project) in enumerate(vms[name][1:-1]):
                    t, ph = self._one_cold(
                        name, vm, project,
                        'warm-%d' % cycle if i == 0 else None)
                    if t is not None:
                        warm[name].append(lab.ms(t))
                    if ph:
                        warm_phases.append(ph)
            if a.cold_checkpoint and 'doctor_ext' in names:
                self._wal.checkpoint()
                vm, project = vms['doctor_ext'][-1]
                t, ph = self._one_cold('doctor_ext', vm, project)
                checkpointed.append(dict(ph or {}, total=lab.ms(t)))
        row = {}
        for name in names:
            samples = [c for c in cold[name] if c is not None]
            entry = {'idle_s': a.cold_idle, 'cycles': a.cold_repeat,
                     'cold_samples_ms': cold[name],
                     'cold_ms': round(statistics.median(samples), 2)
                     if samples else None,
                     'warm_p50_ms': round(statistics.median(warm[name]), 2)
                     if warm[name] else None}
            if entry['cold_ms'] and entry['warm_p50_ms']:
                entry['cold_vs_warm'] = round(
                    entry['cold_ms'] / entry['warm_p50_ms'], 2)
            row[name] = entry
        if cold_phases:
            row['doctor_ext']['cold_phases_ms'] = cold_phases
            row['doctor_ext']['warm_phases_p50_ms'] = _median_phases(
                warm_phases)
        if checkpointed:
            row['doctor_ext']['after_checkpoint_ms'] = checkpointed
        self.add('cold fault after %d s idle (ms)' % a.cold_idle, row,
                 'cold_ms')
