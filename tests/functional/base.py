"""The real services of the fault path, for one test.

Each test gets a RabbitMQ vhost, a PostgreSQL database with Aodh's schema
(aodh-dbsync), aodh-api in noauth mode, the Nova double over HTTP (sending
Nova's notifications to the same vhost), one consumer per project, and
ceilometer-agent-notification with doctor-ext and the repository's
etc/ceilometer files.
"""

import os

import fixtures
from oslotest import base

from doctor_ext_lab import consumer as consumer_mod
from doctor_ext_lab import nova as nova_mod
from doctor_ext_lab import services
from tests import fixtures as doctor_fixtures

POSTGRES = os.environ.get('DOCTOR_TEST_POSTGRES',
                          'postgresql://postgres@127.0.0.1/postgres')


poll = doctor_fixtures.poll


def instance_of(received):
    return consumer_mod.instance_of(received.body)


class FunctionalTest(base.BaseTestCase):
    PROJECTS = ('project-a', 'project-b', 'project-c')
    agent_options = {}
    # The server of the test's Aodh database.
    db_url = POSTGRES

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(300, gentle=True))
        self.broker = self.make_broker()
        self.nova = self.make_nova()
        self.consumers = {}
        for p in self.PROJECTS:
            self.consumers[p] = self.useFixture(
                consumer_mod.ConsumerFixture()).consumer
        self.stack = services.Stack(
            self.nova.credentials(), transport_url=self.broker.url,
            db_url=self.db_url, agent_options=self.agent_options)
        self.stack.broker = self.broker
        self.addCleanup(self.stack.cleanup)
        self.stack.db.start()
        self.stack.start_aodh()
        self.reporter = self.make_reporter()

    def make_broker(self):
        """A RabbitMQ vhost of the test's own."""
        broker = services.Broker().start()
        self.addCleanup(broker.stop)
        return broker

    def make_nova(self):
        """The Nova double, sending its notifications to the test's vhost.

        tests/functional/test_real_nova.py gives real Nova instead.
        """
        return self.useFixture(nova_mod.NovaDoubleFixture(
            transport_url=self.broker.url)).nova

    def make_reporter(self, secret=None):
        """The monitor's reporter, signing with the agents' secret."""
        reporter = self.stack.reporter(secret)
        self.addCleanup(reporter.close)
        return reporter

    # -- building the cloud --------------------------------------------------
    def add_vms(self, host, count, projects=None, alarms=True, repeat=False):
        """VMs on ``host`` round-robin over projects, one Doctor alarm each.

        Returns {vm_id: (project, alarm_id)}.
        """
        projects = projects or self.PROJECTS
        vms = {}
        for i in range(count):
            p = projects[i % len(projects)]
            vm = self.nova.add_server(host, p, name='%s-vm-%d' % (host, i))
            alarm_id = None
            if alarms:
                alarm_id = self.stack.create_doctor_alarm(
                    p, vm, self.consumers[p].url('/failure'),
                    repeat=repeat)['alarm_id']
            vms[vm] = (p, alarm_id)
        return vms

    def start_agent(self):
        return self.stack.start_agent()

    def reset_state(self, vm, state='error'):
        """Reset a VM through Nova's API, as an admin would.

        Nova answers 202 and emits its compute.instance.update.
        """
        if getattr(self, '_sdk', None) is None:
            import openstack
            creds = self.nova.credentials()
            self._sdk = openstack.connection.Connection(
                auth_type='password', region_name=self.nova.region,
                auth={k: v for k, v in creds.items()
                      if k not in ('auth_type',)})
        self._sdk.compute.reset_server_state(vm, state)

    # -- observing -------------------------------------------------------
    def received(self, project=None):
        consumers = ([self.consumers[project]] if project else
                     self.consumers.values())
        return [r for c in consumers for r in c.received]

    def wait_notified(self, count, timeout=10):
        return poll(lambda: len(self.received()) >= count, timeout,
                    '%d notifications (have %d)' % (
                        count, len(self.received())))

    def agent_log(self, agent=None):
        agent = agent or self.stack.agents[0]
        with open(agent.log_file, errors='replace') as f:
            return f.read()

    def wait_for_log(self, text, timeout=10, agent=None):
        """The agent's log, once it holds ``text``.

        The agent logs a step after doing it, so a consumer may hear
        before the line is written: poll for it.
        """
        return poll(lambda: text in self.agent_log(agent) and
                    self.agent_log(agent), timeout,
                    'the agent to log %r' % text)

    def alarm(self, project, alarm_id):
        return self.stack.aodh('GET', '/v2/alarms/%s' % alarm_id, project)

    def history(self, project, alarm_id):
        return self.stack.aodh('GET', '/v2/alarms/%s/history' % alarm_id,
                               project)
