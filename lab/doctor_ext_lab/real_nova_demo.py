"""``doctor-ext-demo --nova real``: the Doctor demo on real Nova.

The same scenario as :mod:`doctor_ext_lab.demo`, with real Keystone,
Placement and Nova (three computes with the fake virt driver) in place of
the Nova double: the cloud of the test suites (``tests/realnova`` of the
repository, so the demo runs from a checkout, as ``tox -e demo`` does). The
VMs are built through Nova's API (projects ``project-a`` to ``project-c``),
the agent's resource map is loaded from Nova, and "host fenced" means what
Nova's API says: the compute service forced down and every VM in ERROR.
T03 and T04 are when Nova's own notifications of the last reset and of the
force-down arrived (real Nova keeps no call log).

The first run installs Nova into ``.tox/realnova`` (about 90 s); the cloud
takes 70-100 s to start on an idle machine.
"""

import os
import sys
import threading
import time

from doctor_ext_lab import demo as demo_mod
from doctor_ext_lab import services

say = demo_mod.say


def _cloud_module():
    try:
        from tests.realnova import cloud
    except ImportError:
        sys.path.insert(0, services.REPO)
        from tests.realnova import cloud
    return cloud


class NovaHeard:
    """When Nova's force-down and reset notifications arrived."""

    def __init__(self, url, host):
        from oslo_config import cfg
        import oslo_messaging

        from doctor_ext.monitor import report
        conf = cfg.ConfigOpts()
        conf([], project='doctor-demo')
        self.host = host
        self.forced_down = None
        self.resets = {}
        self._lock = threading.Lock()
        self.transport = report.get_transport(conf, url=url)
        targets = [oslo_messaging.Target(topic=t, exchange='nova')
                   for t in ('notifications', 'versioned_notifications')]
        self.listener = oslo_messaging.get_notification_listener(
            self.transport, targets, [self], executor='threading',
            pool='doctor-demo-%d' % os.getpid())
        self.listener.start()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        now = time.time()
        with self._lock:
            if event_type == 'service.update':
                data = payload.get('nova_object.data', {})
                if data.get('host') == self.host and data.get('forced_down') \
                        and self.forced_down is None:
                    self.forced_down = now
            elif event_type == 'compute.instance.update' and \
                    payload.get('host') == self.host and \
                    payload.get('state') == 'error':
                self.resets[payload.get('instance_id')] = now

    def stop(self):
        self.listener.stop()
        self.listener.wait()
        self.transport.cleanup()


class RealNovaDemo(demo_mod.Demo):

    def __init__(self, args):
        super().__init__(args)
        self.cloud = None
        self.heard = None
        self._fenced_at = 0.0
        self._fenced_last = False

    def setup(self):
        from doctor_ext_lab import consumer as consumer_mod

        a = self.args
        cloud_mod = _cloud_module()
        say('starting real Keystone, Placement and Nova (tests/realnova)')
        self.cloud = cloud_mod.RealCloud(progress=say)
        self.cloud.start()
        self.nova = self.cloud
        broker = self.cloud.broker
        self.projects = list(self.cloud.projects)
        for p in self.projects:
            c = consumer_mod.Consumer()
            c.start()
            self.consumers[p] = c
        self.failing, self.healthy = self.cloud.hosts[:2]
        say('building %d VMs on %s and %d on %s through Nova\'s API' % (
            a.vms, self.failing, len(self.projects), self.healthy))
        built = self.cloud.create_servers(
            [(self.failing, self.projects[i % len(self.projects)],
              'vnf-%d' % i) for i in range(a.vms)] +
            [(self.healthy, p, 'bystander-%d' % i)
             for i, p in enumerate(self.projects)])
        self.vms = {vm: p for vm, (p, h) in built.items()
                    if h == self.failing}
        self.bystanders = {vm: p for vm, (p, h) in built.items()
                           if h == self.healthy}
        self.heard = NovaHeard(broker.url, self.failing)
        self.stack = services.Stack(
            self.cloud.credentials(), transport_url=broker.url,
            db_url=a.db_url, agent_options=self.agent_options(),
            progress=say)
        self.stack.broker = services.Broker(broker.base_url,
                                            vhost=broker.vhost)
        self.stack.db.start()
        say('creating the Aodh database and starting aodh-api')
        self.stack.start_aodh()
        self.create_alarms()
        say('starting ceilometer-agent-notification with doctor-ext')
        self.stack.start_agent()
        self.start_monitor(broker.url)

    def create_alarms(self):
        say('creating %d Doctor alarms through the Aodh API'
            % (len(self.vms) + len(self.bystanders)))
        for vm, p in list(self.vms.items()) + list(self.bystanders.items()):
            self.stack.create_doctor_alarm(self.cloud.project_ids[p], vm,
                                           self.consumers[p].url('/failure'))

    def _fenced(self):
        # What Nova's API says, asked at most every 0.2 s.
        now = time.monotonic()
        if self._fenced_last or now - self._fenced_at < 0.2:
            return self._fenced_last
        self._fenced_at = now
        svc = self.cloud.service(self.failing)
        errors = sum(1 for s in self.cloud.servers(self.failing)
                     if s['status'] == 'ERROR')
        self._fenced_last = bool(svc['forced_down']) and \
            errors == len(self.vms)
        return self._fenced_last

    def nova_times(self):
        resets = [t for vm, t in self.heard.resets.items() if vm in self.vms]
        return (max(resets) if len(resets) == len(self.vms) else None,
                self.heard.forced_down)

    def teardown(self):
        if self.heard is not None:
            self.heard.stop()
        super().teardown()
        self.nova = None
        if self.cloud is not None:
            say('stopping Nova, Placement and Keystone')
            self.cloud.stop()
