"""The outbox: every notification owed to an owner, until its outcome.

The transaction that claims an alarm's transition also writes one
``doctor_outbox`` row per notification the transition owes (one per alarm
action), leased to the claiming agent (:meth:`.store.AodhStore.claim`).
The claiming agent then delivers at once, from memory: the hot path costs
one wider INSERT in a transaction it already had. When the delivery ends,
its outcome, ``delivered`` or ``given_up`` (after the notifier's bounded
retries, or refused), is written back in batches (:mod:`.recorder`).

While a row is pending, its agent renews the lease at every sweep
(:mod:`doctor_ext.db.leases`). If the agent dies, the lease runs out and
another agent (or the restarted one) takes the row and delivers it. So an
alarm is never left in ``alarm`` with its notification neither delivered
nor given up, and delivery is at-least-once: a notification whose POST
ended just before its agent died is sent again.

Rows are kept ``[doctor_state] retention_days`` after their outcome.
"""

import datetime
import json
import threading
import uuid

import sqlalchemy as sa

from doctor_ext.db import api as db_api
from doctor_ext.db import models
from doctor_ext.notifier import http

OUTBOX = models.outbox
PENDING = 'pending'
DELIVERED = 'delivered'
GIVEN_UP = 'given_up'
# Row ids derived from the alarm, the event and the action: the same
# firing owes the same rows, whoever evaluates it again.
OUTBOX_NAMESPACE = uuid.UUID('0b7e2f4c-58a1-4c3e-9f0d-6a2d8e1b5c37')
TAKE_BATCH = 500


def row_id(alarm_id, message_id, index):
    return str(uuid.uuid5(OUTBOX_NAMESPACE, '%s/%s/%d' % (
        alarm_id, message_id, index)))


def owed_row(notification, message_id, index):
    """The outbox row of ``notification`` (fired by event ``message_id``)."""
    return {'id': row_id(notification.alarm_id, message_id, index),
            'alarm_id': notification.alarm_id,
            'project_id': notification.project_id,
            'action': notification.action,
            # The bytes the notifier POSTs, encoded once for both.
            'payload': notification.body().decode('utf-8')}


def notification_of(row):
    body = json.loads(row['payload'])
    return http.Notification(action=row['action'],
                             project_id=row['project_id'],
                             body=row['payload'].encode('utf-8'), **body)


class Outbox:
    """Delivery of owed notifications, and taking over a dead agent's."""

    def __init__(self, store, recorder, notifier, owner, lease, retention):
        self._store = store
        self._recorder = recorder
        self.notifier = notifier
        self.owner = owner
        self.lease = datetime.timedelta(seconds=lease)
        self.retention = datetime.timedelta(days=retention)
        # Rows this process is delivering: the ones whose leases it renews.
        self._inflight = set()
        self._lock = threading.Lock()

    @property
    def inflight(self):
        return len(self._inflight)

    def deliver(self, notification, owed_id=None):
        """Submit ``notification``; record its outcome on row ``owed_id``.

        Returns the notifier's future (of a ``Delivery``).
        """
        if owed_id is not None:
            with self._lock:
                self._inflight.add(owed_id)
        future = self.notifier.submit(notification)
        if owed_id is not None:
            future.add_done_callback(lambda f: self._done(owed_id, f))
        return future

    def _done(self, owed_id, future):
        self._recorder.outcome(owed_id, _outcome(future))
        with self._lock:
            self._inflight.discard(owed_id)

    # -- the sweep -----------------------------------------------------------
    def sweep(self):
        self.renew()
        self.take_expired()

    def renew(self):
        """Extend the leases of the rows this process is delivering."""
        with self._lock:
            ids = sorted(self._inflight)
        if not ids:
            return 0
        now = db_api.utcnow()

        def write(conn):
            count = 0
            for start in range(0, len(ids), TAKE_BATCH):
                count += conn.execute(OUTBOX.update().where(
                    OUTBOX.c.id.in_(ids[start:start + TAKE_BATCH]),
                    OUTBOX.c.lease_owner == self.owner,
                    OUTBOX.c.state == PENDING).values(
                        lease_until=now + self.lease)).rowcount
            return count
        return self._store.run('renewing outbox leases', write)

    def take_expired(self, limit=TAKE_BATCH):
        """Deliver pending rows whose lease ran out; returns their count."""
        now = db_api.utcnow()

        def take(conn):
            due = sa.select(OUTBOX).where(
                OUTBOX.c.state == PENDING, OUTBOX.c.lease_until < now)
            rows = conn.execute(db_api.lock(
                due.order_by(OUTBOX.c.created_at).limit(limit), conn,
                skip_locked=True)).all()
            if rows:
                conn.execute(OUTBOX.update().where(
                    OUTBOX.c.id.in_([r.id for r in rows])).values(
                        lease_owner=self.owner,
                        lease_until=now + self.lease,
                        attempts=OUTBOX.c.attempts + 1))
            return [dict(r._mapping) for r in rows]
        rows = self._store.run('taking over owed notifications', take)
        for row in rows:
            try:
                notification = notification_of(row)
            except (ValueError, TypeError) as e:
                self._recorder.outcome(row['id'], (GIVEN_UP, 'unreadable '
                                                   'row: %s' % e))
                continue
            self.deliver(notification, row['id'])
        return len(rows)

    def purge(self):
        """Forget outcomes older than the retention."""
        before = db_api.utcnow() - self.retention

        def write(conn):
            return conn.execute(OUTBOX.delete().where(
                OUTBOX.c.state != PENDING,
                OUTBOX.c.updated_at < before)).rowcount
        return self._store.run('purging the outbox', write)


def _outcome(future):
    """(state, error) of a finished delivery future."""
    try:
        delivery = future.result()
    except Exception as e:
        return GIVEN_UP, str(e)[:255]
    if delivery is True or getattr(delivery, 'ok', False):
        return DELIVERED, None
    return GIVEN_UP, str(getattr(delivery, 'error', None) or
                         'not delivered')[:255]
