"""The work of one host fault, from its journal record to a fenced host.

In: a host-fault report the inspector (:mod:`.core`) accepted, the host's
instances (from :class:`.map_loader.MapLoader`), and at every sweep the
open faults of agents that died (from the journal). Out: one fault event
per instance handed to the evaluator (``engine.evaluate``), the host
fenced in Nova (:mod:`.fencing`), each confirmed step written to the fault
journal (:mod:`.journal`). It may touch the journal, the evaluator and
Nova through the fencer; nothing else.
"""

import concurrent.futures
import threading
import time
import uuid

from oslo_log import log

from doctor_ext.evaluator import events as events_mod
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import fencing
from doctor_ext.inspector import journal as journal_mod
from doctor_ext.inspector import power_fencing
from doctor_ext.inspector import resource_map
from doctor_ext import retry as retry_mod

LOG = log.getLogger(__name__)


# Fault event ids are derived from the report's message_id and the
# instance: a redelivered report gives the same fault events, so alarms they
# already fired are recognised (see doctor_ext.evaluator.engine).
FAULT_EVENT_NAMESPACE = uuid.UUID('8d7f3c2a-1b4e-4f6a-9c0d-3e5b7a9f1c24')


class HostFault:
    """One host fault handled in this process, with the time of each step.

    ``record`` is its row of the fault journal (:class:`.journal.Fault`).
    """

    def __init__(self, record, event=None):
        self.record = record
        self.host = record.host
        self.event = event
        self.cause = record.cause
        self.monitor_event_id = record.monitor_event_id
        self.message_id = record.message_id
        self.times = {}
        self.instances = record.instances
        self.firings = []
        self.fenced = None
        # Power fencing (power_fencing): power or logical, and the fencing
        # state owners are told.
        self.method = None
        self.fencing = None
        self.reset = {}
        self.done = threading.Event()


class _Batch:
    """Resets confirmed by Nova, journaled ``size`` at a time.

    A crash repeats at most one batch of resets Nova had confirmed.
    """

    def __init__(self, write, size=50):
        self._write = write
        self._size = size
        self._pending = {}
        self._lock = threading.Lock()

    def add(self, server_id, ok):
        with self._lock:
            self._pending[server_id] = ok
            if len(self._pending) < self._size:
                return
            batch, self._pending = self._pending, {}
        self._write(batch)

    def flush(self):
        with self._lock:
            batch, self._pending = self._pending, {}
        if batch:
            self._write(batch)


# Longest wait between two tries to find the instances of a fault.
RESOLVE_RETRY_MAX = 60.0


class FaultWork:
    """Host faults handled by this process: notify, fence, sweep.

    :param opts: the ``[doctor_inspector]`` options (:mod:`.core`).
    :param instances_of: ``host -> [Instance]`` or None when they cannot
        be known yet (:meth:`.map_loader.MapLoader.instances_of`).
    :param power: the power step around the Nova fence
        (:class:`.power_fencing.PowerFencing`).
    :param recovery: the recovery policy (:class:`.recovery.Recovery`).
    """

    def __init__(self, opts, engine, fencer, journal, instances_of, power,
                 recovery):
        self._opts = opts
        self.engine = engine
        self.fencer = fencer
        self.journal = journal
        self._instances_of = instances_of
        self.power = power
        self.recovery = recovery
        # Faults this process is working on (their leases it renews).
        self._active = {}
        self._lock = threading.Lock()
        self._fence_pool = concurrent.futures.ThreadPoolExecutor(
            opts.fence_workers, thread_name_prefix='doctor-fence')

    def stop(self):
        self._fence_pool.shutdown(wait=False)

    def recovered(self, event):
        """A host reported up again: a later fault of it is handled again."""
        host = event.traits.get('hostname') or event.traits.get('host')
        if self.journal.recovered(host):
            LOG.info('Host %s is back (%s)', host, event.event_type)
            try:
                self.recovery.host_up(host)
            except store_mod.StoreUnavailable as e:
                LOG.error('Recovery of host %s not scheduled: %s', host, e)

    def fault(self, host, event, received):
        """Journal a host fault and start its work; the HostFault or None.

        :raises StoreUnavailable: see :meth:`.core.Inspector.handle`.
        """
        fence = self._should_fence(event)
        try:
            instances = self._instances_of(host)
            status, record = self.journal.open(
                host, event, instances, fence, self._opts.fault_memory,
                detected=received)
        except store_mod.BadRecord as e:
            LOG.error('Dropping %s report %s of host %s: %s',
                      event.event_type, event.message_id, host[:255], e)
            return None
        except store_mod.StoreUnavailable as e:
            status, record = 'new', self._transient(host, event, fence, e)
        if status == 'repeat':
            LOG.info('Host %s fault already handled (%s); ignoring %s',
                     host, record.monitor_event_id, event.event_type)
            return None
        if status == 'redelivered' and not record.open:
            LOG.info('Host %s fault of report %s already handled', host,
                     event.message_id)
            return None
        fault = HostFault(record, event)
        fault.times['detected'] = received
        fault.times['found'] = time.time()
        self._work(fault)
        return fault

    def _transient(self, host, event, fence, error):
        """A fault handled in memory: the database is down.

        The owners are told from Nova's list of the host's servers (the
        evaluator fires on its own view of the alarms), the host is fenced,
        but nothing of it is durable: if this agent dies meanwhile, the
        fault is lost. Nova cannot list them either: the report is refused
        (and requeued).
        """
        try:
            instances = [resource_map.Instance(s.id, s.project_id, s.user_id,
                                               s.host, s.status)
                         for s in self.fencer.servers_on_host(host)]
        except Exception as nova_error:
            LOG.error('Host %s fault cannot be recorded (%s) and Nova cannot '
                      'list its instances (%s): the report is requeued',
                      host, error, nova_error)
            raise error
        LOG.warning('Host %s fault handled in memory only: the database is '
                    'unavailable (%s); it is lost if this agent dies before '
                    'it is done', host, error)
        return journal_mod.in_memory(host, event, instances, fence)

    def _note(self, method, record, *args):
        """Write progress to the journal; never fail the work for it."""
        if record.fault_id is None:
            # In memory only (the database was down).
            getattr(journal_mod.MEMORY, method)(record, *args)
            return
        try:
            getattr(self.journal, method)(record, *args)
        except store_mod.StoreUnavailable as e:
            LOG.warning('Progress of the fault of host %s not journaled (%s '
                        'may be done again if this agent dies): %s',
                        record.host, method, e)
            getattr(journal_mod.MEMORY, method)(record, *args)

    def _should_fence(self, event):
        if not self._opts.fence:
            return False
        if event.event_type not in self._opts.fence_event_types:
            return False
        severity = event.traits.get('severity')
        return not severity or severity in self._opts.fence_severities

    # -- the work of one fault, from its journal record --------------------
    def _work(self, fault):
        """Resolve, notify and fence ``fault`` as far as its record says."""
        record = fault.record
        key = record.fault_id or record.message_id
        with self._lock:
            if key in self._active:
                return
            self._active[key] = fault
        try:
            if record.state == journal_mod.RESOLVING and \
                    not self._resolve(fault):
                self._release(fault)
                fault.done.set()
                return
            fault.instances = record.instances
            LOG.info('Host %s down (%s): %d instance(s) of %d project(s)',
                     fault.host, fault.cause, len(fault.instances),
                     len({i.project_id for i in fault.instances}))
            fence = record.fence == journal_mod.PENDING
            if fence and self._opts.mode == 'conservative':
                # Nova first, in this thread: owners are told once the
                # fence was tried (and told even if it failed).
                self._fence(fault)
                self._notify(fault)
            else:
                self._notify(fault)
                if fence:
                    self._fence_pool.submit(self._fence, fault)
                else:
                    self._release(fault)
                    fault.done.set()
        except Exception:
            self._release(fault)
            fault.done.set()
            raise

    def _release(self, fault):
        record = fault.record
        with self._lock:
            self._active.pop(record.fault_id or record.message_id, None)

    def _resolve(self, fault):
        """Find the instances of a ``resolving`` fault; True if found."""
        record = fault.record
        instances = self._instances_of(record.host)
        if instances is None:
            retry = retry_mod.backoff((record.attempts or 0) + 1, 1.0,
                                      RESOLVE_RETRY_MAX)
            LOG.error('Host %s fault (%s) is NOT handled yet: its instances '
                      'cannot be found; owners are not notified. Retry %d '
                      'in %.0f s', record.host, record.cause,
                      (record.attempts or 0) + 1, retry)
            self._note('unresolved', record, 'instances unknown', retry)
            return False
        self._note('resolved', record, instances)
        return True

    def fault_events(self, fault):
        """One ``compute.instance.update`` (state error) per instance."""
        out = []
        for inst in fault.instances:
            out.append(events_mod.make_event('compute.instance.update', {
                'instance_id': inst.instance_id,
                'tenant_id': inst.project_id,
                'user_id': inst.user_id,
                'state': 'error',
                'old_state': (inst.state or '').lower() or None,
                'host': fault.host,
                'cause': fault.cause,
                'monitor_event_id': fault.monitor_event_id,
                'source': 'doctor-ext',
                'fencing': self.power.trait(fault),
            }, message_id=str(uuid.uuid5(FAULT_EVENT_NAMESPACE, '%s/%s' % (
                fault.message_id, inst.instance_id)))))
        return out

    def _notify(self, fault):
        record = fault.record
        if record.state == journal_mod.NOTIFIED:
            return
        events = self.fault_events(fault)
        fault.times['events'] = time.time()
        try:
            fault.firings = self.engine.evaluate(
                events, received=fault.times.get('detected'))
        except Exception as e:
            # The record stays "notifying": this agent, or another once
            # the lease runs out, evaluates again (claims make it once).
            LOG.error('Evaluating the faults of host %s failed, retried in '
                      'at most %.0f s: %s', fault.host,
                      self.journal.lease.total_seconds(), e)
            raise
        fault.times['notified'] = time.time()
        self._note('notified', record)
        self._log_timeline(fault)

    def _wait_notified(self, fault):
        wait = self._opts.fence_after_notify_wait
        if not wait or self._opts.mode == 'conservative':
            return
        deadline = time.monotonic() + wait
        for firing in fault.firings:
            for future in firing.deliveries:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    future.result(remaining)
                except Exception:
                    pass

    def _fence(self, fault):
        host = fault.host
        record = fault.record
        self._wait_notified(fault)
        try:
            if not self.power.before_logical(fault):
                # Held by the storm guard (the journal says so), or the
                # power-off failed: nothing is forced down.
                if fault.fencing == power_fencing.FAILED:
                    self._note('fenced', record, False)
                    self.power.tell_owners(fault)
                fault.fenced = False
                return
            if record.forced_down != journal_mod.DONE:
                fault.fenced = self.fencer.force_down(host)
                self._note('forced_down', record, fault.fenced)
            else:
                fault.fenced = True
            fault.times['forced_down'] = time.time()
            ids = [i.instance_id for i in fault.instances
                   if record.resets.get(i.instance_id) != journal_mod.DONE]
            confirmed = _Batch(lambda done: self._note('reset', record, done))
            fault.reset = self.fencer.reset_to_error(
                ids, on_result=lambda sid, r: confirmed.add(
                    sid, r == fencing.OK)) if ids else {}
            confirmed.flush()
            fault.times['reset'] = time.time()
            failed = {k: v for k, v in fault.reset.items()
                      if v != fencing.OK}
            if failed:
                LOG.error('Host %s: %d instance(s) not reset to error: %s',
                          host, len(failed), sorted(failed.items())[:10])
            LOG.info('Host %s fenced: forced down=%s, %d/%d instance(s) '
                     'reset to error', host, fault.fenced,
                     len(fault.reset) - len(failed), len(fault.reset))
            self._note('fenced', record, bool(fault.fenced) and not failed)
            self.power.after_logical(fault, bool(fault.fenced) and not failed)
        except Exception as e:
            fault.fenced = False
            LOG.error('Fencing host %s failed: %s', host, e)
        finally:
            self._release(fault)
            fault.done.set()
            self._log_timeline(fault)

    # -- the sweep: leases of this process, faults of dead agents ----------
    def sweep(self):
        """Renew this process's fault leases, take over expired faults."""
        with self._lock:
            active = [k for k, f in self._active.items()
                      if f.record.fault_id is not None]
        self.journal.renew(active)
        for record in self.journal.take_expired():
            LOG.warning('Taking over the open fault of host %s (%s, state '
                        '%s, fencing %s)', record.host, record.cause,
                        record.state, record.fence)
            fault = HostFault(record)
            fault.times['detected'] = record.detected
            self._fence_pool.submit(self._resume, fault)

    def _resume(self, fault):
        try:
            self._work(fault)
        except Exception as e:
            LOG.error('Resuming the fault of host %s failed, retried when '
                      'its lease runs out: %s', fault.host, e)

    def _log_timeline(self, fault):
        if not self._opts.timeline_log:
            return
        LOG.info('doctor-timeline host=%s monitor_event_id=%s instances=%d '
                 'fenced=%s %s', fault.host, fault.monitor_event_id,
                 len(fault.instances), fault.fenced,
                 ' '.join('%s=%.6f' % kv for kv in sorted(
                     fault.times.items()) if kv[1] is not None))
