"""Alembic environment: online migrations on the URL given by dbsync."""

from alembic import context
import sqlalchemy as sa

from doctor_ext.db import migration
from doctor_ext.db import models

config = context.config
engine = sa.create_engine(config.attributes['url'], poolclass=sa.pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection,
                      target_metadata=models.metadata,
                      version_table=migration.VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
