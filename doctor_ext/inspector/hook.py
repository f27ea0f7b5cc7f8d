"""The ``doctor-inspector://`` event-pipeline plugin: Doctor's Inspector.

On a host-fault event (the monitor's ``compute.host.down``, or Nova's
``service.update`` with ``forced_down`` set by someone else) it

1. finds the affected instances and owners in the shared instance map
   (:mod:`.instances`), without asking Nova (unless the map was never
   loaded);
2. records the fault in the fault journal (:mod:`.journal`) before the
   report is acknowledged; from then on any agent can finish the work;
3. hands one fault event per instance (``compute.instance.update``,
   ``state=error``, ``instance_id``, the owner's ``tenant_id``, ``host``) to
   the evaluator at once, so owners do not wait for Nova (Doctor's
   "shortcut"); in ``conservative`` mode only after Nova confirmed the fence;
4. fences the host in Nova in the background (:mod:`.fencing`): force-down
   the nova-compute service, then reset every affected instance to error,
   each confirmed step written to the journal.

A host fault or maintenance report is acted on only if
:mod:`.report_check` accepts it (signed by the monitor, recent, not
replayed). Repeated reports of a host already handled are ignored until the
host is reported up again (or ``fault_memory`` has passed), whichever agent
gets them. A fault whose instances cannot be known yet stays ``resolving``
and is retried with backoff, with an error logged at every try. Open faults
whose agent died are taken over by the sweep of any live agent. Which
faults fence follows the operator policy below. ``compute.instance.*``
events keep the instance map current. Host maintenance (a compute service
disabled with a reason, ``maintenance.host``) is followed by
:mod:`.maintenance`.
"""

import concurrent.futures
import threading
import time
import uuid

from ceilometer import publisher
from oslo_config import cfg
from oslo_log import log

from doctor_ext.db import api as db_api
from doctor_ext.db import leases
from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events as events_mod
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import fencing
from doctor_ext.inspector import instances as instances_mod
from doctor_ext.inspector import journal as journal_mod
from doctor_ext.inspector import maintenance
from doctor_ext.inspector import power_fencing
from doctor_ext.inspector import recovery as recovery_mod
from doctor_ext.inspector import report_check
from doctor_ext.inspector import resource_map

LOG = log.getLogger(__name__)

GROUP = 'doctor_inspector'
OPTS = [
    cfg.ListOpt('fault_event_types',
                default=['compute.host.down', 'service.update'],
                help='Event types that report a host fault. service.update '
                     'counts only when it says forced_down=true.'),
    cfg.ListOpt('recovery_event_types', default=['compute.host.up'],
                help='Event types that report a host back up (a later '
                     'fault of it is handled again).'),
    cfg.BoolOpt('fence', default=True,
                help='Fence faulty hosts in Nova (force-down the compute '
                     'service, reset instances to error).'),
    cfg.ListOpt('fence_event_types', default=['compute.host.down'],
                help='Fault event types that fence the host.'),
    cfg.ListOpt('fence_severities', default=['critical', 'major'],
                help='Monitor severities that fence the host (a fault of '
                     'another severity only notifies the owners).'),
    cfg.StrOpt('mode', default='shortcut',
               choices=[('shortcut', 'notify owners at once, fence in '
                                     'parallel'),
                        ('conservative', 'notify owners once Nova has '
                                         'confirmed the fence')],
               help='When owners are notified of a host fault.'),
    cfg.FloatOpt('fault_memory', default=3600.0, min=0,
                 help='Seconds a handled host fault is remembered: repeated '
                      'reports meanwhile neither fence nor notify again.'),
    cfg.FloatOpt('resource_map_resync_interval', default=600.0, min=0,
                 help='Seconds between full reloads of the instance map '
                      'from Nova (0: only at start).'),
    cfg.IntOpt('fence_workers', default=4, min=1,
               help='Hosts fenced at the same time.'),
    cfg.FloatOpt('fence_after_notify_wait', default=1.0, min=0,
                 help='In shortcut mode, seconds fencing waits for the '
                      "owners' notifications to be delivered before it "
                      'starts, so that the Nova calls of a large host do '
                      'not take CPU from the notifications (0: fence at '
                      'once).'),
    cfg.BoolOpt('timeline_log', default=False,
                help='Log one line per host fault with the time of each '
                     'step (detected, instances found, fault events built, '
                     'owners notified, forced down, instances reset), for '
                     'the Doctor timeline.'),
]


# Fault event ids are derived from the report's message_id and the
# instance: a redelivered report gives the same fault events, so alarms they
# already fired are recognised (see doctor_ext.evaluator.engine).
FAULT_EVENT_NAMESPACE = uuid.UUID('8d7f3c2a-1b4e-4f6a-9c0d-3e5b7a9f1c24')


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def _truthy(value):
    return str(value).lower() in ('true', '1', 'yes')


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


class Inspector:
    """The inspector proper; the publisher below is its pipeline face."""

    def __init__(self, conf, engine, fencer, rmap=None, journal=None,
                 check=None):
        register_opts(conf)
        leases.register_opts(conf)
        self._opts = conf[GROUP]
        self.engine = engine
        self.fencer = fencer
        self.map = rmap if rmap is not None else \
            instances_mod.SharedResourceMap(engine.store)
        self.journal = journal or journal_mod.FaultJournal(
            engine.store, engine.owner, conf[leases.GROUP].lease_time)
        # Faults this process is working on (their leases it renews).
        self._active = {}
        # Host reports are acted on only if signed (report_check).
        self.check = check or report_check.ReportCheck(conf)
        self._lock = threading.Lock()
        self._fence_pool = concurrent.futures.ThreadPoolExecutor(
            self._opts.fence_workers, thread_name_prefix='doctor-fence')
        self._stop = threading.Event()
        # Set when an instance event could not be written to the map.
        self._resync_soon = threading.Event()
        self._loader = None
        self.maintenance = maintenance.MaintenanceTracker(
            conf, engine, self.map, fencer)
        # Power fencing through the BMCs, and the recovery policy.
        self.power = power_fencing.PowerFencing(conf, engine)
        self.recovery = recovery_mod.Recovery(
            conf, engine, fencer, self.power.power, self.power.inventory)

    # -- resource map ------------------------------------------------------
    def start(self):
        if self._loader is None:
            self._loader = threading.Thread(target=self._load_map,
                                            name='doctor-resource-map',
                                            daemon=True)
            self._loader.start()
            self.maintenance.start()
            sweeper = getattr(self.engine, 'sweeper', None)
            if sweeper is not None:
                sweeper.add('host faults', self.sweep)
                sweeper.add('host recoveries', self.recovery.sweep)

    def stop(self):
        self._stop.set()
        self._resync_soon.set()
        self._fence_pool.shutdown(wait=False)
        self.maintenance.stop()

    def _load_map(self):
        delay = 0.5
        while not self._stop.is_set():
            try:
                listed_at = db_api.utcnow()
                servers = self.fencer.all_servers()
                self.map.replace_all([resource_map.Instance(
                    s.id, s.project_id, s.user_id, s.host, s.status)
                    for s in servers], **self._as_of(listed_at))
            except Exception as e:
                LOG.warning('Cannot load the instance map from Nova yet, '
                            'retrying in %.1f s: %s', delay, e)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            LOG.info('Instance map loaded from Nova: %d instance(s) on %d '
                     'host(s)', len(self.map), len(self.map.hosts()))
            delay = 0.5
            interval = self._opts.resource_map_resync_interval
            self._resync_soon.wait(interval or None)
            if self._stop.is_set():
                return
            if self._resync_soon.is_set():
                self._resync_soon.clear()
                LOG.info('Reloading the instance map from Nova: instance '
                         'events were missed while the database was down')
            elif not interval:
                return

    def _as_of(self, listed_at):
        # The shared map orders statements by time; the in-process one
        # does not.
        if isinstance(self.map, instances_mod.SharedResourceMap):
            return {'as_of': listed_at}
        return {}

    # -- events ------------------------------------------------------------
    def handle(self, event, received=None):
        """Handle one parsed event; returns the HostFault it started.

        :raises StoreUnavailable: the database did not take what must be
            durable before the report is acknowledged (requeue it).
        """
        received = received or time.time()
        if not self.check.accept(event):
            return None
        etype = event.event_type
        if etype.startswith('compute.instance.'):
            try:
                # Where it was matters only to a host in maintenance.
                left = (self.map.host_of(event.traits.get('instance_id'))
                        if self.maintenance.active else None)
                self.map.apply(event)
            except store_mod.BadRecord as e:
                LOG.error('Instance map not updated from %s %s: %s', etype,
                          event.message_id, e)
                return None
            except store_mod.StoreUnavailable as e:
                # The evaluator still tells the owners about this event;
                # the map catches up from Nova once the database is back.
                LOG.warning('Instance map not updated from %s %s (the map '
                            'is reloaded from Nova when the database is '
                            'back): %s', etype, event.message_id, e)
                self._resync_soon.set()
                return None
            self.maintenance.follow(event, left)
            return None
        # Host maintenance (service disabled with a reason, enabled again;
        # maintenance.host/.end); fault handling below is unchanged.
        self.maintenance.handle(event, received)
        if etype in self._opts.recovery_event_types:
            self._recovered(event)
            return None
        if etype not in self._opts.fault_event_types:
            return None
        host = event.traits.get('hostname') or event.traits.get('host')
        if not host:
            LOG.error('Ignoring %s event %s: it names no host', etype,
                      event.message_id)
            return None
        if etype == 'service.update':
            if not _truthy(event.traits.get('forced_down')):
                if not _truthy(event.traits.get('disabled')):
                    self._recovered(event)
                return None
        return self._fault(host, event, received)

    def _recovered(self, event):
        host = event.traits.get('hostname') or event.traits.get('host')
        if self.journal.recovered(host):
            LOG.info('Host %s is back (%s)', host, event.event_type)
            try:
                self.recovery.host_up(host)
            except store_mod.StoreUnavailable as e:
                LOG.error('Recovery of host %s not scheduled: %s', host, e)

    def _instances_of(self, host):
        """The instances on ``host``, or None if they cannot be known yet.

        The shared map answers; only if it was never loaded from Nova (by
        any agent) and knows nothing of the host is Nova asked.
        """
        found = self.map.on_host(host)
        if found or self.map.loaded.is_set():
            return found
        try:
            return [resource_map.Instance(s.id, s.project_id, s.user_id,
                                          s.host, s.status)
                    for s in self.fencer.servers_on_host(host)]
        except Exception as e:
            LOG.error('Instances of host %s unknown: the instance map was '
                      'never loaded and Nova cannot list them: %s', host, e)
            return None

    def _fault(self, host, event, received):
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
            retry = min(2.0 ** (record.attempts or 0), RESOLVE_RETRY_MAX)
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


class InspectorHook(publisher.ConfigPublisherBase):
    """Ceilometer event publisher ``doctor-inspector://``."""

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        self.inspector = get_inspector(conf)

    def publish_samples(self, samples):
        """Samples are not ours: the inspector takes events."""

    def publish_events(self, events):
        received = time.time()
        faults = []
        for event in events:
            try:
                parsed = events_mod.from_ceilometer(event)
            except events_mod.InvalidEvent as e:
                LOG.error('Dropping event %s: %s',
                          getattr(event, 'message_id', '?'), e)
                continue
            fault = self.inspector.handle(parsed, received)
            if fault is not None:
                faults.append(fault)
        return faults


_INSPECTOR = None
_LOCK = threading.Lock()


def get_inspector(conf):
    global _INSPECTOR
    with _LOCK:
        if _INSPECTOR is None:
            engine = engine_mod.get_engine(conf)
            _INSPECTOR = Inspector(conf, engine, fencing.NovaFencer(conf),
                                   check=report_check.get_check(conf))
            _INSPECTOR.start()
        return _INSPECTOR


def reset_inspector():
    global _INSPECTOR
    with _LOCK:
        inspector, _INSPECTOR = _INSPECTOR, None
    if inspector is not None:
        inspector.stop()
