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

The statements themselves are in :mod:`.statements`; this module holds
the connection pool and bounds each call. The engine connects lazily;
nothing here blocks service start.
"""

import concurrent.futures
import threading
import time

from aodh.storage.sqlalchemy import models
from oslo_config import cfg
from oslo_log import log
from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy.engine import url as sa_url

from doctor_ext.db import migration
from doctor_ext.evaluator import statements as sql

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

# Seconds calls fail at once after the database failed one.
RETRY_AFTER = 1.0
_ALARMS = models.Alarm.__table__


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
        changes = sql.history_rows(history)

        def run(conn):
            if conn.dialect.name == 'postgresql':
                return sql.claim_pg(conn, reasons, owed, lease, now, changes)
            won = sql.claim_rows(conn, reasons, owed, lease, now)
            if changes:
                sql.insert_history(conn, [
                    c for c in changes if c['alarm_id'] not in reasons or
                    c['alarm_id'] in won])
            return won
        return self.run('claiming %d alarm(s)' % len(reasons), run)

    def finish_outbox(self, outcomes):
        """Record the outcome of owed notifications.

        :param outcomes: list of (row id, (state, error)).
        """
        if not outcomes:
            return
        now = timeutils.utcnow()

        def run(conn):
            sql.finish_outbox(conn, outcomes, now)
        self.run('recording %d delivery outcome(s)' % len(outcomes), run)

    def set_state(self, transitions):
        """Record ``alarm`` state without a claim (repeating alarms)."""
        if not transitions:
            return
        now = timeutils.utcnow()

        def run(conn):
            sql.set_state(conn, transitions, now)
        self.run('recording state of %d alarm(s)' % len(transitions), run)

    def record_history(self, changes):
        """Insert state-transition history rows.

        :param changes: list of dicts with alarm_id, project_id (the alarm's),
            user_id, severity, reason, timestamp (and optionally event_id,
            so a retried write does not add a second row).
        """
        if not changes:
            return
        rows = sql.history_rows(changes)
        self.run('recording %d history row(s)' % len(rows),
                 lambda conn: sql.insert_history(conn, rows))

    def dispose(self):
        if self._engine is not None:
            self._engine.dispose()
