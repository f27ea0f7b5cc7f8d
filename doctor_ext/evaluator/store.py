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

import concurrent.futures
import json
import threading
import time
import uuid

from aodh.storage.sqlalchemy import models
from oslo_config import cfg
from oslo_log import log
from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy.engine import url as sa_url

from doctor_ext.db import api as db_api
from doctor_ext.db import migration
from doctor_ext.db import models as doctor_models

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
# Seconds calls fail at once after the database failed one.
RETRY_AFTER = 1.0
STATE_TRANSITION = 'state transition'
_ALARMS = models.Alarm.__table__
_HISTORY = models.AlarmChange.__table__
_OUTBOX = doctor_models.outbox


# The claim in one PostgreSQL statement: lock the wanted rows not yet in
# alarm, in id order (two agents claiming overlapping sets wait for each
# other; a row moved meanwhile by the other is re-checked and skipped), move
# them, write the outbox rows the moved alarms owe (and those of repeating
# alarms, which are not claimed), and return which moved.
_PG_CLAIM = sa.text("""
WITH wanted AS (
    SELECT w.id, w.reason
    FROM json_to_recordset(CAST(:wanted AS json)) AS w(id text, reason text)),
owed AS (
    SELECT o.id, o.alarm_id, o.project_id, o.action,
        CAST(o.payload AS text) AS payload, o.once
    FROM json_to_recordset(CAST(:owed AS json)) AS o(
        id text, alarm_id text, project_id text, action text, payload json,
        once boolean)),
locked AS (
    SELECT alarm.alarm_id FROM alarm JOIN wanted ON alarm.alarm_id = wanted.id
    WHERE alarm.state != :alarm
    ORDER BY alarm.alarm_id
    FOR UPDATE OF alarm),
moved AS (
    UPDATE alarm SET state = :alarm, state_reason = wanted.reason,
        state_timestamp = :now, timestamp = :now
    FROM locked JOIN wanted ON wanted.id = locked.alarm_id
    WHERE alarm.alarm_id = locked.alarm_id
    RETURNING alarm.alarm_id),
written AS (
    INSERT INTO doctor_outbox (id, alarm_id, project_id, action, payload,
        state, attempts, lease_owner, lease_until, created_at, updated_at)
    SELECT owed.id, owed.alarm_id, owed.project_id, owed.action,
        owed.payload, 'pending', 0, :owner, :lease_until, :now, :now
    FROM owed
    WHERE NOT owed.once OR owed.alarm_id IN (SELECT alarm_id FROM moved)
    ON CONFLICT (id) DO NOTHING
    RETURNING doctor_outbox.id),
hist AS (
    SELECT h.event_id, h.alarm_id, h.on_behalf_of, h.project_id, h.user_id,
        h.type, h.detail, h.ts, h.severity, h.once
    FROM json_to_recordset(CAST(:history AS json)) AS h(
        event_id text, alarm_id text, on_behalf_of text, project_id text,
        user_id text, type text, detail text, ts text, severity text,
        once boolean)),
recorded AS (
    INSERT INTO alarm_history (event_id, alarm_id, on_behalf_of, project_id,
        user_id, type, detail, timestamp, severity)
    SELECT hist.event_id, hist.alarm_id, hist.on_behalf_of, hist.project_id,
        hist.user_id, hist.type, hist.detail, CAST(hist.ts AS timestamp),
        hist.severity
    FROM hist
    WHERE NOT hist.once OR hist.alarm_id IN (SELECT alarm_id FROM moved)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1)
SELECT alarm_id FROM moved UNION ALL SELECT id FROM written
""")


def _claim_pg(conn, reasons, owed, lease, now, changes=()):
    # The wanted rows as one JSON parameter: the driver's escaping of two
    # text arrays costs more than the statement itself.
    wanted = json.dumps([{'id': i, 'reason': r} for i, r in reasons.items()])
    rows = conn.execute(_PG_CLAIM, {
        'wanted': wanted, 'alarm': ALARM, 'now': now,
        'owed': _owed_json(owed, reasons),
        'owner': lease[0], 'lease_until': lease[1],
        'history': json.dumps([dict(_history_json(c),
                                    once=c['alarm_id'] in reasons)
                               for c in changes])})
    return {r[0] for r in rows}


def _owed_json(owed, reasons):
    """The outbox rows as one JSON array, each body embedded as it is.

    The body is JSON already (the bytes the notifier POSTs): it goes into
    the array as a JSON value, not as a string to escape, and PostgreSQL
    stores its text unchanged (``json``, not ``jsonb``).
    """
    return '[%s]' % ','.join(
        '%s, "payload": %s}' % (json.dumps({
            'id': o['id'], 'alarm_id': o['alarm_id'],
            'project_id': o['project_id'], 'action': o['action'],
            'once': o['alarm_id'] in reasons})[:-1], o['payload'])
        for o in owed)


# History rows in one PostgreSQL statement; a row already written (a retry,
# a redelivered event) is skipped by its id.
_PG_HISTORY = sa.text("""
INSERT INTO alarm_history (event_id, alarm_id, on_behalf_of, project_id,
    user_id, type, detail, timestamp, severity)
SELECT r.event_id, r.alarm_id, r.on_behalf_of, r.project_id, r.user_id,
    r.type, r.detail, CAST(r.ts AS timestamp), r.severity
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    event_id text, alarm_id text, on_behalf_of text, project_id text,
    user_id text, type text, detail text, ts text, severity text)
ON CONFLICT (event_id) DO NOTHING
""")


# Outcomes of owed notifications, a batch in one PostgreSQL statement.
_PG_OUTCOMES = sa.text("""
UPDATE doctor_outbox SET state = o.state, error = o.error,
    lease_owner = NULL, lease_until = NULL, updated_at = :now
FROM json_to_recordset(CAST(:rows AS json)) AS o(
    id text, state text, error text)
WHERE doctor_outbox.id = o.id
""")


def _history_json(r):
    return {'event_id': r['event_id'], 'alarm_id': r['alarm_id'],
            'on_behalf_of': r['on_behalf_of'], 'project_id': r['project_id'],
            'user_id': r['user_id'], 'type': r['type'],
            'detail': r['detail'], 'severity': r['severity'],
            'ts': r['timestamp'].isoformat() if r['timestamp'] else None}


def _record_pg(conn, rows):
    conn.execute(_PG_HISTORY, {'rows': json.dumps(
        [_history_json(r) for r in rows])})


def _history_rows(changes):
    """Rows of Aodh's alarm_history for state changes to ``alarm``."""
    return [{
        'event_id': c.get('event_id') or str(uuid.uuid4()),
        'alarm_id': c['alarm_id'],
        'on_behalf_of': c['project_id'],
        # As Aodh's evaluator writes them: the alarm's own.
        'project_id': c['project_id'],
        'user_id': c.get('user_id'),
        'type': STATE_TRANSITION,
        'detail': json.dumps({'state': ALARM,
                              'transition_reason': c['reason']}),
        'timestamp': c['timestamp'],
        'severity': c.get('severity'),
    } for c in changes]


def _insert_history(conn, rows):
    """Insert history rows, each once (a retry, a redelivered event)."""
    if not rows:
        return
    if conn.dialect.name == 'postgresql':
        return _record_pg(conn, rows)
    ids = [r['event_id'] for r in rows]
    done = {r.event_id for r in conn.execute(
        sa.select(_HISTORY.c.event_id).where(_HISTORY.c.event_id.in_(ids)))}
    todo = []
    for r in rows:
        # Once each, also within the batch (an event handled twice before
        # the first row was written).
        if r['event_id'] not in done:
            done.add(r['event_id'])
            todo.append(r)
    if todo:
        conn.execute(_HISTORY.insert(), todo)


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def dress_url(url):
    """Aodh's defaulting: a bare mysql:// means PyMySQL."""
    return sa_url.make_url(migration.dress(url))


class StoreUnavailable(Exception):
    """The Aodh database cannot be reached; the message says why."""


class BadRecord(ValueError):
    """The database refused what was written (too long, malformed).

    Not an outage: the caller drops that input alone.
    """


def _unavailable(what, error):
    # The URL may carry a password: never log it, only the error class and
    # the driver's short message.
    cls = (BadRecord if isinstance(error, (sa.exc.DataError,
                                           sa.exc.IntegrityError))
           else StoreUnavailable)
    return cls('%s failed: %s' % (
        what, str(getattr(error, 'orig', None) or error.__class__.__name__
                  ).splitlines()[0][:200]))


class AodhStore:
    """Event alarms, state claims and history in Aodh's database."""

    def __init__(self, conf, bounded=True, parent=None):
        register_opts(conf)
        self._all_conf = conf
        self._conf = conf[GROUP]
        self._engine = None
        self._lock = threading.Lock()
        self._bounded = bounded
        # The store whose connection pool this one uses (background()).
        self._parent = parent
        self._background = None
        # Statements run here, so that a hung one does not hold its caller.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            2 * self._conf.db_pool_size,
            thread_name_prefix='doctor-db') if bounded else None
        self._down_until = 0.0

    @property
    def configured(self):
        return bool(self._conf.aodh_connection)

    def _get_engine(self):
        if self._parent is not None:
            return self._parent._get_engine()
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

    def run(self, what, fn):
        """``fn(conn)`` in one transaction; errors become StoreUnavailable.

        Bounded: a database that stops answering (connections open,
        nothing coming back; PostgreSQL's driver has no read timeout) makes
        the call fail after ``2 x db_timeout`` instead of holding the
        caller, an agent's listener thread, for ever; the statement goes
        on in a thread of its own until the database answers or the
        connection drops. After such a failure, calls fail at once for
        ``RETRY_AFTER`` seconds, so that a burst of events does not wait
        once per event.
        """
        if not self._bounded:
            return self._run(what, fn)
        if time.monotonic() < self._down_until:
            raise StoreUnavailable('%s skipped: the database failed %.1f s '
                                   'ago' % (what, RETRY_AFTER))
        future = self._executor.submit(self._run, what, fn)
        try:
            return future.result(2 * self._conf.db_timeout)
        except concurrent.futures.TimeoutError:
            self._down_until = time.monotonic() + RETRY_AFTER
            raise StoreUnavailable('%s failed: no answer from the database '
                                   'in %.1f s' % (what,
                                                  2 * self._conf.db_timeout))
        except StoreUnavailable:
            self._down_until = time.monotonic() + RETRY_AFTER
            raise

    def background(self):
        """This store, for background threads.

        Same connection pool; calls are neither bounded nor skipped (those
        threads retry on their own).
        """
        with self._lock:
            if self._background is None:
                self._background = AodhStore(self._all_conf, bounded=False,
                                             parent=self)
            return self._background

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
        return self.run('loading alarm %s' % alarm_id, load)

    def claim(self, transitions, owed=(), lease=None, history=()):
        """Move alarms to ``alarm``, write what they owe.

        One transaction: a claimed alarm always has its outbox rows and its
        history row. Returns the ids of the alarms this call moved and of
        the outbox rows it wrote (a row already there, from an event
        evaluated before, is not written again).

        :param transitions: list of (alarm_id, reason).
        :param owed: outbox rows (:func:`.outbox.owed_row`): a row of an
            alarm in ``transitions`` is written only if this call moved the
            alarm; a row of any other alarm (a repeating one) always.
        :param lease: (owner, lease_until) the outbox rows are written with.
        :param history: history changes (as :meth:`record_history` takes),
            written on the same condition as ``owed``.
        """
        if not transitions and not owed and not history:
            return set()
        reasons = dict(transitions)
        now = timeutils.utcnow()
        lease = lease or (None, now)
        changes = _history_rows(history)

        def run(conn):
            if conn.dialect.name == 'postgresql':
                return _claim_pg(conn, reasons, owed, lease, now, changes)
            won = self._claim_rows(conn, reasons, owed, lease, now)
            if changes:
                _insert_history(conn, [
                    c for c in changes if c['alarm_id'] not in reasons or
                    c['alarm_id'] in won])
            return won
        return self.run('claiming %d alarm(s)' % len(reasons), run)

    @staticmethod
    def _claim_rows(conn, reasons, owed, lease, now):
        """The claim as plain statements (MySQL/MariaDB, SQLite)."""
        won = set()
        if reasons:
            rows = conn.execute(
                sa.select(_ALARMS.c.alarm_id).where(
                    _ALARMS.c.alarm_id.in_(list(reasons)),
                    _ALARMS.c.state != ALARM).order_by(
                    _ALARMS.c.alarm_id).with_for_update()).all()
            won = {r.alarm_id for r in rows}
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
        rows = [dict(o, state='pending', attempts=0,
                     lease_owner=lease[0], lease_until=lease[1],
                     created_at=now, updated_at=now)
                for o in owed
                if o['alarm_id'] not in reasons or o['alarm_id'] in won]
        if rows:
            there = {r[0] for r in conn.execute(sa.select(_OUTBOX.c.id).where(
                _OUTBOX.c.id.in_([r['id'] for r in rows])))}
            rows = [r for r in rows if r['id'] not in there]
        if rows:
            conn.execute(db_api.insert_ignore(conn, _OUTBOX), rows)
        return won | {r['id'] for r in rows}

    def finish_outbox(self, outcomes):
        """Record the outcome of owed notifications.

        :param outcomes: list of (row id, (state, error)).
        """
        if not outcomes:
            return
        now = timeutils.utcnow()

        def run(conn):
            if conn.dialect.name == 'postgresql':
                # One statement for the batch.
                conn.execute(_PG_OUTCOMES, {'now': now, 'rows': json.dumps(
                    [{'id': i, 'state': state, 'error': error}
                     for i, (state, error) in outcomes])})
                return
            conn.execute(
                _OUTBOX.update().where(
                    _OUTBOX.c.id == sa.bindparam('b_id')).values(
                    state=sa.bindparam('b_state'),
                    error=sa.bindparam('b_error'), lease_owner=None,
                    lease_until=None, updated_at=now),
                [{'b_id': i, 'b_state': state, 'b_error': error}
                 for i, (state, error) in outcomes])
        self.run('recording %d delivery outcome(s)' % len(outcomes), run)

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
        self.run('recording state of %d alarm(s)' % len(transitions), run)

    def record_history(self, changes):
        """Insert state-transition history rows.

        :param changes: list of dicts with alarm_id, project_id (the alarm's),
            user_id, severity, reason, timestamp (and optionally event_id,
            so a retried write does not add a second row).
        """
        if not changes:
            return
        rows = _history_rows(changes)
        self.run('recording %d history row(s)' % len(rows),
                 lambda conn: _insert_history(conn, rows))

    def dispose(self):
        if self._engine is not None:
            self._engine.dispose()
