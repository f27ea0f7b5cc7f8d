"""The benchmark's emitter and its floor side (:mod:`doctor_ext_lab.floor`).

:class:`Emitter` puts the benchmark's faults on a vhost's ``nova``
exchange, the way Nova does; every side (stock, doctor-ext, floor) has
one. :class:`FloorSide` runs the bare listener in a process of its own on
a vhost of its own, with the same consumers as the pipelines.
"""

import json
import os
import sys
import threading

from doctor_ext_lab import floor
from doctor_ext_lab import services


class Emitter:
    """Nova's notifications on one vhost."""

    def __init__(self, url):
        self.url = url
        self._notifier = None
        self._lock = threading.Lock()

    def notifier(self):
        with self._lock:
            return self._make_notifier()

    def _make_notifier(self):
        if self._notifier is None:
            from oslo_config import cfg
            import oslo_messaging

            from doctor_ext.monitor import report
            conf = cfg.ConfigOpts()
            conf([], project='bench')
            transport = report.get_transport(conf, url=self.url,
                                             exchange='nova')
            self._notifier = oslo_messaging.Notifier(
                transport, driver='messagingv2', topics=['notifications'],
                publisher_id='nova-compute:bench')
        return self._notifier

    def instance_error(self, vm, project, host):
        """Nova's legacy compute.instance.update for a VM gone to error."""
        self.notifier().info({}, 'compute.instance.update', {
            'instance_id': vm, 'tenant_id': project, 'user_id': 'u',
            'state': 'error', 'old_state': 'active', 'host': host,
            'node': host, 'display_name': vm, 'state_description': ''})

    def floor_host_down(self, host):
        self.notifier().info({}, floor.HOST_DOWN, {'host': host})


def queue_depths(broker):
    """{queue: messages ready} of every queue of ``broker``'s vhost."""
    import subprocess
    try:
        out = subprocess.run(
            ['rabbitmqctl', '-q', 'list_queues', '-p', broker.vhost,
             'name', 'messages'], check=True, capture_output=True,
            timeout=60).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    depths = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            depths[parts[0]] = int(parts[1])
    return depths


class FloorSide:
    """The floor: a bare listener process that POSTs to the consumers."""

    name = 'floor'

    def __init__(self, consumers, workdir, client='ours', threads=16):
        self.consumers = consumers
        self.workdir = os.path.join(workdir, 'floor-%s' % client)
        os.makedirs(self.workdir, exist_ok=True)
        self.client = client
        self.threads = threads
        self.broker = services.Broker().start()
        self.emitter = Emitter(self.broker.url)
        self.hosts = {}
        self.proc = None

    def add_vms(self, host, count, projects):
        """VMs of ``host`` for the listener's host faults."""
        vms = [('%s-vm-%d' % (host, i), projects[i % len(projects)])
               for i in range(count)]
        self.hosts[host] = vms
        return vms

    def path(self, host):
        """Where the listener POSTs the faults of ``host``."""
        return '/floor-%s/%s' % (self.client, host)

    def instance_error(self, vm, project, host):
        self.emitter.instance_error(vm, project, host)

    def host_down(self, host):
        self.emitter.floor_host_down(host)

    def start(self, timeout=60):
        hosts = os.path.join(self.workdir, 'hosts.json')
        with open(hosts, 'w') as f:
            json.dump(self.hosts, f)
        argv = [sys.executable, '-m', 'doctor_ext_lab.floor',
                '--transport-url', self.broker.url, '--hosts', hosts,
                '--client', self.client, '--threads', str(self.threads)]
        for c in self.consumers:
            argv += ['--consumer', '127.0.0.1:%d' % c.port]
        self.proc = services.Process('floor', argv, os.path.join(
            self.workdir, 'floor.out'))
        services.wait_for(
            lambda: (self.broker.consumers('notifications.info') or 0) >= 1,
            timeout, 'the floor listener to consume', self.proc.proc,
            self.proc.log_path)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop_listener(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def stop(self):
        self.stop_listener()
        self.broker.stop()
