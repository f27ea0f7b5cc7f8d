"""Schema migrations of doctor-ext's tables (alembic).

``doctor-ext-dbsync`` (:mod:`doctor_ext.cmd.dbsync`) brings the tables to
the newest revision, as ``aodh-dbsync`` does for Aodh's; run it once per
upgrade, from any one host. The revision is kept in a table of its own,
``doctor_ext_alembic_version``, so that it never meets Aodh's
``alembic_version`` in the same database.

A new revision: ``alembic -c doctor_ext/db/migration/alembic.ini revision
-m "what"`` (see doc/source/contributor).
"""

import os

from alembic import command
from alembic import config as alembic_config
from alembic import migration
from alembic import script
import sqlalchemy as sa

VERSION_TABLE = 'doctor_ext_alembic_version'
HERE = os.path.dirname(os.path.abspath(__file__))


def dress(url):
    """Aodh's defaulting: a bare mysql:// means PyMySQL."""
    if url is None:
        return None
    parsed = sa.engine.make_url(url)
    if parsed.drivername == 'mysql':
        parsed = parsed.set(drivername='mysql+pymysql')
    return parsed.render_as_string(hide_password=False)


def _config(url):
    config = alembic_config.Config(os.path.join(HERE, 'alembic.ini'))
    config.set_main_option('script_location', HERE)
    # Kept out of the ini file's interpolation ('%' in passwords).
    config.attributes['url'] = dress(url)
    return config


def upgrade(url, revision='head'):
    """Bring the tables of the database at ``url`` to ``revision``."""
    command.upgrade(_config(url), revision)


def current(url):
    """The revision the database at ``url`` is at (None: no tables)."""
    engine = sa.create_engine(dress(url))
    try:
        with engine.connect() as conn:
            return migration.MigrationContext.configure(
                conn, opts={'version_table': VERSION_TABLE}
            ).get_current_revision()
    finally:
        engine.dispose()


def head():
    """The newest revision this package knows."""
    return script.ScriptDirectory.from_config(_config(None)).get_current_head()
