"""The host reports seen by every agent: replays refused by all of them.

:class:`SharedReplayMemory` keeps the identity of each signed report in
the ``doctor_report`` table of Aodh's database, with the message that
carried it first and the time its window closes. Every agent process (and
every worker) asks the same table, so a replay within the window is
refused wherever the broker delivers it; the same message delivered again
(same ``message_id``) is not a replay. Two agents that receive two
messages carrying the same report at the same instant: the row's primary
key lets one of them in.

The sweep (:class:`doctor_ext.db.leases.Sweeper`) deletes the rows whose
window has closed. While the database is unavailable, :meth:`seen` raises
:class:`~doctor_ext.evaluator.store.StoreUnavailable`: the check then
falls back to what its own process saw (:mod:`.report_check`), so that a
fault still reaches its owners during the outage.
"""

import datetime
import hashlib
import json

import sqlalchemy as sa

from doctor_ext.db import api as db_api
from doctor_ext.db import models

REPORTS = models.reports
# Rows purged per statement.
PURGE_BATCH = 1000


def key_of(key):
    """The column value of a replay key (a tuple of strings)."""
    return hashlib.sha256(json.dumps(
        list(key), separators=(',', ':')).encode('utf-8')).hexdigest()


def _utc(timestamp):
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).replace(tzinfo=None)


def _set(conn, row):
    conn.execute(REPORTS.update().where(
        REPORTS.c.report_key == row['report_key']).values(
        message_id=row['message_id'], expires_at=row['expires_at']))


class SharedReplayMemory:
    """The replay memory of :mod:`.report_check`, in the database.

    ``store``: an :class:`~doctor_ext.evaluator.store.AodhStore`.
    """

    def __init__(self, store):
        self._store = store

    def seen(self, key, message_id, until):
        """True if another message already carried the report ``key``.

        ``until``: a time.time() value past which the report is refused
        by its time window anyway.
        """
        row = {'report_key': key_of(key), 'message_id': message_id[:255],
               'expires_at': _utc(until)}

        def check(conn):
            conn.execute(db_api.insert_ignore(conn, REPORTS), [row])
            known = conn.execute(db_api.lock(sa.select(REPORTS).where(
                REPORTS.c.report_key == row['report_key']), conn)).one()
            if known.message_id == row['message_id']:
                # The same message again (redelivered, or checked by the
                # other plugin): not a replay.
                if known.expires_at < row['expires_at']:
                    _set(conn, row)
                return False
            if known.expires_at >= db_api.utcnow():
                return True
            # Another message whose window has closed, not purged yet.
            _set(conn, row)
            return False
        return self._store.run('checking report %s for a replay'
                               % message_id, check)

    def purge(self):
        """Forget the reports whose window has closed; returns how many."""
        now = db_api.utcnow()

        def purge(conn):
            old = sa.select(REPORTS.c.report_key).where(
                REPORTS.c.expires_at < now).limit(PURGE_BATCH)
            keys = [r[0] for r in conn.execute(old)]
            if not keys:
                return 0
            return conn.execute(REPORTS.delete().where(
                REPORTS.c.report_key.in_(keys),
                REPORTS.c.expires_at < now)).rowcount
        return self._store.run('purging old report ids', purge)

    def __len__(self):
        def count(conn):
            return conn.execute(sa.select(sa.func.count()).select_from(
                REPORTS)).scalar()
        return self._store.run('counting report ids', count)
