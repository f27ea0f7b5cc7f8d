"""The ``doctor-inspector://`` event-pipeline plugin: Doctor's Inspector.

On a host-fault event (the monitor's ``compute.host.down``, or Nova's
``service.update`` with ``forced_down`` set by someone else) it

1. finds the affected instances and owners in the resource map
   (:mod:`.resource_map`), without asking Nova;
2. hands one fault event per instance (``compute.instance.update``,
   ``state=error``, ``instance_id``, the owner's ``tenant_id``, ``host``) to
   the evaluator at once, so owners do not wait for Nova (Doctor's
   "shortcut"); in ``conservative`` mode only after Nova confirmed the fence;
3. fences the host in Nova in the background (:mod:`.fencing`): force-down
   the nova-compute service, then reset every affected instance to error.

A host fault or maintenance report is acted on only if
:mod:`.report_check` accepts it (signed by the monitor, recent, not
replayed). Repeated reports of a host already handled are ignored until the
host is reported up again (or ``fault_memory`` has passed). Which faults fence
follows the operator policy below. ``compute.instance.*`` events keep the
resource map current. Host maintenance (a compute service disabled with a
reason, ``maintenance.host``) is followed by :mod:`.maintenance`.
"""

import concurrent.futures
import threading
import time
import uuid

from ceilometer import publisher
from oslo_config import cfg
from oslo_log import log

from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events as events_mod
from doctor_ext.inspector import fencing
from doctor_ext.inspector import maintenance
from doctor_ext.inspector import report_check
from doctor_ext.inspector import resource_map
from doctor_ext.publisher import direct
from doctor_ext.publisher import shortcut

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
    """One handled host fault, with the time of each step."""

    def __init__(self, host, event):
        self.host = host
        self.event = event
        self.cause = event.traits.get('cause') or event.event_type
        self.monitor_event_id = event.traits.get('monitor_event_id')
        self.times = {}
        self.instances = []
        self.firings = []
        self.fenced = None
        self.reset = {}
        self.done = threading.Event()


class Inspector:
    """The inspector proper; the publisher below is its pipeline face."""

    def __init__(self, conf, engine, fencer, rmap=None, ledger=None,
                 check=None):
        register_opts(conf)
        direct.register_opts(conf)
        self._opts = conf[GROUP]
        self._delivery_wait = conf[direct.GROUP].delivery_wait
        self.engine = engine
        self.fencer = fencer
        self.map = rmap if rmap is not None else resource_map.ResourceMap()
        self.ledger = ledger or shortcut.LEDGER
        # Host reports are acted on only if signed (report_check).
        self.check = check or report_check.ReportCheck(conf)
        self._faults = {}   # host -> (HostFault, monotonic time)
        self._lock = threading.Lock()
        self._fence_pool = concurrent.futures.ThreadPoolExecutor(
            self._opts.fence_workers, thread_name_prefix='doctor-fence')
        self._stop = threading.Event()
        self._loader = None
        self.maintenance = maintenance.MaintenanceTracker(
            conf, engine, self.map, fencer)

    @property
    def delivery_wait(self):
        return self._delivery_wait

    # -- resource map ------------------------------------------------------
    def start(self):
        if self._loader is None:
            self._loader = threading.Thread(target=self._load_map,
                                            name='doctor-resource-map',
                                            daemon=True)
            self._loader.start()
            self.maintenance.start()

    def stop(self):
        self._stop.set()
        self._fence_pool.shutdown(wait=False)
        self.maintenance.stop()

    def _load_map(self):
        delay = 0.5
        while not self._stop.is_set():
            try:
                servers = self.fencer.all_servers()
            except Exception as e:
                LOG.warning('Cannot load the instance map from Nova yet, '
                            'retrying in %.1f s: %s', delay, e)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.map.replace_all(resource_map.Instance(
                s.id, s.project_id, s.user_id, s.host, s.status)
                for s in servers)
            LOG.info('Instance map loaded from Nova: %d instance(s) on %d '
                     'host(s)', len(self.map), len(self.map.hosts()))
            delay = 0.5
            interval = self._opts.resource_map_resync_interval
            if not interval or self._stop.wait(interval):
                return

    # -- events ------------------------------------------------------------
    def handle(self, event, received=None):
        """Handle one parsed event; returns the HostFault it started."""
        received = received or time.time()
        if not self.check.accept(event):
            return None
        etype = event.event_type
        if etype.startswith('compute.instance.'):
            left = self.map.host_of(event.traits.get('instance_id'))
            self.map.apply(event)
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
        with self._lock:
            if self._faults.pop(host, None) is not None:
                LOG.info('Host %s is back (%s)', host, event.event_type)

    def _fault(self, host, event, received):
        now = time.monotonic()
        with self._lock:
            known = self._faults.get(host)
            if known is not None and now - known[1] < self._opts.fault_memory:
                LOG.info('Host %s fault already handled (%s); ignoring %s',
                         host, known[0].monitor_event_id, event.event_type)
                return None
            fault = HostFault(host, event)
            self._faults[host] = (fault, now)
        fault.times['detected'] = received
        fault.instances = self.map.on_host(host)
        if not fault.instances and not self.map.loaded.is_set():
            fault.instances = resource_map.ask_nova(self.fencer, host)
        fault.times['found'] = time.time()
        LOG.info('Host %s down (%s): %d instance(s) of %d project(s)',
                 host, fault.cause, len(fault.instances),
                 len({i.project_id for i in fault.instances}))
        fence = self._should_fence(event)
        try:
            if fence and self._opts.mode == 'conservative':
                # Nova first, in this listener thread: owners are told once
                # the fence was tried (and told even if it failed).
                self._fence(fault)
                self._notify(fault)
            else:
                self._notify(fault)
                if fence:
                    self._fence_pool.submit(self._fence, fault)
                else:
                    fault.done.set()
        except Exception:
            # Not handled after all: the requeued report must not be taken
            # for a repeat.
            with self._lock:
                if self._faults.get(host, (None,))[0] is fault:
                    del self._faults[host]
            raise
        return fault

    def _should_fence(self, event):
        if not self._opts.fence:
            return False
        if event.event_type not in self._opts.fence_event_types:
            return False
        severity = event.traits.get('severity')
        return not severity or severity in self._opts.fence_severities

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
            }, message_id=str(uuid.uuid5(FAULT_EVENT_NAMESPACE, '%s/%s' % (
                fault.event.message_id, inst.instance_id)))))
        return out

    def _notify(self, fault):
        events = self.fault_events(fault)
        self.ledger.record([i.instance_id for i in fault.instances], 'error')
        fault.times['events'] = time.time()
        try:
            extra = {'at_least_once': True} if self._delivery_wait else {}
            fault.firings = self.engine.evaluate(
                events, received=fault.times['detected'], **extra)
        except Exception:
            LOG.exception('Evaluating the faults of host %s failed',
                          fault.host)
            raise
        fault.times['notified'] = time.time()
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
        self._wait_notified(fault)
        try:
            fault.fenced = self.fencer.force_down(host)
            fault.times['forced_down'] = time.time()
            ids = [i.instance_id for i in fault.instances]
            fault.reset = self.fencer.reset_to_error(ids) if ids else {}
            fault.times['reset'] = time.time()
            failed = {k: v for k, v in fault.reset.items() if v != 'ok'}
            if failed:
                LOG.error('Host %s: %d instance(s) not reset to error: %s',
                          host, len(failed), sorted(failed.items())[:10])
            LOG.info('Host %s fenced: forced down=%s, %d/%d instance(s) '
                     'reset to error', host, fault.fenced,
                     len(fault.reset) - len(failed), len(fault.reset))
        except Exception as e:
            fault.fenced = False
            LOG.error('Fencing host %s failed: %s', host, e)
        finally:
            fault.done.set()
            self._log_timeline(fault)

    def _log_timeline(self, fault):
        if not self._opts.timeline_log:
            return
        LOG.info('doctor-timeline host=%s monitor_event_id=%s instances=%d '
                 'fenced=%s %s', fault.host, fault.monitor_event_id,
                 len(fault.instances), fault.fenced,
                 ' '.join('%s=%.6f' % kv for kv in sorted(
                     fault.times.items())))


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
        # With [doctor_publisher] delivery_wait, the report is acked once
        # the owners were notified (at-least-once across an agent crash).
        direct.wait_delivered([f for fault in faults for f in fault.firings],
                              self.inspector.delivery_wait)
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
