"""The agent with the narrowest database grant of the install guide.

The database user is made from doc/source/grants/*.sql, the blocks the
install guide shows; the agent then runs the fault scenario with it, on
PostgreSQL and MariaDB.
"""

import sqlalchemy as sa
import testscenarios

from doctor_ext.db import models
from tests import fixtures as doctor_fixtures
from tests.functional import base

load_tests = testscenarios.load_tests_apply_scenarios

# What the database says when a grant is missing.
DENIED = ('permission denied', 'command denied', 'Access denied')


class TestLeastPrivilege(base.FunctionalTest):
    scenarios = [('postgresql', {'db_url': base.POSTGRES}),
                 ('mysql', {'db_url': doctor_fixtures.MYSQL_URL})]

    def test_fault_scenario_with_the_documented_grants(self):
        user = self.useFixture(doctor_fixtures.AgentDbUser(
            self.stack.db.url))
        self.stack.agent_options.setdefault('doctor_evaluator', {})[
            'aodh_connection'] = user.url
        vms = self.add_vms('compute-1', 6)
        self.start_agent()
        self.reporter.report('compute-1')
        self.wait_notified(len(vms))
        base.poll(lambda: all(self.nova.server(vm)['status'] == 'ERROR'
                              for vm in vms), 10, 'VMs in error')
        base.poll(lambda: self.nova.service('compute-1')['forced_down'], 10,
                  'compute-1 forced down')
        for vm, (project, alarm_id) in vms.items():
            self.assertEqual('alarm',
                             self.alarm(project, alarm_id)['state'])
            base.poll(lambda: [h for h in self.history(project, alarm_id)
                               if h['type'] == 'state transition'], 10,
                      'history of %s' % alarm_id)
        # The outcomes written back, the report remembered (read as the
        # tables' owner).
        engine = sa.create_engine(self.stack.db._driver_url(
            self.stack.db.url))
        self.addCleanup(engine.dispose)

        def count(table, *where):
            with engine.connect() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(
                    table).where(*where)).scalar()
        base.poll(lambda: count(models.outbox, models.outbox.c.state ==
                                'delivered') == len(vms), 10,
                  'the outcomes recorded')
        self.assertEqual(1, count(models.reports))
        # The host back up: the fault journal closes the fault.
        self.reporter.report('compute-1', status='up')
        self.wait_for_log('Host compute-1 is back')
        log = self.agent_log()
        for word in DENIED:
            self.assertNotIn(word, log)
        self.assertNotIn('Sweep of', log)
