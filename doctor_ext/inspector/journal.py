"""The fault journal: every host fault, durable and shared by all agents.

A host-down report is acknowledged on the bus only once its fault is a row
of ``doctor_fault`` (host, cause, and the affected instances in
``doctor_fault_instance``, or state ``resolving`` while they cannot be
known). From then on the row drives the work, and any live agent resumes
what a dead one left:

``state``
   ``resolving`` (instances unknown: the map was never loaded and Nova
   cannot list the host; retried with backoff, logged as an error each
   time) -> ``notifying`` (fault events to evaluate; the alarm claims and
   the outbox rows they owe commit together) -> ``notified``.
``fence``
   ``none`` (the policy does not fence), ``pending``, ``done`` or
   ``failed``; ``forced_down`` and each instance's ``reset`` record which
   Nova calls were confirmed, so resumed fencing never repeats one.

A fault is *open* while it is not notified or its fencing is pending. Its
agent holds a lease on it (``lease_owner``, ``lease_until``) and renews it
while it works; an open fault whose lease ran out (its agent died, or a
retry is due) is taken over by the next agent that sweeps
(:meth:`FaultJournal.take_expired`).

The journal is also every agent's fault memory (``doctor_host``: a host's
current fault; repeated reports within ``fault_memory`` are ignored, a
redelivered report is the same fault) and the shortcut ledger (Nova's own
update to ``error`` of an instance the inspector already reported is
recognised once, by whichever agent receives it).
"""

import datetime
import uuid

import sqlalchemy as sa

from doctor_ext.db import api as db_api
from doctor_ext.db import models
from doctor_ext.inspector import resource_map

F = models.faults
FI = models.fault_instances
H = models.hosts

RESOLVING = 'resolving'
NOTIFYING = 'notifying'
NOTIFIED = 'notified'
NONE = 'none'
PENDING = 'pending'
DONE = 'done'
FAILED = 'failed'

# How long Nova's own update of a reported instance is recognised.
LEDGER_TTL = datetime.timedelta(minutes=10)
_OPEN = sa.or_(F.c.state != NOTIFIED, F.c.fence == PENDING)


class Fault:
    """One row of ``doctor_fault`` with its instances (plain data)."""

    __slots__ = ('fault_id', 'host', 'message_id', 'event_type',
                 'monitor_event_id', 'cause', 'severity', 'state', 'fence',
                 'forced_down', 'attempts', 'detected', 'instances',
                 'resets')

    def __init__(self, **kw):
        for name in self.__slots__:
            setattr(self, name, kw.get(name))
        self.instances = self.instances or []
        self.resets = self.resets or {}

    @property
    def open(self):
        return self.state != NOTIFIED or self.fence == PENDING


def _fault(row, instances=(), resets=None):
    return Fault(instances=list(instances), resets=resets or {},
                 **{k: row[k] for k in Fault.__slots__
                    if k not in ('instances', 'resets')})


def report_fields(event):
    """What a fault record keeps of the report ``event``."""
    traits = event.traits
    return {'message_id': event.message_id, 'event_type': event.event_type,
            'monitor_event_id': traits.get('monitor_event_id'),
            'cause': traits.get('cause') or event.event_type,
            'severity': traits.get('severity')}


def in_memory(host, event, instances, fence):
    """A fault that is not journaled (the database is unavailable)."""
    return Fault(fault_id=None, host=host, instances=instances,
                 state=NOTIFYING, fence=PENDING if fence else NONE,
                 **report_fields(event))


def _instance_rows(fault_id, instances):
    return [{'fault_id': fault_id, 'instance_id': i.instance_id,
             'project_id': i.project_id, 'user_id': i.user_id,
             'old_state': (i.state or '')[:255] or None, 'reset': PENDING,
             'nova_seen': False} for i in instances]


class _Memory:
    """Progress of a fault that is not journaled: kept on the record only."""

    @staticmethod
    def resolved(fault, instances):
        fault.instances = list(instances)
        fault.resets = {i.instance_id: PENDING for i in instances}
        fault.state = NOTIFYING

    @staticmethod
    def unresolved(fault, error, retry_in):
        fault.attempts = (fault.attempts or 0) + 1

    @staticmethod
    def notified(fault):
        fault.state = NOTIFIED

    @staticmethod
    def forced_down(fault, ok):
        fault.forced_down = DONE if ok else FAILED

    @staticmethod
    def reset(fault, results):
        for instance_id, ok in results.items():
            fault.resets[instance_id] = DONE if ok else FAILED

    @staticmethod
    def fenced(fault, ok):
        fault.fence = DONE if ok else FAILED


MEMORY = _Memory()


class FaultJournal:
    """The ``doctor_fault*`` tables, for the agent ``owner``.

    Every method may raise
    :class:`doctor_ext.evaluator.store.StoreUnavailable`.
    """

    def __init__(self, store, owner, lease=15.0):
        # Reports are recorded from the agent's listener threads (bounded
        # calls); progress and sweeps from background threads.
        self._store = store
        self._bg = db_api.background(store)
        self.owner = owner
        self.lease = datetime.timedelta(seconds=lease)

    def _run(self, what, fn, background=True):
        return (self._bg if background else self._store).run(what, fn)

    # -- a new report --------------------------------------------------------
    def open(self, host, event, instances, fence, memory, detected=None):
        """Record the fault ``event`` reports on ``host``.

        :param instances: the affected instances, or None if they cannot
            be known yet (the fault is then ``resolving``).
        :param fence: whether the policy fences this fault.
        :param memory: seconds a fault of the host hides later reports.
        :returns: ``('new', fault)``; ``('redelivered', fault)`` for a report
            already recorded (the fault is leased to this agent if it is
            open and its lease ran out, else returned as it is); or
            ``('repeat', fault)`` for another report of a host whose fault
            is remembered.
        """
        now = db_api.utcnow()
        fault_id = str(uuid.uuid4())

        def write(conn):
            same = conn.execute(db_api.lock(sa.select(F).where(
                F.c.message_id == event.message_id), conn)).first()
            if same is not None:
                return 'redelivered', self._take(conn, same, now)
            conn.execute(db_api.insert_ignore(conn, H), [{'host': host}])
            current = conn.execute(db_api.lock(sa.select(H).where(
                H.c.host == host), conn)).one()
            if (current.fault_id and current.down_since and
                    now - current.down_since <
                    datetime.timedelta(seconds=memory)):
                known = conn.execute(sa.select(F).where(
                    F.c.fault_id == current.fault_id)).first()
                if known is not None:
                    return 'repeat', _fault(known._mapping)
            row = dict(
                report_fields(event), fault_id=fault_id, host=host,
                state=RESOLVING if instances is None else NOTIFYING,
                fence=PENDING if fence else NONE, forced_down=None,
                attempts=0, error=None, lease_owner=self.owner,
                lease_until=now + self.lease, detected=detected,
                created_at=now, updated_at=now)
            conn.execute(F.insert(), [row])
            if instances:
                # New rows of a new fault: one COPY on PostgreSQL.
                db_api.copy_rows(conn, FI, _instance_rows(fault_id,
                                                          instances))
            conn.execute(H.update().where(H.c.host == host).values(
                fault_id=fault_id, down_since=now))
            return 'new', _fault(row, instances or ())
        return self._run('recording the fault of host %s' % host, write,
                         background=False)

    def _take(self, conn, row, now):
        """The fault of ``row``, leased to this agent if it is free."""
        fault = self._load(conn, row._mapping)
        if fault.open and (row.lease_until is None or
                           row.lease_until < now or
                           row.lease_owner == self.owner):
            conn.execute(F.update().where(F.c.fault_id == row.fault_id).values(
                lease_owner=self.owner, lease_until=now + self.lease))
            return fault
        # Someone else is working on it: not ours to resume.
        fault.state, fault.fence = NOTIFIED, (
            fault.fence if fault.fence != PENDING else DONE)
        return fault

    @staticmethod
    def _load(conn, row):
        instances, resets = [], {}
        for r in conn.execute(sa.select(FI).where(
                FI.c.fault_id == row['fault_id'])):
            instances.append(resource_map.Instance(
                r.instance_id, r.project_id, r.user_id, row['host'],
                r.old_state))
            resets[r.instance_id] = r.reset
        return _fault(row, instances, resets)

    def recovered(self, host):
        """The host is back: a later fault of it is handled again."""
        def write(conn):
            return conn.execute(H.update().where(
                H.c.host == host, H.c.fault_id.is_not(None)).values(
                    fault_id=None, down_since=None)).rowcount
        return self._run('recording host %s up' % host, write,
                         background=False) > 0

    # -- progress ------------------------------------------------------------
    def _update(self, fault_id, what, **values):
        values['updated_at'] = db_api.utcnow()

        def write(conn):
            conn.execute(F.update().where(F.c.fault_id == fault_id).values(
                **values))
        self._run(what, write)

    def resolved(self, fault, instances):
        """``resolving`` -> ``notifying`` with the instances now known."""
        def write(conn):
            if instances:
                conn.execute(db_api.insert_ignore(conn, FI),
                             _instance_rows(fault.fault_id, instances))
            conn.execute(F.update().where(
                F.c.fault_id == fault.fault_id).values(
                    state=NOTIFYING, error=None,
                    updated_at=db_api.utcnow()))
        self._run('recording the instances of host %s' % fault.host, write)
        MEMORY.resolved(fault, instances)

    def unresolved(self, fault, error, retry_in):
        """Instances still unknown: try again in ``retry_in`` seconds."""
        MEMORY.unresolved(fault, error, retry_in)
        self._update(fault.fault_id, 'recording a retry of host %s'
                     % fault.host, attempts=fault.attempts,
                     error=str(error)[:1000],
                     lease_until=db_api.utcnow() + datetime.timedelta(
                         seconds=retry_in))

    def notified(self, fault):
        MEMORY.notified(fault)
        values = {'state': NOTIFIED}
        if fault.fence != PENDING:
            values.update(lease_owner=None, lease_until=None)
        self._update(fault.fault_id, 'recording host %s notified'
                     % fault.host, **values)

    def forced_down(self, fault, ok):
        MEMORY.forced_down(fault, ok)
        self._update(fault.fault_id, 'recording the force-down of %s'
                     % fault.host, forced_down=fault.forced_down)

    def reset(self, fault, results):
        """Record resets Nova answered: ``{instance_id: ok}``."""
        MEMORY.reset(fault, results)

        def write(conn):
            conn.execute(FI.update().where(
                FI.c.fault_id == fault.fault_id,
                FI.c.instance_id == sa.bindparam('b_id')).values(
                    reset=sa.bindparam('b_reset')),
                [{'b_id': i, 'b_reset': fault.resets[i]} for i in results])
        self._run('recording %d reset(s)' % len(results), write)

    def fenced(self, fault, ok):
        MEMORY.fenced(fault, ok)
        values = {'fence': fault.fence}
        if fault.state == NOTIFIED:
            values.update(lease_owner=None, lease_until=None)
        self._update(fault.fault_id, 'recording host %s fenced'
                     % fault.host, **values)

    # -- leases --------------------------------------------------------------
    def renew(self, fault_ids):
        """Extend this agent's leases on the faults it is working on."""
        if not fault_ids:
            return 0
        now = db_api.utcnow()

        def write(conn):
            return conn.execute(F.update().where(
                F.c.fault_id.in_(list(fault_ids)),
                F.c.lease_owner == self.owner).values(
                    lease_until=now + self.lease)).rowcount
        return self._run('renewing fault leases', write)

    def take_expired(self, limit=20):
        """Open faults whose lease ran out, now leased to this agent."""
        now = db_api.utcnow()

        def take(conn):
            rows = conn.execute(db_api.lock(sa.select(F).where(
                _OPEN, F.c.lease_until < now).order_by(
                    F.c.lease_until).limit(limit), conn,
                skip_locked=True)).all()
            if not rows:
                return []
            conn.execute(F.update().where(
                F.c.fault_id.in_([r.fault_id for r in rows])).values(
                    lease_owner=self.owner, lease_until=now + self.lease))
            return [self._load(conn, r._mapping) for r in rows]
        return self._run('taking over open faults', take)

    # -- the shortcut ledger -------------------------------------------------
    def nova_update_seen(self, instance_id):
        """True once for Nova's own update of an instance already reported.

        The inspector told the owners about the instance in a fault of the
        last :data:`LEDGER_TTL`; Nova's update to ``error`` for its reset
        is recognised by the first agent that receives it.
        """
        since = db_api.utcnow() - LEDGER_TTL

        def write(conn):
            recent = sa.select(F.c.fault_id).where(F.c.created_at >= since)
            return conn.execute(FI.update().where(
                FI.c.instance_id == instance_id,
                FI.c.nova_seen == sa.false(),
                FI.c.fault_id.in_(recent.scalar_subquery())).values(
                    nova_seen=True)).rowcount
        return self._run('checking the ledger for %s' % instance_id,
                         write, background=False) > 0

    # -- reading -------------------------------------------------------------
    def get(self, fault_id):
        def read(conn):
            row = conn.execute(sa.select(F).where(
                F.c.fault_id == fault_id)).first()
            return self._load(conn, row._mapping) if row else None
        return self._run('reading fault %s' % fault_id, read)
