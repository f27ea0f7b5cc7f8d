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


def utcnow():
    """Naive UTC now, as the tables store times."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def lock(select, conn, skip_locked=False):
    """``select`` FOR UPDATE where the database has row locks."""
    if conn.dialect.name == 'sqlite':
        # One writer at a time: the transaction itself is the lock.
        return select
    return select.with_for_update(skip_locked=skip_locked)
