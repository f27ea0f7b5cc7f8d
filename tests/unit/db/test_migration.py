"""doctor-ext's migrations, on PostgreSQL and MariaDB."""

from alembic.autogenerate import compare_metadata
from alembic import migration as alembic_migration
import fixtures
from oslotest import base
import sqlalchemy as sa
import testscenarios

from doctor_ext.cmd import dbsync
from doctor_ext.db import migration
from doctor_ext.db import models
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios


class TestMigration(base.BaseTestCase):
    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        # Aodh's tables only, as aodh-dbsync leaves them.
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(
            self.backend, schema=False))
        from aodh.storage.sqlalchemy import models as aodh_models
        aodh_models.Base.metadata.create_all(self.db.engine)

    def tables(self):
        return set(sa.inspect(self.db.engine).get_table_names())

    def test_upgrade_creates_our_tables_beside_aodhs(self):
        before = self.tables()
        self.assertIsNone(migration.current(self.db.url))
        migration.upgrade(self.db.url)
        self.assertEqual(migration.head(), migration.current(self.db.url))
        added = self.tables() - before
        self.assertEqual({t.name for t in models.metadata.sorted_tables} |
                         {migration.VERSION_TABLE}, added)
        # Aodh's own revision table is not ours.
        self.assertNotIn('alembic_version', added)
        # Idempotent, as dbsync is run at every upgrade.
        migration.upgrade(self.db.url)
        self.assertEqual(migration.head(), migration.current(self.db.url))

    def test_migrations_match_the_models(self):
        migration.upgrade(self.db.url)
        with self.db.engine.connect() as conn:
            context = alembic_migration.MigrationContext.configure(
                conn, opts={'version_table': migration.VERSION_TABLE,
                            'include_name': self._ours})
            diff = compare_metadata(context, models.metadata)
        self.assertEqual([], diff)

    @staticmethod
    def _ours(name, type_, parent_names):
        return type_ != 'table' or name.startswith('doctor_')

    def test_dbsync_command(self):
        conf = self.useFixture(fixtures.TempDir()).join('ceilometer.conf')
        with open(conf, 'w') as f:
            f.write('[doctor_evaluator]\naodh_connection = %s\n'
                    % self.db.url)
        self.assertEqual(0, dbsync.main(['--config-file', conf]))
        self.assertEqual(migration.head(), migration.current(self.db.url))

    def test_dbsync_without_a_database_says_so(self):
        self.assertEqual(2, dbsync.main([]))
