"""Power fencing around the inspector's logical fencing.

What "fenced" means for a host fault the policy fences:

* ``powered_off``: the host's BMC accepted ForceOff and its system reports
  power state ``Off``; only then is the compute service forced down in
  Nova and the instances reset to error (Pacemaker's order: the node is
  dead before its resources move);
* ``logical``: the host has no BMC in the BMC file, or the policy does not
  power off this fault: the compute service is forced down and the
  instances reset to error, nothing more (the VMs may still be running);
* ``failed``: the power-off was not confirmed (refused, no answer, 5xx,
  state never ``Off``) after the bounded retries, or Nova did not confirm
  the logical fence. After a failed power-off nothing is forced down: an
  evacuation would start the VMs a second time while the first copies may
  still run;
* ``pending``: fencing has not finished, or the storm guard holds it until
  an operator confirms (:mod:`.guard`).

The fault event's ``fencing`` trait carries the state at the time the
owners are told (``pending`` in shortcut mode); each affected instance's
owner then gets a ``compute.instance.fenced`` event with the outcome
(:mod:`.owner_events`).

Which faults are powered off: ``[doctor_fencing] power`` on, the fault's
event type in ``power_event_types`` and its severity in
``power_severities`` (a fault without severity counts as matching), and
the host in the BMC file. Faults that fence at all are chosen by
``[doctor_inspector] fence*`` as before.
"""

import time

from oslo_config import cfg
from oslo_log import log

from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import bmc as bmc_mod
from doctor_ext.inspector import guard as guard_mod
from doctor_ext.inspector import owner_events
from doctor_ext.inspector import power as power_mod

LOG = log.getLogger(__name__)

GROUP = 'doctor_fencing'
OPTS = [
    cfg.BoolOpt('power', default=False,
                help='Power off faulty hosts through their BMC (Redfish) '
                     'before fencing them in Nova. Hosts not in bmc_file '
                     'are fenced logically, and the log says so.'),
    cfg.StrOpt('bmc_file',
               help='YAML file mapping compute host names to their BMC: '
                    'address, system, username, password, verify, group '
                    '(see the architecture guide). Read again when it '
                    'changes. Keep it readable by the agent only.'),
    cfg.ListOpt('power_event_types', default=['compute.host.down'],
                help='Fault event types whose host is powered off (the '
                     'others that fence are fenced logically).'),
    cfg.ListOpt('power_severities', default=['critical'],
                help='Monitor severities whose host is powered off (the '
                     'others that fence are fenced logically).'),
]

NONE = 'none'
PENDING = 'pending'
LOGICAL = 'logical'
POWERED_OFF = 'powered_off'
FAILED = 'failed'


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return OPTS + power_mod.OPTS + guard_mod.OPTS


class PowerFencing:
    """The power step of one agent's fencing, and what owners are told."""

    def __init__(self, conf, engine, power=None, inventory=None,
                 ledger=None):
        register_opts(conf)
        self._opts = conf[GROUP]
        self.engine = engine
        self.power = power or power_mod.RedfishPower(conf)
        self.inventory = inventory or bmc_mod.Inventory(self._opts.bmc_file)
        store = getattr(engine, 'store', None)
        # Without a database (an engine that has none) nothing is powered
        # off: the storm guard could not count.
        self.ledger = ledger or (guard_mod.FenceLedger(conf, store)
                                 if store is not None else None)

    # -- policy ----------------------------------------------------------
    def wants_power(self, record):
        """The policy's answer for a journal.Fault, BMC aside."""
        opts = self._opts
        if not opts.power or record.event_type not in opts.power_event_types:
            return False
        return not record.severity or record.severity in \
            opts.power_severities

    def trait(self, fault):
        """The ``fencing`` trait of the fault events of ``fault``."""
        if getattr(fault, 'fencing', None):
            return fault.fencing
        return PENDING if fault.record.fence == PENDING else NONE

    # -- the steps around the logical fence ----------------------------------
    def before_logical(self, fault):
        """Power the host off if the policy says so.

        Returns True when the logical fence (Nova) is to follow, False when
        fencing stops here (held by the storm guard, or the power-off
        failed: ``fault.fencing`` says which).
        """
        record = fault.record
        fault.method = guard_mod.LOGICAL
        if not self.wants_power(record):
            return True
        bmc = self.inventory.get(record.host)
        if bmc is None:
            LOG.warning('Host %s has no BMC in the BMC file: fenced '
                        'logically only (its VMs may still be running)',
                        record.host)
            return True
        if record.fault_id is None or self.ledger is None:
            LOG.error('Host %s: the database is unavailable, the storm '
                      'guard cannot count: not powered off, fenced '
                      'logically only', record.host)
            return True
        try:
            state, reason = self.ledger.admit(
                record, bmc.group, self.inventory.group_size(bmc.group)
                if bmc.group else 0)
        except store_mod.StoreUnavailable as e:
            LOG.error('Host %s: the storm guard cannot be asked (%s): not '
                      'powered off, fenced logically only', record.host, e)
            return True
        if state == guard_mod.LOGICAL:
            # Fenced logically before (by policy or BMC file then).
            return True
        fault.method = guard_mod.POWER
        if state == guard_mod.HELD:
            record.fence = guard_mod.HELD
            fault.fencing = PENDING
            LOG.error('Host %s NOT powered off: the storm guard holds it '
                      '(%s). Owners are told fencing is pending. To power '
                      'it off, an operator runs: doctor-ext-fence confirm '
                      '%s', record.host, reason, record.host)
            return False
        if state == guard_mod.FAILED:
            fault.fencing = FAILED
            return False
        if state != guard_mod.POWERED_OFF:
            result = self.power.power_off(bmc)
            if not result.ok:
                LOG.error('Host %s NOT fenced: %s (%d attempt(s)); not '
                          'forced down in Nova', record.host, result.reason,
                          result.attempts)
                self._finish(record, guard_mod.FAILED, result.attempts,
                             result.reason)
                fault.fencing = FAILED
                return False
            LOG.info('Host %s powered off: %s', record.host, result.reason)
            self._finish(record, guard_mod.POWERED_OFF, result.attempts,
                         result.reason)
        fault.times['powered_off'] = time.time()
        fault.fencing = POWERED_OFF
        return True

    def after_logical(self, fault, ok):
        """Record the outcome and tell the owners of every instance."""
        record = fault.record
        method = getattr(fault, 'method', guard_mod.LOGICAL)
        if method == guard_mod.LOGICAL:
            fault.fencing = LOGICAL if ok else FAILED
            if record.fault_id is not None and self.ledger is not None:
                try:
                    self.ledger.logical(record, fault.fencing)
                except store_mod.StoreUnavailable as e:
                    LOG.warning('Logical fence of host %s not recorded: %s',
                                record.host, e)
        elif not ok:
            # Powered off, but Nova did not confirm: the host is dead,
            # evacuation may not start yet. Owners hear powered_off.
            LOG.error('Host %s powered off but not fenced in Nova',
                      record.host)
        self.tell_owners(fault)

    def tell_owners(self, fault):
        """One ``compute.instance.fenced`` per instance, with the outcome."""
        record = fault.record
        method = getattr(fault, 'method', guard_mod.LOGICAL)
        events = owner_events.build(
            owner_events.FENCED, record.fault_id or record.message_id,
            record.host, fault.instances, method, fault.fencing,
            record.monitor_event_id)
        if not events:
            return
        try:
            self.engine.evaluate(events)
        except Exception as e:
            LOG.error('Owners of host %s not told it is fenced (%s): %s',
                      record.host, fault.fencing, e)
            return
        fault.times['fenced_told'] = time.time()
        LOG.info('Host %s: told the owners of %d instance(s) fencing is '
                 '%s (%s)', record.host, len(events), fault.fencing, method)

    def _finish(self, record, state, attempts=0, error=None):
        try:
            self.ledger.finish(record, state, attempts, error)
        except store_mod.StoreUnavailable as e:
            LOG.warning('Fence outcome of host %s not recorded: %s',
                        record.host, e)
