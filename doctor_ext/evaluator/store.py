"""Aodh's database, as the evaluator uses it.

Reads the event alarms, claims state transitions and records history in
Aodh's own tables (``aodh.storage.sqlalchemy.models``), so that ``openstack
alarm show`` and ``openstack alarm-history show`` tell the truth.

The claim is what makes a non-repeating alarm fire exactly once with several
agents: a transition to ``alarm`` is taken inside one transaction that locks
the alarm rows still not in ``alarm`` (``SELECT ... FOR UPDATE``) and moves
them; only the agent that moved a row notifies. Claims for many alarms (a
host failure) are one transaction, not one per alarm, and lock the rows in
alarm id order, so that two agents claiming overlapping sets wait for each
other instead of deadlocking.

The engine connects lazily; nothing here blocks service start.
"""

import json
import threading
import uuid

from aodh.storage.sqlalchemy import models
from oslo_config import cfg
from oslo_log import log
from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy.engine import url as sa_url

LOG = log.getLogger(__name__)

GROUP = 'doctor_evaluator'
OPTS = [
    cfg.StrOpt('aodh_connection',
               secret=True,
               help='SQLAlchemy URL of the Aodh database (the value of '
                    '[database]/connection in aodh.conf). mysql:// is read '
                    'as mysql+pymysql:// as Aodh does.'),
    cfg.IntOpt('db_pool_size', default=8, min=1,
               help='Connections kept open to the Aodh database.'),
    cfg.FloatOpt('db_timeout', default=5.0, min=0.1,
                 help='Seconds to wait for the Aodh database to connect '
                      'or answer one statement.'),
]

ALARM = 'alarm'
STATE_TRANSITION = 'state transition'
_ALARMS = models.Alarm.__table__
_HISTORY = models.AlarmChange.__table__


# The claim in one PostgreSQL statement: lock the wanted rows not yet in
# alarm, in id order (two agents claiming overlapping sets wait for each
# other; a row moved meanwhile by the other is re-checked and skipped), move
# them, and return which moved.
_PG_CLAIM = sa.text("""
WITH wanted AS (
    SELECT w.id, w.reason
    FROM json_to_recordset(CAST(:wanted AS json)) AS w(id text, reason text)),
locked AS (
    SELECT alarm.alarm_id FROM alarm JOIN wanted ON alarm.alarm_id = wanted.id
    WHERE alarm.state != :alarm
    ORDER BY alarm.alarm_id
    FOR UPDATE OF alarm)
UPDATE alarm SET state = :alarm, state_reason = wanted.reason,
    state_timestamp = :now, timestamp = :now
FROM locked JOIN wanted ON wanted.id = locked.alarm_id
WHERE alarm.alarm_id = locked.alarm_id
RETURNING alarm.alarm_id
""")


def _claim_pg(conn, reasons, now):
    # The wanted rows as one JSON parameter: the driver's escaping of two
    # text arrays costs more than the statement itself.
    wanted = json.dumps([{'id': i, 'reason': r} for i, r in reasons.items()])
    rows = conn.execute(_PG_CLAIM, {'wanted': wanted, 'alarm': ALARM,
                                    'now': now})
    return {r[0] for r in rows}


# History rows in one PostgreSQL statement; a row already written (a retry,
# a redelivered event) is skipped by its id.
_PG_HISTORY = sa.text("""
INSERT INTO alarm_history (event_id, alarm_id, on_behalf_of, project_id,
    user_id, type, detail, timestamp, severity)
SELECT r.event_id, r.alarm_id, r.on_behalf_of, NULL, NULL, r.type, r.detail,
    CAST(r.ts AS timestamp), r.severity
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    event_id text, alarm_id text, on_behalf_of text, type text,
    detail text, ts text, severity text)
ON CONFLICT (event_id) DO NOTHING
""")


def _record_pg(conn, rows):
    conn.execute(_PG_HISTORY, {'rows': json.dumps([{
        'event_id': r['event_id'], 'alarm_id': r['alarm_id'],
        'on_behalf_of': r['on_behalf_of'], 'type': r['type'],
        'detail': r['detail'], 'severity': r['severity'],
        'ts': r['timestamp'].isoformat() if r['timestamp'] else None}
        for r in rows])})


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def dress_url(url):
    """Aodh's defaulting: a bare mysql:// means PyMySQL."""
    parsed = sa_url.make_url(url)
    if parsed.drivername == 'mysql':
        parsed = parsed.set(drivername='mysql+pymysql')
    return parsed


class StoreUnavailable(Exception):
    """The Aodh database cannot be reached; the message says why."""


def _unavailable(what, error):
    # The URL may carry a password: never log it, only the error class and
    # the driver's short message.
    return StoreUnavailable('%s failed: %s' % (
        what, str(getattr(error, 'orig', None) or error.__class__.__name__
                  ).splitlines()[0][:200]))


class AodhStore:
    """Event alarms, state claims and history in Aodh's database."""

    def __init__(self, conf):
        register_opts(conf)
        self._conf = conf[GROUP]
        self._engine = None
        self._lock = threading.Lock()

    @property
    def configured(self):
        return bool(self._conf.aodh_connection)

    def _get_engine(self):
        if self._engine is not None:
            return self._engine
        with self._lock:
            if self._engine is None:
                if not self.configured:
                    raise StoreUnavailable(
                        '[%s] aodh_connection is not set' % GROUP)
                url = dress_url(self._conf.aodh_connection)
                args = {}
                if url.get_backend_name() == 'mysql':
                    args = {'connect_timeout': int(self._conf.db_timeout) or 1,
                            'read_timeout': int(self._conf.db_timeout) or 1}
                elif url.get_backend_name() == 'postgresql':
                    args = {'connect_timeout': int(self._conf.db_timeout) or 1}
                kwargs = {'pool_pre_ping': True, 'connect_args': args}
                if url.get_backend_name() != 'sqlite':
                    kwargs.update(pool_size=self._conf.db_pool_size,
                                  max_overflow=self._conf.db_pool_size,
                                  pool_timeout=self._conf.db_timeout)
                self._engine = sa.create_engine(url, **kwargs)
        return self._engine

    def _run(self, what, fn):
        try:
            engine = self._get_engine()
            with engine.begin() as conn:
                return fn(conn)
        except sa.exc.SQLAlchemyError as e:
            raise _unavailable(what, e)

    def event_alarms(self, page=1000):
        """Every enabled alarm of type event, as dicts, ``page`` at a time.

        A generator over one server-side cursor: loading 100,000 alarms
        holds one page of rows in memory, not all of them.
        """
        query = sa.select(
            _ALARMS.c.alarm_id, _ALARMS.c.project_id, _ALARMS.c.user_id,
            _ALARMS.c.name, _ALARMS.c.severity, _ALARMS.c.state,
            _ALARMS.c.state_reason, _ALARMS.c.rule, _ALARMS.c.repeat_actions,
            _ALARMS.c.alarm_actions, _ALARMS.c.type).where(
                _ALARMS.c.type == 'event', _ALARMS.c.enabled == sa.true())
        try:
            with self._get_engine().connect() as conn:
                result = conn.execution_options(yield_per=page).execute(
                    query)
                for rows in result.partitions():
                    yield from (dict(r._mapping) for r in rows)
        except sa.exc.SQLAlchemyError as e:
            raise _unavailable('loading event alarms', e)

    def alarm(self, alarm_id):
        """One alarm as a dict (with ``enabled``), or None if deleted."""
        def load(conn):
            row = conn.execute(sa.select(_ALARMS).where(
                _ALARMS.c.alarm_id == alarm_id)).first()
            return dict(row._mapping) if row is not None else None
        return self._run('loading alarm %s' % alarm_id, load)

    def claim(self, transitions, refire=()):
        """Move alarms to ``alarm``; return the ids this call moved.

        :param transitions: list of (alarm_id, reason).
        :param refire: ids of alarms for which a row already in ``alarm``
            with exactly the given reason (so moved by the same event, whose
            notification was redelivered) counts as won again: at-least-once
            delivery when the agent that claimed it may have died before
            notifying. Such rows are not written again.
        """
        if not transitions:
            return set()
        reasons = dict(transitions)
        refire = set(refire).intersection(reasons)
        now = timeutils.utcnow()

        def run(conn):
            if not refire and conn.dialect.name == 'postgresql':
                return _claim_pg(conn, reasons, now)
            ids = list(reasons)
            free = _ALARMS.c.state != ALARM
            if refire:
                free = sa.or_(free, _ALARMS.c.alarm_id.in_(list(refire)))
            rows = conn.execute(
                sa.select(_ALARMS.c.alarm_id, _ALARMS.c.state,
                          _ALARMS.c.state_reason).where(
                    _ALARMS.c.alarm_id.in_(ids), free).order_by(
                    _ALARMS.c.alarm_id).with_for_update()
            ).all()
            won = {r.alarm_id for r in rows if r.state != ALARM}
            again = {r.alarm_id for r in rows if r.state == ALARM and
                     r.state_reason == reasons[r.alarm_id]}
            if won:
                # Row by row, by primary key: one UPDATE ... WHERE alarm_id
                # IN (...) may scan (and, on MariaDB, lock) rows that the
                # other agent holds, and deadlock.
                conn.execute(
                    _ALARMS.update().where(
                        _ALARMS.c.alarm_id == sa.bindparam('b_id')).values(
                        state=ALARM, state_reason=sa.bindparam('b_reason'),
                        state_timestamp=now, timestamp=now),
                    [{'b_id': i, 'b_reason': reasons[i]} for i in sorted(won)])
            return won | again
        return self._run('claiming %d alarm(s)' % len(reasons), run)

    def set_state(self, transitions):
        """Record ``alarm`` state without a claim (repeating alarms)."""
        if not transitions:
            return
        now = timeutils.utcnow()

        def run(conn):
            conn.execute(
                _ALARMS.update().where(
                    _ALARMS.c.alarm_id == sa.bindparam('b_id')).values(
                    state=ALARM, state_reason=sa.bindparam('b_reason'),
                    state_timestamp=now, timestamp=now),
                [{'b_id': i, 'b_reason': r} for i, r in transitions])
        self._run('recording state of %d alarm(s)' % len(transitions), run)

    def record_history(self, changes):
        """Insert state-transition history rows.

        :param changes: list of dicts with alarm_id, project_id (the alarm's),
            user_id, severity, reason, timestamp (and optionally event_id,
            so a retried write does not add a second row).
        """
        if not changes:
            return
        rows = []
        for c in changes:
            rows.append({
                'event_id': c.get('event_id') or str(uuid.uuid4()),
                'alarm_id': c['alarm_id'],
                'on_behalf_of': c['project_id'],
                'project_id': None,
                'user_id': None,
                'type': STATE_TRANSITION,
                'detail': json.dumps({'state': ALARM,
                                      'transition_reason': c['reason']}),
                'timestamp': c['timestamp'],
                'severity': c.get('severity'),
            })

        def run(conn):
            if conn.dialect.name == 'postgresql':
                return _record_pg(conn, rows)
            ids = [r['event_id'] for r in rows]
            done = {r.event_id for r in conn.execute(
                sa.select(_HISTORY.c.event_id).where(
                    _HISTORY.c.event_id.in_(ids)))}
            todo = []
            for r in rows:
                # Once each, also within the batch (an event handled twice
                # before the first row was written).
                if r['event_id'] not in done:
                    done.add(r['event_id'])
                    todo.append(r)
            if todo:
                conn.execute(_HISTORY.insert(), todo)
        self._run('recording %d history row(s)' % len(rows), run)

    def dispose(self):
        if self._engine is not None:
            self._engine.dispose()
