"""Doctor's Inspector: each event to the part that handles it.

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

This module routes; the work is elsewhere: the instance map and its
loading (:mod:`.resource_map`, :mod:`.instances`, :mod:`.map_loader`), the
work of a fault (:mod:`.faults`), host maintenance (:mod:`.maintenance`).
Ceilometer's pipeline reaches it through :mod:`.hook`.

A host fault or maintenance report is acted on only if
:mod:`.report_check` accepts it (signed by the monitor, recent, not
replayed). Repeated reports of a host already handled are ignored until the
host is reported up again (or ``fault_memory`` has passed), whichever agent
gets them. A fault whose instances cannot be known yet stays ``resolving``
and is retried with backoff, with an error logged at every try. Open faults
whose agent died are taken over by the sweep of any live agent. Which
faults fence follows the operator policy below. ``compute.instance.*``
events keep the instance map current; host maintenance (a compute service
disabled with a reason, ``maintenance.host``, :mod:`.maintenance`) follows
the map's changes through :mod:`.changes`.
"""

import time

from oslo_config import cfg
from oslo_log import log
from oslo_utils import strutils

from doctor_ext.db import leases
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import changes
from doctor_ext.inspector import faults as faults_mod
from doctor_ext.inspector import instances as instances_mod
from doctor_ext.inspector import journal as journal_mod
from doctor_ext.inspector import maintenance
from doctor_ext.inspector import map_loader
from doctor_ext.inspector import power_fencing
from doctor_ext.inspector import recovery as recovery_mod
from doctor_ext.inspector import report_check

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


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class Inspector:
    """The inspector proper; :mod:`.hook` is its pipeline face."""

    def __init__(self, conf, engine, fencer, rmap=None, journal=None,
                 check=None):
        register_opts(conf)
        leases.register_opts(conf)
        self._opts = conf[GROUP]
        self.fencer = fencer
        self.map = rmap if rmap is not None else \
            instances_mod.SharedResourceMap(engine.store)
        self.journal = journal or journal_mod.FaultJournal(
            engine.store, engine.owner, conf[leases.GROUP].lease_time)
        # Host reports are acted on only if signed (report_check).
        self.check = check or report_check.ReportCheck(conf)
        self.loader = map_loader.MapLoader(self._opts, self.map, fencer)
        # Power fencing through the BMCs, and the recovery policy.
        self.power = power_fencing.PowerFencing(conf, engine)
        self.recovery = recovery_mod.Recovery(
            conf, engine, fencer, self.power.power, self.power.inventory)
        self.faults = faults_mod.FaultWork(self._opts, engine, fencer,
                                           self.journal,
                                           self.loader.instances_of,
                                           self.power, self.recovery)
        # Host maintenance follows the map's changes (changes.Follower).
        self.maintenance = maintenance.MaintenanceTracker(
            conf, engine, self.map, fencer)
        self.feed = changes.MapFeed(self.map)
        self.feed.add(self.maintenance)

    @property
    def engine(self):
        """The evaluator the faults are handed to."""
        return self.faults.engine

    @engine.setter
    def engine(self, engine):
        self.faults.engine = engine
        self.power.engine = self.recovery.engine = engine

    def start(self):
        if self.loader.start():
            self.maintenance.start()
            sweeper = getattr(self.engine, 'sweeper', None)
            if sweeper is not None:
                sweeper.add('host faults', self.sweep)
                sweeper.add('host recoveries', self.recovery.sweep)

    def stop(self):
        self.loader.stop()
        self.faults.stop()
        self.maintenance.stop()

    def sweep(self):
        """Renew this process's fault leases, take over expired faults."""
        self.faults.sweep()

    def fault_events(self, fault):
        """One ``compute.instance.update`` (state error) per instance."""
        return self.faults.fault_events(fault)

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
                self.feed.apply(event)
            except store_mod.BadRecord as e:
                LOG.error('Instance map not updated from %s %s: %s', etype,
                          event.message_id, e)
            except store_mod.StoreUnavailable as e:
                # The evaluator still tells the owners about this event;
                # the map catches up from Nova once the database is back.
                LOG.warning('Instance map not updated from %s %s (the map '
                            'is reloaded from Nova when the database is '
                            'back): %s', etype, event.message_id, e)
                self.loader.resync_soon()
            return None
        # A host's state (service disabled with a reason, enabled again;
        # maintenance.host/.end) to those who follow the map's changes;
        # fault handling below is unchanged.
        self.feed.host_state(event, received)
        if etype in self._opts.recovery_event_types:
            self.faults.recovered(event)
            return None
        if etype not in self._opts.fault_event_types:
            return None
        host = event.traits.get('hostname') or event.traits.get('host')
        if not host:
            LOG.error('Ignoring %s event %s: it names no host', etype,
                      event.message_id)
            return None
        if etype == 'service.update':
            if not strutils.bool_from_string(event.traits.get('forced_down')):
                if not strutils.bool_from_string(event.traits.get('disabled')):
                    self.faults.recovered(event)
                return None
        return self.faults.fault(host, event, received)
