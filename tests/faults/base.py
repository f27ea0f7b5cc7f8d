"""Fault injection on the real services of the functional tests.

Every test here is one scenario on the stack of :mod:`tests.functional.base`
(a RabbitMQ vhost of its own, PostgreSQL, aodh-api,
ceilometer-agent-notification with doctor-ext, the Nova double, consumer
doubles): it sends faults, injects one fault into the path, and counts what
the consumers got. Each scenario records a :class:`Tally` (sent, delivered,
duplicated, lost, time to recover) in the test's details, on stdout and in
the JSON-lines file ``$DOCTOR_FAULTS_RESULTS`` (default
``<tmp>/doctor-ext-faults.jsonl``); ``python -m tests.faults.report`` turns
that file into the table of doc/source/reliability.rst.

Faults are injected only into what the test owns: the agent's own broker
connections (never the broker), the agent process, a TCP proxy in front of
the test's database, the test's consumers and Nova double.
"""

import collections
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

from oslo_config import cfg
import oslo_messaging
import testtools

from doctor_ext.monitor import report
from doctor_ext_lab import services
from tests.functional import base as fbase

RESULTS = (os.environ.get('DOCTOR_FAULTS_RESULTS') or
           os.path.join(tempfile.gettempdir(), 'doctor-ext-faults.jsonl'))
AGENT_QUEUES = ('notifications.info', 'notifications.error',
                'versioned_notifications.info')
poll = fbase.poll


class Tally:
    """What one scenario sent and what its consumers received.

    ``expected`` are the alarm ids that must be notified; a POST for one of
    them counts once as delivered, any further POST for it as a duplicate.
    """

    def __init__(self, scenario, fault):
        self.scenario = scenario
        self.fault = fault
        self.sent = 0
        self.expected = set()
        self.delivered = 0
        self.duplicated = 0
        self.lost = 0
        self.unexpected = 0
        self.recover = None
        self.recover_what = ''
        self.extra = {}

    def count(self, received, since=None):
        """Count ``received`` (consumer records), those from ``since`` on."""
        per_alarm = collections.Counter(
            r.body.get('alarm_id') for r in received
            if isinstance(r.body, dict) and (since is None or
                                             r.time >= since))
        self.delivered = len(self.expected & set(per_alarm))
        self.duplicated = sum(n - 1 for i, n in per_alarm.items()
                              if i in self.expected)
        self.unexpected = sum(n for i, n in per_alarm.items()
                              if i not in self.expected)
        self.lost = len(self.expected - set(per_alarm))
        return self

    def as_dict(self):
        return {'scenario': self.scenario, 'fault': self.fault,
                'sent': self.sent, 'expected': len(self.expected),
                'delivered': self.delivered, 'duplicated': self.duplicated,
                'lost': self.lost, 'unexpected': self.unexpected,
                'recover_s': (round(self.recover, 3)
                              if self.recover is not None else None),
                'recover_what': self.recover_what, 'extra': self.extra,
                'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}


def _ctl(*args, timeout=60):
    proc = subprocess.run(['rabbitmqctl', '-q'] + list(args),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise services.StackError('rabbitmqctl %s: %s' % (
            ' '.join(args), proc.stderr.strip()[-500:]))
    return proc.stdout


def process_group(pgid):
    """Pids of the processes of a process group (the agent and workers)."""
    pids = set()
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.add(int(entry))
    return pids


class NovaBus:
    """Sends Nova's legacy notifications, as nova-compute would."""

    def __init__(self, url, quorum=False):
        conf = cfg.ConfigOpts()
        conf([], project='doctor-faults')
        self.transport = report.get_transport(conf, url=url,
                                              exchange='nova')
        # In a cloud on quorum queues every service says so (a sender
        # declares the queue too), and declares durable exchanges.
        for option in ('rabbit_quorum_queue', 'amqp_durable_queues'):
            conf.set_override(option, quorum, group='oslo_messaging_rabbit')
        self.notifier = oslo_messaging.Notifier(
            self.transport, driver='messagingv2', topics=['notifications'])

    def instance_update(self, vm, project, host, state='error',
                        old_state='active', **payload):
        body = {'instance_id': vm, 'tenant_id': project,
                'user_id': 'user-' + project, 'host': host, 'node': host,
                'state': state, 'old_state': old_state,
                'display_name': 'vm-' + vm[:8], 'memory_mb': 512,
                'vcpus': 1, 'launched_at': '2026-01-01T00:00:00.000000',
                'deleted_at': ''}
        body.update(payload)
        self.notifier.prepare(publisher_id='nova-compute:%s' % host).info(
            {}, 'compute.instance.update', body)

    def raw(self, event_type, payload, priority='info', ctxt=None,
            publisher_id='fuzz'):
        getattr(self.notifier.prepare(publisher_id=publisher_id),
                priority)(ctxt or {}, event_type, payload)

    def close(self):
        self.transport.cleanup()


class TcpProxy:
    """A TCP proxy on loopback that can be cut and restored.

    ``cut()`` closes every proxied connection and the listening socket:
    the client sees its connections drop and new ones refused, as when a
    database server goes down. ``hang()`` keeps every connection open but
    forwards nothing (new ones are accepted and held): the server no longer
    answers. ``restore()`` listens again on the same port, and forwards.
    """

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.port = services.free_port()
        self._lock = threading.Lock()
        self._conns = set()
        self._listener = None
        self._thread = None
        self.accepted = 0
        self._flowing = threading.Event()
        self.restore()

    def hang(self):
        self._flowing.clear()

    def restore(self):
        self._flowing.set()
        with self._lock:
            if self._listener is not None:
                return
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(('127.0.0.1', self.port))
            sock.listen(64)
            self._listener = sock
        self._thread = threading.Thread(target=self._accept, args=(sock,),
                                        daemon=True, name='tcp-proxy')
        self._thread.start()

    def cut(self):
        with self._lock:
            sock, self._listener = self._listener, None
            conns, self._conns = list(self._conns), set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    stop = cut

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(listener, client),
                             daemon=True).start()

    def _connect(self, listener, client):
        with self._lock:
            self._conns.add(client)
        self._flowing.wait()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            if self._listener is not listener or client not in self._conns:
                client.close()
                upstream.close()
                return
            self._conns.add(upstream)
            self.accepted += 1
        self._pump(client, upstream)

    def _pump(self, a, b):
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    self._flowing.wait()
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                with self._lock:
                    self._conns.discard(s)
                try:
                    s.close()
                except OSError:
                    pass


class FaultTest(fbase.FunctionalTest):
    """A functional test that counts and records what a fault cost."""

    agent_options = {}

    def setUp(self):
        super().setUp()
        # Scenarios with bursts need more than the functional 300 s only on
        # a loaded machine; keep the same bound.
        keep = os.environ.get('DOCTOR_FAULTS_KEEP')
        if keep:
            # Keep the logs and configuration files for a post-mortem.
            target = os.path.join(keep, self.id())
            self.addCleanup(shutil.copytree, self.stack.workdir, target,
                            dirs_exist_ok=True)
        # The agent's own maintenance state, not the system's.
        options = {k: dict(v) for k, v in self.stack.agent_options.items()}
        options.setdefault('doctor_maintenance', {})['state_dir'] = \
            os.path.join(self.stack.workdir, 'maintenance')
        self.stack.agent_options = options
        self.bus = NovaBus(self.broker.url)
        self.addCleanup(self.bus.close)
        self.tallies = []

    # -- the cloud -----------------------------------------------------------
    def alarm_rows(self, vms, repeat=False, path='/failure'):
        """Doctor alarms for ``{vm: (project, host)}``; ``{alarm_id: vm}``.

        Written straight into Aodh's tables (aodh-api's quota check makes
        1,000 POSTs slow).
        """
        rows = []
        out = {}
        for vm, (project, _host) in vms.items():
            row = services.alarm_row(project, vm,
                                     self.consumers[project].url(path),
                                     repeat=repeat)
            rows.append(row)
            out[row['alarm_id']] = vm
        self.stack.db.insert_alarms(rows)
        return out

    def vms(self, count, hosts=None, prefix='h', nova=False):
        """``{vm: (project, host)}``; in the Nova double if ``nova``."""
        out = {}
        for i in range(count):
            project = self.PROJECTS[i % len(self.PROJECTS)]
            host = hosts[i % len(hosts)] if hosts else '%s-%d' % (prefix, i)
            if nova:
                vm = self.nova.add_server(host, project)
            else:
                vm = str(uuid.uuid4())
            out[vm] = (project, host)
        return out

    # -- observing ---------------------------------------------------------
    def alarms_notified(self):
        return {r.body.get('alarm_id') for r in self.received()
                if isinstance(r.body, dict)}

    def wait_alarms(self, alarm_ids, timeout, what='notifications'):
        alarm_ids = set(alarm_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if alarm_ids <= self.alarms_notified():
                return True
            time.sleep(0.02)
        received = self.received()
        missing = alarm_ids - self.alarms_notified()
        fired = sum(self.log_of(a).count('doctor-timeline alarm=%s' % i)
                    for a in self.stack.agents for i in list(missing)[:20])
        raise AssertionError(
            'timed out after %s s waiting for %s: %d of %d notified; %d '
            'POSTs received (%d without a JSON body); of 20 missing alarms '
            'the agents fired %d; queues %s' % (
                timeout, what, len(alarm_ids) - len(missing), len(alarm_ids),
                len(received), sum(1 for r in received
                                   if not isinstance(r.body, dict)),
                fired, self.queues()))

    def report_down(self, tally, host, timeout, project=None):
        """Report ``host`` down and wait for ``tally.expected``.

        Returns (when the report was sent, when the last POST of
        ``project``, or of any project, arrived), in ``time.time()``.
        """
        sent = time.time()
        self.reporter.report(host)
        tally.sent = 1
        self.wait_alarms(tally.expected, timeout)
        return sent, max(r.time for r in self.received(project))

    def db_alarms(self):
        """``{alarm_id: (state, transitions in history)}`` from Aodh's DB."""
        from aodh.storage.sqlalchemy import models
        import sqlalchemy as sa
        alarm = models.Alarm.__table__
        history = models.AlarmChange.__table__
        engine = sa.create_engine(self.stack.db.url)
        try:
            with engine.connect() as conn:
                states = dict(conn.execute(sa.select(
                    alarm.c.alarm_id, alarm.c.state)).all())
                counts = dict(conn.execute(
                    sa.select(history.c.alarm_id, sa.func.count()).where(
                        history.c.type == 'state transition').group_by(
                        history.c.alarm_id)).all())
        finally:
            engine.dispose()
        return {i: (s, counts.get(i, 0)) for i, s in states.items()}

    def queues(self):
        """``{queue: (ready, unacked)}`` of the test's vhost."""
        out = _ctl('list_queues', '-p', self.broker.vhost, 'name',
                   'messages_ready', 'messages_unacknowledged',
                   '--formatter', 'json')
        return {q['name']: (q['messages_ready'], q['messages_unacknowledged'])
                for q in json.loads(out or '[]')}

    def skipped_duplicates(self):
        """Messages oslo.messaging skipped as already handled, unacked.

        After a lost connection the broker redelivers what the agent had
        handled but could not acknowledge; oslo.messaging recognises it and
        skips it without acknowledging it (amqpdriver.AMQPListener), so it
        stays unacked on the agent's connection. It was handled.
        """
        return sum(self.log_of(a).count('ignoring duplicate message')
                   for a in self.stack.agents)

    def wait_drained(self, timeout=60, queues=AGENT_QUEUES):
        """Every message of the agent's queues consumed and acked.

        Except the redelivered duplicates oslo.messaging skips unacked.
        """
        def drained():
            state = self.queues()
            ready = sum(state.get(q, (0, 0))[0] for q in queues)
            unacked = sum(state.get(q, (0, 0))[1] for q in queues)
            return ready == 0 and unacked <= self.skipped_duplicates()
        try:
            poll(drained, timeout, 'the agent queues to drain')
        except AssertionError as e:
            raise AssertionError('%s: %s' % (e, {
                q: v for q, v in self.queues().items() if q in queues}))

    def agent_connections(self, agent):
        """RabbitMQ connection pids of ``agent``'s processes."""
        pids = {str(p) for p in process_group(agent.pid)}
        out = _ctl('list_connections', '-p', self.broker.vhost, 'pid',
                   'client_properties')
        found = []
        for line in out.splitlines():
            conn, _, properties = line.partition('\t')
            if not conn.startswith('<'):
                continue    # the header
            if any('"ceilometer-agent-notification:%s:' % pid in properties
                   for pid in pids):
                found.append(conn.strip())
        return found

    def kill_agent_connections(self, agent):
        conns = self.agent_connections(agent)
        for pid in conns:
            _ctl('close_connection', pid, 'doctor-ext fault injection')
        return len(conns)

    def agent_consuming(self, queues=('notifications.info',
                                      'notifications.error')):
        return all((self.broker.consumers(q) or 0) >= 1 for q in queues)

    def restart_agent(self, agent, sig=signal.SIGKILL):
        """Kill ``agent`` with ``sig`` and start it again.

        Same configuration and log file. Returns (new agent, seconds from
        the kill until it is ready: alarms and instance map loaded, queues
        consumed).
        """
        text = self.log_of(agent)
        loads = text.count('event alarm(s) from Aodh')
        maps = text.count('Instance map loaded')
        killed = time.monotonic()
        agent.kill(sig)
        agent.proc.wait(30)
        self.stack.processes.remove(agent)
        self.stack.agents.remove(agent)
        new = self.stack.start_agent(wait=False)

        def ready():
            if not new.alive():
                raise AssertionError('the agent exited: %s' % self.log_of(
                    new)[-3000:])
            text = self.log_of(new)
            return (text.count('event alarm(s) from Aodh') > loads and
                    text.count('Instance map loaded') > maps and
                    self.agent_consuming())
        poll(ready, 90, 'the restarted agent to be ready')
        return new, time.monotonic() - killed

    def log_of(self, agent):
        with open(agent.log_file, errors='replace') as f:
            return f.read()

    # -- recording ---------------------------------------------------------
    def record(self, tally):
        data = tally.as_dict()
        data['test'] = self.id()
        line = json.dumps(data, sort_keys=True)
        print('doctor-faults %s' % line)
        self.addDetail('tally-%s' % tally.scenario,
                       testtools.content.text_content(line))
        with open(RESULTS, 'a') as f:
            f.write(line + '\n')
        self.tallies.append(tally)
        return tally


def sigkill(agent):
    """SIGKILL the agent's whole process group (master and workers)."""
    agent.kill(signal.SIGKILL)
    agent.proc.wait(30)
