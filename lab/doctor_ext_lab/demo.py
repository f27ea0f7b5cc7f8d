"""``doctor-ext-demo``: the Doctor fault-management scenario, for real.

Starts (or uses) RabbitMQ and a database, aodh-api, the Ceilometer
notification agent with doctor-ext, a Nova double, one consumer per project
and the ping monitor; creates one Doctor alarm per VM through Aodh's API;
fails a host carrying ``--vms`` VMs by taking its network link down, and
prints the Doctor timeline (T00..T09) of the fault, in ms from T00.

``--maintenance`` runs the planned-maintenance scenario instead
(:mod:`.maintenance_demo`; both are started by :mod:`.cli`).
"""

import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

from doctor_ext_lab import consumer as consumer_mod
from doctor_ext_lab import netns

CHECKPOINTS = [
    ('T00', 'fault injected (host link down)'),
    ('T01', 'fault detected by the monitor'),
    ('T02', 'affected instances found (inspector)'),
    ('T03', 'instances set to error (Nova, last reset)'),
    ('T04', 'host forced down (Nova)'),
    ('T05', 'host-down event received (agent)'),
    ('T06', 'fault events built (inspector)'),
    ('T07', 'alarms evaluated (evaluator)'),
    ('T08', 'alarms fired (evaluator)'),
    ('T09', 'last consumer received'),
]
REQUIREMENT_MS = 1000.0


class DemoError(RuntimeError):
    pass


def say(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def check_broker(url):
    parsed = urllib.parse.urlsplit(url.replace('rabbit://', 'http://', 1))
    host, port = parsed.hostname or '127.0.0.1', parsed.port or 5672
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as e:
        raise DemoError(
            'RabbitMQ is not reachable at %s:%s (%s).\n  Start it '
            '(rabbitmq-server -detached, or tools/start-services.sh) or '
            'pass --transport-url rabbit://USER:PASS@HOST:PORT/VHOST.'
            % (host, port, e))


def parse_timelines(log_path):
    """The agent's doctor-timeline lines: host faults and firings."""
    hosts, alarms = [], []
    with open(log_path, errors='replace') as f:
        for line in f:
            if 'doctor-timeline' not in line:
                continue
            fields = dict(re.findall(r'(\w+)=(\S+)', line.split(
                'doctor-timeline', 1)[1]))
            (hosts if 'host' in fields else alarms).append(fields)
    return hosts, alarms


class Demo:
    def __init__(self, args):
        self.args = args
        self.stack = None
        self.nova = None
        self.consumers = {}
        self.monitor = None
        self.host = None
        self._stopped = threading.Event()

    # -- set-up ------------------------------------------------------------
    def setup(self):
        from doctor_ext_lab import nova as nova_mod
        from doctor_ext_lab import services

        a = self.args
        transport = a.transport_url or 'rabbit://guest:guest@127.0.0.1:5672/'
        check_broker(transport)
        broker = services.Broker(transport, vhost='' if a.transport_url
                                 else None)
        say('starting the Nova double')
        broker.start()
        self.nova = nova_mod.NovaDouble(transport_url=broker.url)
        self.nova.start()
        if a.nova_latency:
            self.nova.set_latency(a.nova_latency / 1000.0)
        self.projects = self.make_projects(a.projects)
        for p in self.projects:
            c = consumer_mod.Consumer()
            c.start()
            self.consumers[p] = c
        self.failing, self.healthy = 'compute-1', 'compute-2'
        self.nova.add_host(self.failing)
        self.nova.add_host(self.healthy)
        self.vms = {}
        for i in range(a.vms):
            p = self.projects[i % len(self.projects)]
            self.vms[self.nova.add_server(self.failing, p,
                                          name='vnf-%d' % i)] = p
        self.bystanders = {}
        for i, p in enumerate(self.projects):
            self.bystanders[self.nova.add_server(
                self.healthy, p, name='bystander-%d' % i)] = p
        self.stack = services.Stack(
            self.nova.credentials(), transport_url=broker.url,
            db_url=a.db_url, agent_options=self.agent_options(),
            progress=say)
        self.stack.broker = broker
        self.stack.db.start()
        say('creating the Aodh database and starting aodh-api')
        self.stack.start_aodh()
        self.create_alarms()
        say('starting ceilometer-agent-notification with doctor-ext')
        self.stack.start_agent()
        self.start_monitor(broker.url)

    def make_projects(self, count):
        return ['project-%d' % i for i in range(count)]

    def agent_options(self):
        return {}

    def create_alarms(self):
        say('creating %d Doctor alarms through the Aodh API'
            % (len(self.vms) + len(self.bystanders)))
        for vm, p in list(self.vms.items()) + list(self.bystanders.items()):
            self.stack.create_doctor_alarm(p, vm,
                                           self.consumers[p].url('/failure'))

    def start_monitor(self, transport_url):
        from doctor_ext.monitor import ping

        # Signed with the secret the agent shares.
        self.reporter = self.stack.reporter()
        try:
            self.host = netns.FaultyHost().create()
            address = self.host.address
            say('compute-1 is reachable at %s (network namespace %s)'
                % (address, self.host.ns))
        except (OSError, subprocess.CalledProcessError) as e:
            self.host = None
            say('cannot create a network namespace (%s): the fault will '
                'be reported directly instead of detected by ping' % e)
            return
        self.monitor = ping.PingMonitor(
            {self.failing: address}, self.reporter,
            interval=self.args.ping_interval, timeout=self.args.ping_interval,
            misses_before_down=self.args.misses)
        self.monitor.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.monitor.state(self.failing) == 'up':
                return
            time.sleep(0.05)
        raise DemoError('the monitor never saw %s up' % address)

    # -- the fault ---------------------------------------------------------
    def run_fault(self):
        expected = len(self.vms)
        say('failing %s (%d VMs of %d projects)' % (
            self.failing, expected, len(self.projects)))
        t00 = time.time()
        if self.host is not None:
            self.host.fail()
        else:
            self.reporter.send(self._report())
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            if self.notified() >= expected and self._fenced():
                break
            time.sleep(0.01)
        return self.collect(t00, expected)

    def _report(self):
        from doctor_ext.monitor import report
        return report.build_report(self.failing, monitor='demo')

    def _fenced(self):
        svc = self.nova.service(self.failing)
        errors = sum(1 for s in self.nova.servers_on(self.failing)
                     if s['status'] == 'ERROR')
        return svc['forced_down'] and errors == len(self.vms)

    def notified(self):
        return sum(len(c.received) for c in self.consumers.values())

    def collect(self, t00, expected):
        ms = lambda t: round((t - t00) * 1000.0, 2) if t else None  # noqa
        detected = None
        if self.monitor is not None:
            detected = self.monitor.detected_at.get(self.failing)
        hosts, alarms = parse_timelines(self.stack.agents[0].log_file)
        fault = hosts[-1] if hosts else {}
        if detected is None:
            detected = t00
        posts = [r for c in self.consumers.values() for r in c.received]
        wrong = [r for p, c in self.consumers.items() for r in c.received
                 if self.vms.get(consumer_mod.instance_of(r.body)) != p]
        last_reset, forced_down = self.nova_times()

        def f(key):
            v = fault.get(key)
            return float(v) if v else None
        timeline = {
            'T00': 0.0,
            'T01': ms(detected),
            'T02': ms(f('found')),
            'T03': ms(last_reset),
            'T04': ms(forced_down),
            'T05': ms(f('detected')),
            'T06': ms(f('events')),
            'T07': ms(max(float(x['evaluated']) for x in alarms))
            if alarms else None,
            'T08': ms(max(float(x['fired']) for x in alarms))
            if alarms else None,
            'T09': ms(max(r.time for r in posts)) if posts else None,
        }
        last = max((r.time for r in posts), default=None)
        return {
            'vms': len(self.vms),
            'projects': len(self.projects),
            'notified': len(posts),
            'expected': expected,
            'wrong_project': len(wrong),
            'bystanders_notified': sum(
                1 for r in posts
                if consumer_mod.instance_of(r.body) in self.bystanders),
            'fenced': bool(self._fenced()),
            'notification_time_ms': round((last - detected) * 1000.0, 2)
            if last else None,
            'first_notification_ms': round(
                (min(r.time for r in posts) - detected) * 1000.0, 2)
            if posts else None,
            'timeline': timeline,
            'detection': 'ping' if self.monitor is not None else 'report',
            'machine': {'python': platform.python_version(),
                        'cpus': os.cpu_count(),
                        'platform': platform.platform()},
        }

    def nova_times(self):
        """(last reset, force-down): when Nova answered them, or None."""
        calls = list(self.nova.calls)
        resets = [c['time'] for c in calls if 'os-resetState' in str(
            c.get('body', '')) or c['path'].endswith('/action')]
        forces = [c['time'] for c in calls if c['method'] == 'PUT' and
                  'os-services' in c['path']]
        return (max(resets) if resets else None,
                min(forces) if forces else None)

    # -- tear-down ---------------------------------------------------------
    def teardown(self):
        if self.monitor is not None:
            self.monitor.stop()
        if self.host is not None:
            self.host.destroy()
        for c in self.consumers.values():
            c.stop()
        if self.stack is not None:
            say('stopping the services')
            if self.args.keep_workdir:
                self.stack.stop()
                say('logs kept in %s' % self.stack.workdir)
            else:
                self.stack.cleanup()
        if self.nova is not None:
            self.nova.stop()


def print_timeline(result):
    print()
    print('Doctor timeline: %d VMs of %d projects on the failing host'
          % (result['vms'], result['projects']))
    print('-' * 64)
    for key, label in CHECKPOINTS:
        value = result['timeline'].get(key)
        shown = '%10.1f ms' % value if value is not None else '    (none)'
        print('%s  %-46s %s' % (key, label, shown))
    print('-' * 64)
    total = result['notification_time_ms']
    verdict = ('PASS' if total is not None and total < REQUIREMENT_MS and
               result['notified'] == result['expected'] else 'FAIL')
    print('notified %d of %d owners; wrong-project notifications: %d; '
          'healthy-host notifications: %d; host fenced: %s'
          % (result['notified'], result['expected'],
             result['wrong_project'], result['bystanders_notified'],
             'yes' if result['fenced'] else 'NO'))
    print('detection (T01) to last consumer (T09): %s ms -> %s against the '
          'Doctor requirement of %d ms' % (total, verdict, REQUIREMENT_MS))
    return verdict


def run(demo, scenario):
    """Set up ``demo``, run ``scenario()``, tear down.

    Returns (result, None), or (None, exit code) when it could not run.
    """
    def interrupted(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, interrupted)
    try:
        demo.setup()
        return scenario(), None
    except KeyboardInterrupt:
        say('interrupted')
        return None, 130
    except Exception as e:
        from doctor_ext_lab import services
        if isinstance(e, (DemoError, services.StackError)):
            print('ERROR: %s' % e, file=sys.stderr)
            return None, 2
        raise
    finally:
        demo.teardown()


def main(args, demo_cls=None):
    """The fault scenario with the arguments of :mod:`.cli`.

    :param demo_cls: the :class:`Demo` to run (``--nova real`` gives
        :class:`.real_nova_demo.RealNovaDemo`).
    """
    demo = (demo_cls or Demo)(args)
    result, code = run(demo, demo.run_fault)
    if code is not None:
        return code
    verdict = print_timeline(result)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2, sort_keys=True)
        say('wrote %s' % args.json)
    return 0 if verdict == 'PASS' else 1
