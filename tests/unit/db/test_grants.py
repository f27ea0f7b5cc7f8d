"""The install guide's grants for the agent's database user.

doc/source/grants/*.sql are what the install guide shows; the functional
test tests/functional/test_least_privilege.py runs the fault scenario with
a user made from them. Here: they name every table of doctor-ext and no
DDL, and the evaluator's writes work with them alone, on PostgreSQL and
MariaDB.
"""

import datetime
import re
import time

from oslotest import base
import sqlalchemy as sa
import testscenarios

from doctor_ext.db import models
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import replays
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios

AODH_TABLES = {'alarm', 'alarm_history'}


def granted_tables(backend):
    tables = set()
    for s in doctor_fixtures.grant_statements(backend, 'aodh', 'u', 'p'):
        match = re.search(r'\bON\s+(.*?)\s+TO\b', s, re.S)
        if match and not match.group(1).startswith(('DATABASE', 'SCHEMA')):
            tables |= {t.strip().split('.')[-1]
                       for t in match.group(1).split(',')}
    return tables


class TestGrantFiles(base.BaseTestCase):

    def test_every_table_and_nothing_else(self):
        ours = {t.name for t in models.metadata.sorted_tables}
        for backend in ('postgresql', 'mysql'):
            self.assertEqual(ours | AODH_TABLES, granted_tables(backend),
                             backend)

    def test_no_ddl(self):
        for backend in ('postgresql', 'mysql'):
            for s in doctor_fixtures.grant_statements(backend, 'aodh', 'u',
                                                      'p')[1:]:
                self.assertTrue(s.startswith('GRANT '), s)
                for word in ('ALL', 'CREATE', 'ALTER', 'DROP', 'INDEX',
                             'REFERENCES', 'TRIGGER', 'GRANT OPTION'):
                    self.assertNotIn(word, s.split(' ON ')[0][6:], s)


class TestAgentUser(base.BaseTestCase):
    """The evaluator's and the replay memory's statements, as the user."""

    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(
            self.backend))
        self.user = self.useFixture(doctor_fixtures.AgentDbUser(
            self.db.url))
        self.store = store_mod.AodhStore(doctor_fixtures.store_conf(
            self.user.url))
        self.addCleanup(self.store.dispose)

    def test_claim_history_outbox_replays(self):
        a = self.db.add_alarm()
        self.assertEqual([a], [r['alarm_id']
                               for r in self.store.event_alarms()])
        owed = {'id': 'o-1', 'alarm_id': a, 'project_id': 'p1',
                'action': 'http://vnfm/', 'payload': '{}'}
        change = {'event_id': 'h-1', 'alarm_id': a, 'project_id': 'p1',
                  'user_id': 'u1', 'severity': 'critical', 'reason': 'r',
                  'timestamp': datetime.datetime(2026, 11, 30)}
        self.assertEqual({a, 'o-1'}, self.store.claim(
            [(a, 'r')], [owed], history=[change]))
        self.store.record_history([dict(change, event_id='h-2')])
        self.store.set_state([(a, 'again')])
        self.store.finish_outbox([('o-1', ('delivered', None))])
        self.assertEqual(['h-1', 'h-2'], sorted(
            r['event_id'] for r in self.db.history(a)))
        self.assertEqual('again', self.db.row(a)['state_reason'])
        memory = replays.SharedReplayMemory(self.store)
        self.assertFalse(memory.seen(('k', 'old'), 'm-1', time.time() - 1))
        self.assertFalse(memory.seen(('k', 'new'), 'm-2', time.time() + 60))
        self.assertTrue(memory.seen(('k', 'new'), 'm-3', time.time() + 60))
        self.assertEqual(1, memory.purge())

    def test_no_ddl_and_no_other_table(self):
        engine = sa.create_engine(store_mod.dress_url(self.user.url))
        self.addCleanup(engine.dispose)
        for statement in ('CREATE TABLE doctor_x (id INTEGER)',
                          'DROP TABLE doctor_outbox',
                          'DELETE FROM alarm',
                          'UPDATE alarm SET enabled = false'):
            with engine.connect() as conn:
                self.assertRaises(sa.exc.SQLAlchemyError,
                                  conn.exec_driver_sql, statement)
