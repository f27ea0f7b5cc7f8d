"""A functional test on the suite's real Keystone, Placement and Nova.

:class:`RealNovaTest` is :class:`tests.functional.base.FunctionalTest` with
the real cloud of :mod:`tests.realnova.cloud` in place of the Nova double:
the suite starts it once (the first test of the process does) and builds
its servers once (:meth:`RealNovaTest.suite_servers`); each test still has
its own Aodh database, consumers and agent. Nova's notifications go to the
cloud's vhost, so the agent of each test reads that vhost; its queues are
emptied before each test, and each test gives back what it changed (a host
forced down, servers in error) with :meth:`RealCloud.restore`.
"""

import os
import shutil
import subprocess
import threading

from doctor_ext_lab import services
from tests.functional import base
from tests.realnova import cloud as cloud_mod

# Servers per (host, project): "few per host" keeps builds fast (each build
# on a host reads the allocations of every server already there).
PER_PROJECT = {'project-a': 2, 'project-b': 1, 'project-c': 1}
_SERVERS = {}
_SERVERS_LOCK = threading.Lock()


def purge_queues(broker):
    """Empty every queue of ``broker``'s vhost (no consumer is running)."""
    out = subprocess.run(
        ['rabbitmqctl', '-q', 'list_queues', '-p', broker.vhost, 'name'],
        capture_output=True, text=True, timeout=60)
    for name in out.stdout.split():
        if name == 'name':
            continue
        subprocess.run(['rabbitmqctl', '-q', 'purge_queue', '-p',
                        broker.vhost, name], capture_output=True, timeout=60)


class RealNovaTest(base.FunctionalTest):
    PROJECTS = cloud_mod.PROJECTS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cloud = cloud_mod.shared()
        # Built here, outside each test's time limit.
        cls.suite_servers()

    def setUp(self):
        super().setUp()
        keep = os.environ.get('DOCTOR_REALNOVA_KEEP')
        if keep:
            # The agent's and Aodh's files, for a post-mortem.
            self.addCleanup(shutil.copytree, self.stack.workdir,
                            os.path.join(keep, self.id()),
                            dirs_exist_ok=True)

    def make_broker(self):
        # Nova emits on the cloud's vhost: the test's agent reads it there.
        broker = services.Broker(self.cloud.broker.base_url,
                                 vhost=self.cloud.broker.vhost)
        purge_queues(broker)
        return broker

    def make_nova(self):
        return self.cloud

    @classmethod
    def suite_servers(cls):
        """``{server_id: (project, host)}``, built once per process."""
        with _SERVERS_LOCK:
            if not _SERVERS:
                _SERVERS.update(cls.cloud.create_servers([
                    (host, project, '%s-%s-%d' % (host, project, i))
                    for host in cls.cloud.hosts
                    for project, n in PER_PROJECT.items()
                    for i in range(n)]))
            return dict(_SERVERS)

    def servers_on(self, host):
        """``{server_id: project name}`` of ``host``, as Nova lists them."""
        self.suite_servers()
        names = {i: n for n, i in self.cloud.project_ids.items()}
        return {s['id']: names[s['tenant_id']]
                for s in self.cloud.servers(host)}

    def give_back(self, *hosts):
        """Restore ``hosts`` (up, enabled, servers ACTIVE) after the test."""
        for host in hosts:
            self.addCleanup(self.cloud.restore, host)

    def doctor_alarms(self, vms, path='/failure', repeat=False):
        """One Doctor alarm per ``{vm: project}``; ``{vm: alarm_id}``."""
        return {vm: self.stack.create_doctor_alarm(
            self.cloud.project_ids[p], vm, self.consumers[p].url(path),
            repeat=repeat)['alarm_id']
            for vm, p in vms.items()}

    def wait_status(self, vms, status, timeout=30):
        return base.poll(lambda: all(
            self.cloud.server(vm)['status'] == status for vm in vms),
            timeout, '%d servers %s per Nova' % (len(vms), status))

    def wait_forced_down(self, host, timeout=30):
        def forced_down():
            svc = self.cloud.service(host)
            return svc if svc['forced_down'] else None
        return base.poll(forced_down, timeout,
                         '%s forced down per Nova' % host)
