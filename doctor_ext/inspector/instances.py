"""The instance map every agent shares: host -> instances -> owner.

The same interface as the in-process :class:`.resource_map.ResourceMap`,
kept in the ``doctor_instance`` table of Aodh's database so that

* every agent and worker sees every instance, whichever of them the broker
  gave Nova's notification to: the agent that handles a
  ``compute.instance.*`` event writes it before the notification is
  acknowledged, and a host fault reads the host's rows, so the map a fault
  sees is at most one committed transaction old;
* a restarted agent is never blind, even with Nova down: the rows outlive
  every process.

Each row carries the time Nova stated it (the event's ``generated`` time, or
the start of a listing), and an older statement never overwrites a newer
one: notifications handled out of order by several agents, or a listing
that raced an update, leave the newest state. A deleted instance keeps a
row with ``present`` false for the same reason.

``loaded`` tells whether Nova's full listing was ever stored (by any agent):
before that, a host without rows may simply be unknown.
"""

import json
import threading
import time

import sqlalchemy as sa

from doctor_ext.db import api as db_api
from doctor_ext.db import group
from doctor_ext.db import models
from doctor_ext.evaluator import events as events_mod
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import resource_map

T = models.instances
SYNCED = 'instances_synced_at'
_COLUMNS = (T.c.instance_id, T.c.project_id, T.c.user_id, T.c.host,
            T.c.state)
# Statements of instances in one PostgreSQL statement: each row inserted,
# or updated unless the row there is newer.
_PG_UPSERT = sa.text("""
INSERT INTO doctor_instance (instance_id, project_id, user_id, host, state,
    present, as_of)
SELECT r.instance_id, r.project_id, r.user_id, r.host, r.state, r.present,
    CAST(r.as_of AS timestamp)
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    instance_id text, project_id text, user_id text, host text, state text,
    present boolean, as_of text)
ON CONFLICT (instance_id) DO UPDATE SET project_id = excluded.project_id,
    user_id = excluded.user_id, host = excluded.host, state = excluded.state,
    present = excluded.present, as_of = excluded.as_of
WHERE doctor_instance.as_of <= excluded.as_of
""")


def _as_of(generated):
    """The event's generated time as a naive UTC datetime (else now)."""
    try:
        return events_mod.parse_datetime(generated)
    except (TypeError, ValueError):
        return db_api.utcnow()


class _Synced:
    """``loaded``: has a full listing from Nova ever been stored?"""

    # Seconds between two looks at the table while waiting.
    POLL = 0.2

    def __init__(self, store):
        self._store = store
        self._set = False
        self._here = threading.Event()

    def wait(self, timeout=None):
        """Wait until a listing is stored (by this process or another)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                if self.is_set():
                    return True
            except Exception:
                pass
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._here.wait(self.POLL if left is None else
                            min(self.POLL, left))

    def is_set(self):
        if not self._set:
            def read(conn):
                return conn.execute(sa.select(models.meta.c.name).where(
                    models.meta.c.name == SYNCED)).first() is not None
            self._set = self._store.run('reading the instance map state',
                                        read)
        return self._set

    def set(self):
        self._set = True
        self._here.set()


class SharedResourceMap:
    """The instance map in the ``doctor_instance`` table.

    Every method may raise
    :class:`doctor_ext.evaluator.store.StoreUnavailable`.
    """

    def __init__(self, store):
        # Events are written from the listener threads (bounded calls),
        # listings from the loader thread.
        self._store = store
        self._bg = db_api.background(store)
        self.loaded = _Synced(self._bg)
        self._writes = group.WriteGroup(self._write_rows, store_mod.BadRecord)

    def __len__(self):
        def count(conn):
            return conn.execute(sa.select(sa.func.count()).select_from(
                T).where(T.c.present)).scalar()
        return self._bg.run('counting instances', count)

    def on_host(self, host):
        """The instances on ``host`` (a snapshot list)."""
        def read(conn):
            return [resource_map.Instance(*row) for row in conn.execute(
                sa.select(*_COLUMNS).where(T.c.host == host, T.c.present))]
        return self._store.run('reading the instances of %s' % host, read)

    def host_of(self, instance_id):
        def read(conn):
            return conn.execute(sa.select(T.c.host).where(
                T.c.instance_id == instance_id, T.c.present)).scalar()
        return self._store.run('reading instance %s' % instance_id, read)

    def hosts(self):
        def read(conn):
            return [r[0] for r in conn.execute(
                sa.select(T.c.host).where(T.c.present,
                                          T.c.host.is_not(None)).distinct())]
        return self._bg.run('reading hosts', read)

    def apply(self, event):
        """Follow a ``compute.instance.*`` event; True if it names one.

        See :func:`.resource_map.statement` for the traits it reads.
        """
        said = resource_map.statement(event)
        if said is None:
            return False
        instance_id, inst = said
        as_of = _as_of(event.generated)
        if inst is None:
            row = {'instance_id': instance_id, 'project_id': None,
                   'user_id': None, 'host': None, 'state': 'deleted',
                   'present': False, 'as_of': as_of}
        else:
            row = {'instance_id': instance_id, 'project_id': inst.project_id,
                   'user_id': inst.user_id, 'host': inst.host,
                   'state': inst.state, 'present': True, 'as_of': as_of}
        self._writes.write(row)
        return True

    def _write_rows(self, rows):
        """Write statements of instances, newest-wins, in one transaction.

        Concurrent events' rows come as one batch (:class:`.WriteGroup`);
        on PostgreSQL the batch is one statement.
        """
        newest = {}
        for row in rows:
            kept = newest.get(row['instance_id'])
            if kept is None or kept['as_of'] <= row['as_of']:
                newest[row['instance_id']] = row
        rows = list(newest.values())

        def write(conn):
            if conn.dialect.name == 'postgresql':
                # Insert, or update unless a newer row is there already.
                conn.execute(_PG_UPSERT, {'rows': json.dumps(
                    [dict(r, as_of=r['as_of'].isoformat()) for r in rows])})
                return
            for row in rows:
                newer = conn.execute(T.update().where(
                    T.c.instance_id == row['instance_id'],
                    T.c.as_of <= row['as_of']).values(
                        {k: v for k, v in row.items()
                         if k != 'instance_id'}))
                if not newer.rowcount:
                    # New, or a newer row is there already (then nothing).
                    conn.execute(db_api.insert_ignore(conn, T), [row])
        self._store.run('recording %d instance(s)' % len(rows)
                        if len(rows) > 1 else
                        'recording instance %s' % rows[0]['instance_id'],
                        write)

    def replace_all(self, instances, as_of=None):
        """Store Nova's full listing, taken at ``as_of`` (default now).

        Rows stated after ``as_of`` (an event handled meanwhile) win over
        the listing; instances missing from it and not stated since are
        marked deleted.
        """
        as_of = as_of or db_api.utcnow()
        rows = [{'instance_id': i.instance_id, 'project_id': i.project_id,
                 'user_id': i.user_id, 'host': i.host, 'state': i.state,
                 'present': True, 'as_of': as_of} for i in instances]
        listed = {r['instance_id'] for r in rows}

        def write(conn):
            if rows:
                conn.execute(db_api.insert_ignore(conn, T), rows)
                conn.execute(T.update().where(
                    T.c.instance_id == sa.bindparam('b_id'),
                    T.c.as_of < as_of).values(
                        project_id=sa.bindparam('b_project'),
                        user_id=sa.bindparam('b_user'),
                        host=sa.bindparam('b_host'),
                        state=sa.bindparam('b_state'),
                        present=True, as_of=as_of),
                    [{'b_id': r['instance_id'], 'b_project': r['project_id'],
                      'b_user': r['user_id'], 'b_host': r['host'],
                      'b_state': r['state']} for r in rows])
            gone = [r[0] for r in conn.execute(sa.select(
                T.c.instance_id).where(T.c.present, T.c.as_of < as_of))
                if r[0] not in listed]
            for start in range(0, len(gone), 500):
                conn.execute(T.update().where(
                    T.c.instance_id.in_(gone[start:start + 500]),
                    T.c.as_of < as_of).values(present=False, host=None,
                                              state='deleted', as_of=as_of))
            meta = models.meta
            conn.execute(db_api.insert_ignore(conn, meta),
                         [{'name': SYNCED, 'value': None}])
            conn.execute(meta.update().where(meta.c.name == SYNCED).values(
                value=as_of.isoformat(), updated_at=as_of))
        self._bg.run('storing the instance map from Nova', write)
        self.loaded.set()
