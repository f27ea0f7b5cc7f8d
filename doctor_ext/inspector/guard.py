"""The storm guard and the fence ledger (``doctor_fence``), shared by agents.

Every fault the policy fences gets one row of ``doctor_fence`` (keyed by
the fault), written by whichever agent fences it:

``method``
   ``power`` (through the host's BMC) or ``logical`` (Nova only).
``state``
   ``admitted`` (the guard let a power-off start), ``held`` (the guard
   stopped it: an operator must confirm), ``confirmed`` (an operator did),
   then ``powered_off``, ``logical`` or ``failed``; ``recovered`` once the
   host was given back (:mod:`.recovery`).

The storm guard: a power-off is admitted only if, counting it, no more than
``storm_max_hosts`` hosts, and no more than ``storm_max_percent`` % of the
hosts of its group (the ``group`` of the BMC file), were powered off or
admitted within the last ``storm_window`` seconds. The count and the new
row are one transaction under a lock row (``doctor_meta``, name
``fence-guard``), so N agents deciding at once never admit more than the
bound together. A held fault stays held until an operator confirms it
(``doctor-ext-fence confirm HOST``, :func:`confirm`), which hands it back to
the agents: the next sweep of any agent powers the host off.
"""

import datetime

from oslo_config import cfg
import sqlalchemy as sa

from doctor_ext.db import api as db_api
from doctor_ext.db import models

GROUP = 'doctor_fencing'
OPTS = [
    cfg.IntOpt('storm_max_hosts', default=2, min=0,
               help='Most hosts powered off within storm_window seconds '
                    'without an operator\'s confirmation (0: every '
                    'power-off waits for one).'),
    cfg.FloatOpt('storm_max_percent', default=50.0, min=0.0, max=100.0,
                 help='Most hosts of one group (the "group" of the BMC '
                      'file), in percent of the group\'s hosts in that '
                      'file, powered off within storm_window seconds '
                      'without an operator\'s confirmation. Hosts without '
                      'a group count only against storm_max_hosts.'),
    cfg.FloatOpt('storm_window', default=600.0, min=1.0,
                 help='Seconds the storm guard looks back.'),
]

FENCE = models.fences
FAULT = models.faults
META = models.meta
LOCK_NAME = 'fence-guard'

POWER = 'power'
LOGICAL = 'logical'
ADMITTED = 'admitted'
HELD = 'held'
CONFIRMED = 'confirmed'
POWERED_OFF = 'powered_off'
FAILED = 'failed'
RECOVERED = 'recovered'
# What the guard counts: power-offs started or done.
COUNTED = (ADMITTED, CONFIRMED, POWERED_OFF, FAILED)


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def _row(conn, fault_id):
    row = conn.execute(sa.select(FENCE).where(
        FENCE.c.fault_id == fault_id)).first()
    return row._mapping if row is not None else None


def _lock(conn):
    conn.execute(db_api.insert_ignore(conn, META), [{'name': LOCK_NAME}])
    conn.execute(db_api.lock(sa.select(META.c.name).where(
        META.c.name == LOCK_NAME), conn))


class FenceLedger:
    """``doctor_fence`` for one agent.

    Every method may raise StoreUnavailable.
    """

    def __init__(self, conf, store):
        register_opts(conf)
        self._opts = conf[GROUP]
        self._store = db_api.background(store)

    def _run(self, what, fn):
        return self._store.run(what, fn)

    def get(self, fault_id):
        """The row of ``fault_id`` as a dict, or None."""
        return self._run('reading the fence of fault %s' % fault_id,
                         lambda conn: _row(conn, fault_id))

    def admit(self, fault, group, group_size):
        """Decide a power-off: ``admitted``, ``held`` or the row's state.

        A fault seen before (resumed, or confirmed by an operator) keeps
        its row: its state is returned and nothing is counted again.
        """
        opts = self._opts
        now = db_api.utcnow()
        since = now - datetime.timedelta(seconds=opts.storm_window)

        def decide(conn):
            _lock(conn)
            known = _row(conn, fault.fault_id)
            if known is not None:
                if known['state'] == CONFIRMED:
                    conn.execute(FENCE.update().where(
                        FENCE.c.fault_id == fault.fault_id).values(
                            state=ADMITTED, updated_at=now))
                    return ADMITTED, None
                return known['state'], known['error']
            recent = sa.select(sa.func.count()).select_from(FENCE).where(
                FENCE.c.method == POWER, FENCE.c.state.in_(COUNTED),
                FENCE.c.created_at >= since)
            total = conn.execute(recent).scalar()
            reason = None
            if total + 1 > opts.storm_max_hosts:
                reason = ('%d host(s) powered off in the last %.0f s, '
                          'storm_max_hosts is %d' % (
                              total, opts.storm_window,
                              opts.storm_max_hosts))
            elif group and group_size:
                in_group = conn.execute(recent.where(
                    FENCE.c.grp == group)).scalar()
                percent = 100.0 * (in_group + 1) / group_size
                if percent > opts.storm_max_percent:
                    reason = ('%d of the %d host(s) of group %s powered off '
                              'in the last %.0f s; one more is %.0f %%, '
                              'storm_max_percent is %.0f' % (
                                  in_group, group_size, group,
                                  opts.storm_window, percent,
                                  opts.storm_max_percent))
            state = HELD if reason else ADMITTED
            conn.execute(FENCE.insert(), [{
                'fault_id': fault.fault_id, 'host': fault.host,
                'grp': group, 'method': POWER, 'state': state,
                'attempts': 0, 'error': reason, 'created_at': now,
                'updated_at': now}])
            if state == HELD:
                # Not open any more: no agent resumes it until confirmed.
                conn.execute(FAULT.update().where(
                    FAULT.c.fault_id == fault.fault_id).values(
                        fence=HELD, lease_owner=None, lease_until=None,
                        updated_at=now))
            return state, reason
        return self._run('asking the storm guard about host %s'
                         % fault.host, decide)

    def logical(self, fault, state):
        """Record a logical fence's outcome: ``logical`` or ``failed``."""
        now = db_api.utcnow()

        def write(conn):
            conn.execute(db_api.insert_ignore(conn, FENCE), [{
                'fault_id': fault.fault_id, 'host': fault.host,
                'method': LOGICAL, 'state': state, 'attempts': 0,
                'created_at': now, 'updated_at': now}])
        self._run('recording the logical fence of host %s' % fault.host,
                  write)

    def finish(self, fault, state, attempts=0, error=None):
        """Record the outcome: ``powered_off``, ``logical`` or ``failed``."""
        now = db_api.utcnow()

        def write(conn):
            conn.execute(FENCE.update().where(
                FENCE.c.fault_id == fault.fault_id).values(
                    state=state, attempts=FENCE.c.attempts + attempts,
                    error=(error or None) and error[:1000], updated_at=now))
        self._run('recording the fence of host %s' % fault.host, write)


def confirm(store, host, who):
    """An operator's go for the held power-off(s) of ``host``.

    Marks them ``confirmed`` and opens their faults again with an expired
    lease: the next sweep of any agent takes them over and powers the host
    off. Returns the number of faults confirmed.
    """
    now = db_api.utcnow()

    def write(conn):
        held = [r.fault_id for r in conn.execute(sa.select(
            FENCE.c.fault_id).where(FENCE.c.host == host,
                                    FENCE.c.state == HELD))]
        if not held:
            return 0
        conn.execute(FENCE.update().where(FENCE.c.fault_id.in_(held)).values(
            state=CONFIRMED, confirmed_by=who[:255], updated_at=now))
        conn.execute(FAULT.update().where(FAULT.c.fault_id.in_(held)).values(
            fence='pending', lease_owner=None,
            lease_until=now - datetime.timedelta(seconds=1),
            updated_at=now))
        return len(held)
    return store.run('confirming the power-off of host %s' % host, write)


def listing(store, limit=50):
    """The newest rows of ``doctor_fence``, newest first, as dicts."""
    def read(conn):
        return [dict(r._mapping) for r in conn.execute(
            sa.select(FENCE).order_by(FENCE.c.created_at.desc()).limit(
                limit))]
    return store.run('listing the fences', read)
