"""The evaluator's writes to Aodh's database, as SQL statements.

The claim (alarms moved to ``alarm`` with their outbox and history rows),
history rows and delivery outcomes: one PostgreSQL statement each, and the
same as plain statements for MySQL/MariaDB and SQLite.
:class:`.store.AodhStore` runs them, bounded, in one transaction.
"""

import json
import uuid

from aodh.storage.sqlalchemy import models
import sqlalchemy as sa

from doctor_ext.db import api as db_api
from doctor_ext.db import models as doctor_models

ALARM = 'alarm'
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


def claim_pg(conn, reasons, owed, lease, now, changes=()):
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


def _history_json(r):
    return {'event_id': r['event_id'], 'alarm_id': r['alarm_id'],
            'on_behalf_of': r['on_behalf_of'], 'project_id': r['project_id'],
            'user_id': r['user_id'], 'type': r['type'],
            'detail': r['detail'], 'severity': r['severity'],
            'ts': r['timestamp'].isoformat() if r['timestamp'] else None}


def _record_pg(conn, rows):
    conn.execute(_PG_HISTORY, {'rows': json.dumps(
        [_history_json(r) for r in rows])})


def history_rows(changes):
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


def insert_history(conn, rows):
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


def claim_rows(conn, reasons, owed, lease, now):
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


# Outcomes of owed notifications, a batch in one PostgreSQL statement.
_PG_OUTCOMES = sa.text("""
UPDATE doctor_outbox SET state = o.state, error = o.error,
    lease_owner = NULL, lease_until = NULL, updated_at = :now
FROM json_to_recordset(CAST(:rows AS json)) AS o(
    id text, state text, error text)
WHERE doctor_outbox.id = o.id
""")


def finish_outbox(conn, outcomes, now):
    """Outcomes (row id, (state, error)) of owed notifications."""
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


def set_state(conn, transitions, now):
    """``alarm`` state of (alarm id, reason) without a claim."""
    conn.execute(
        _ALARMS.update().where(
            _ALARMS.c.alarm_id == sa.bindparam('b_id')).values(
            state=ALARM, state_reason=sa.bindparam('b_reason'),
            state_timestamp=now, timestamp=now),
        [{'b_id': i, 'b_reason': r} for i, r in transitions])
