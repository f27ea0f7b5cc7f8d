"""Small SQL helpers shared by the users of doctor-ext's tables."""

import datetime

from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite


def insert_ignore(conn, table):
    """An INSERT into ``table`` that skips rows whose key already exists."""
    name = conn.dialect.name
    if name == 'postgresql':
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == 'mysql':
        # Not INSERT IGNORE: it would also turn other errors (a NULL in a
        # NOT NULL column, a value too long) into warnings.
        return mysql.insert(table).on_duplicate_key_update(
            {c.name: c for c in table.primary_key.columns})
    if name == 'sqlite':
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError('database %s is not supported' % name)


def background(store):
    """``store.background()`` where the store has one (else itself)."""
    return store.background() if hasattr(store, 'background') else store


def utcnow():
    """Naive UTC now, as the tables store times."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def lock(select, conn, skip_locked=False):
    """``select`` FOR UPDATE where the database has row locks."""
    if conn.dialect.name == 'sqlite':
        # One writer at a time: the transaction itself is the lock.
        return select
    return select.with_for_update(skip_locked=skip_locked)


def copy_rows(conn, table, rows):
    """Insert ``rows`` (dicts with the same keys) into ``table``.

    On PostgreSQL through psycopg 3, one ``COPY ... FROM STDIN`` in the
    transaction of ``conn``: no statement is compiled and no parameter
    processed per row (a 1,000-VM host fault's instance rows). Elsewhere an
    ordinary multi-row INSERT. The rows must be new: COPY skips no
    conflict.
    """
    if not rows:
        return
    if conn.dialect.name != 'postgresql' or conn.dialect.driver != 'psycopg':
        conn.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    # Names from the table's definition, quoted; no value in the text.
    statement = 'COPY "%s" (%s) FROM STDIN' % (
        table.name, ', '.join('"%s"' % c for c in columns))
    dbapi = conn.connection.dbapi_connection
    with dbapi.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
