"""What happens to a fenced host when it is reported up again.

``[doctor_fencing] recovery``:

``leave`` (the default)
   nothing: the host stays forced down in Nova (and powered off, if it
   was) until an operator gives it back. The log says so.
``power_on``
   ``recovery_hold_time`` seconds after the ``compute.host.up`` report, if
   no new fault of the host came meanwhile, the host is powered on through
   its BMC (if it was powered off; power state ``On`` confirmed), its
   compute service is no longer forced down in Nova, and each instance of
   the fault gets a ``compute.instance.recovered`` event (its owner may
   alarm on it). The instances stay in error: rebuilding or evacuating
   them is the owner's or the operator's call.

The due time is a column of ``doctor_fence`` (``recover_at``), so any
agent's sweep carries it out, once: the agent that takes a due row moves
``recover_at`` forward while it works (a lease), and marks it
``recovered`` when done. A step that fails is retried at the next
sweep after one more hold time.
"""

import datetime

from oslo_config import cfg
from oslo_log import log
import sqlalchemy as sa

from doctor_ext.db import api as db_api
from doctor_ext.db import models
from doctor_ext.inspector import guard as guard_mod
from doctor_ext.inspector import owner_events
from doctor_ext.inspector import resource_map

LOG = log.getLogger(__name__)

GROUP = 'doctor_fencing'
OPTS = [
    cfg.StrOpt('recovery', default='leave',
               choices=[('leave', 'a fenced host stays forced down (and '
                                  'powered off) until an operator acts'),
                        ('power_on', 'power the host on and unset '
                                     'force-down recovery_hold_time seconds '
                                     'after it is reported up')],
               help='What to do with a fenced host reported up again.'),
    cfg.FloatOpt('recovery_hold_time', default=300.0, min=0.0,
                 help='Seconds a fenced host must stay reported up, with '
                      'no new fault, before recovery = power_on gives it '
                      'back.'),
]

FENCE = models.fences
FI = models.fault_instances
F = models.faults
H = models.hosts
GIVEN_BACK = (guard_mod.POWERED_OFF, guard_mod.LOGICAL)


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class Recovery:
    """The recovery policy of one agent (its sweep runs due recoveries)."""

    def __init__(self, conf, engine, fencer, power, inventory):
        register_opts(conf)
        self._opts = conf[GROUP]
        self.engine = engine
        self.fencer = fencer
        self.power = power
        self.inventory = inventory
        store = getattr(engine, 'store', None)
        self._store = db_api.background(store) if store is not None \
            else None

    def host_up(self, host):
        """``host`` is reported up: schedule its recovery, or say why not."""
        if self._opts.recovery != 'power_on' or self._store is None:
            LOG.warning('Host %s is reported up; it stays fenced (recovery '
                        '= leave): an operator unsets its force-down in '
                        'Nova (and powers it on) when it is repaired', host)
            return 0
        due = db_api.utcnow() + datetime.timedelta(
            seconds=self._opts.recovery_hold_time)

        def write(conn):
            return conn.execute(FENCE.update().where(
                FENCE.c.host == host, FENCE.c.state.in_(GIVEN_BACK),
                FENCE.c.recover_at.is_(None)).values(
                    recover_at=due, updated_at=db_api.utcnow())).rowcount
        count = self._store.run('scheduling the recovery of %s' % host,
                                write)
        if count:
            LOG.info('Host %s is reported up: given back in %.0f s unless '
                     'it fails again (recovery = power_on)', host,
                     self._opts.recovery_hold_time)
        return count

    def _take_due(self, limit=10):
        now = db_api.utcnow()
        lease = now + datetime.timedelta(
            seconds=max(self._opts.recovery_hold_time, 60.0))

        def take(conn):
            rows = conn.execute(db_api.lock(sa.select(FENCE).where(
                FENCE.c.recover_at <= now, FENCE.c.state.in_(GIVEN_BACK)
            ).limit(limit), conn, skip_locked=True)).all()
            due = []
            for row in rows:
                down_again = conn.execute(sa.select(H.c.fault_id).where(
                    H.c.host == row.host)).scalar()
                if down_again:
                    # A new fault since the up report: no recovery.
                    conn.execute(FENCE.update().where(
                        FENCE.c.fault_id == row.fault_id).values(
                            recover_at=None, updated_at=now))
                    continue
                conn.execute(FENCE.update().where(
                    FENCE.c.fault_id == row.fault_id).values(
                        recover_at=lease, updated_at=now))
                fault = conn.execute(sa.select(F.c.monitor_event_id).where(
                    F.c.fault_id == row.fault_id)).first()
                instances = [resource_map.Instance(
                    r.instance_id, r.project_id, r.user_id, row.host, None)
                    for r in conn.execute(sa.select(FI).where(
                        FI.c.fault_id == row.fault_id))]
                due.append((dict(row._mapping), instances,
                            fault.monitor_event_id if fault else None))
            return due
        return self._store.run('taking due recoveries', take)

    def sweep(self):
        """Give back every host whose hold time has passed."""
        if self._opts.recovery != 'power_on' or self._store is None:
            return
        for row, instances, monitor_event_id in self._take_due():
            self._give_back(row, instances, monitor_event_id)

    def _give_back(self, row, instances, monitor_event_id):
        host = row['host']
        if row['method'] == guard_mod.POWER:
            bmc = self.inventory.get(host)
            if bmc is None:
                LOG.error('Host %s cannot be powered on: it is no longer in '
                          'the BMC file; retried in %.0f s', host,
                          self._opts.recovery_hold_time)
                return False
            result = self.power.power_on(bmc)
            if not result.ok:
                LOG.error('Host %s not given back: %s; retried in %.0f s',
                          host, result.reason,
                          self._opts.recovery_hold_time)
                return False
        if not self.fencer.force_down(host, forced=False):
            LOG.error('Host %s not given back: Nova did not unset its '
                      'force-down; retried in %.0f s', host,
                      self._opts.recovery_hold_time)
            return False

        def write(conn):
            conn.execute(FENCE.update().where(
                FENCE.c.fault_id == row['fault_id']).values(
                    state=guard_mod.RECOVERED, recover_at=None,
                    updated_at=db_api.utcnow()))
        self._store.run('recording host %s given back' % host, write)
        events = owner_events.build(
            owner_events.RECOVERED, row['fault_id'], host, instances,
            row['method'], 'recovered', monitor_event_id)
        if events:
            self.engine.evaluate(events)
        LOG.info('Host %s given back (%s fence): %s; %d owner event(s)',
                 host, row['method'], 'powered on, force-down unset'
                 if row['method'] == guard_mod.POWER else
                 'force-down unset', len(events))
        return True
