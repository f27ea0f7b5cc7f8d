"""Start the real services of the fault path on this machine.

Used by the functional tests, the demo and the benchmark: a RabbitMQ vhost
of its own, an Aodh database of its own (created with ``aodh-dbsync``, and
doctor-ext's tables in it with ``doctor-ext-dbsync``),
``aodh-api`` in noauth mode, and ``ceilometer-agent-notification`` with
doctor-ext's plugins and the repository's etc/ceilometer files. Everything
started here is stopped by :meth:`Stack.stop`.
"""

import datetime
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

from oslo_config import cfg
import requests
import sqlalchemy as sa

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
# [doctor_notifier] egress_allow of the lab's agents: the consumer doubles
# listen on loopback, which the egress policy refuses by default.
LAB_EGRESS_ALLOW = '127.0.0.0/8'


class StackError(RuntimeError):
    """A service could not be started; the message says which and why."""


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, proc=None, log_path=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise StackError('%s exited with %s%s' % (
                what, proc.returncode, _tail(log_path)))
        time.sleep(0.05)
    raise StackError('timed out after %.0f s waiting for %s%s'
                     % (timeout, what, _tail(log_path)))


def _tail(path, lines=30):
    if not path or not os.path.exists(path):
        return ''
    with open(path, errors='replace') as f:
        return '\n--- last lines of %s ---\n%s' % (
            path, ''.join(f.readlines()[-lines:]))


def log_contains(path, text):
    try:
        with open(path, errors='replace') as f:
            return text in f.read()
    except FileNotFoundError:
        return False


def _write_ini(path, sections):
    with open(path, 'w') as f:
        for section, values in sections.items():
            f.write('[%s]\n' % section)
            for key, value in values.items():
                for v in (value if isinstance(value, list) else [value]):
                    f.write('%s = %s\n' % (key, v))
            f.write('\n')


class Broker:
    """A RabbitMQ vhost of our own on the local broker."""

    def __init__(self, base_url='rabbit://guest:guest@127.0.0.1:5672/',
                 vhost=None):
        self.base_url = base_url
        self.vhost = vhost
        self.created = False

    def start(self):
        if self.vhost is None:
            self.vhost = 'doctor-%s' % uuid.uuid4().hex[:10]
            self._ctl('add_vhost', self.vhost)
            self._ctl('set_permissions', '-p', self.vhost, 'guest', '.*',
                      '.*', '.*')
            self.created = True
        return self

    @property
    def url(self):
        if not self.vhost:
            return self.base_url
        return self.base_url.rstrip('/') + '/' + urllib.parse.quote(
            self.vhost, safe='')

    def _ctl(self, *args):
        try:
            subprocess.run(['rabbitmqctl', '-q'] + list(args), check=True,
                           capture_output=True, timeout=60)
        except FileNotFoundError:
            raise StackError('rabbitmqctl not found: is RabbitMQ installed '
                             'on this machine? Pass --transport-url to use '
                             'another broker')
        except subprocess.CalledProcessError as e:
            raise StackError('rabbitmqctl %s failed: %s' % (
                ' '.join(args), e.stderr.decode(errors='replace').strip()))

    def stop(self):
        if self.created:
            try:
                self._ctl('delete_vhost', self.vhost)
            except StackError:
                pass
            self.created = False

    def consumers(self, queue):
        """Consumers on ``queue`` (None if it does not exist yet)."""
        declared = self._declare(queue)
        return declared[2] if declared else None

    def ready(self, queue):
        """Messages waiting on ``queue`` (None if it does not exist yet)."""
        declared = self._declare(queue)
        return declared[1] if declared else None

    def _declare(self, queue):
        """(name, messages ready, consumers) of ``queue``, or None."""
        import kombu
        url = self.url.replace('rabbit://', 'amqp://', 1)
        try:
            with kombu.Connection(url, connect_timeout=2) as conn:
                ch = conn.channel()
                try:
                    return tuple(ch.queue_declare(queue=queue,
                                                  passive=True))
                finally:
                    try:
                        ch.close()
                    except Exception:
                        pass
        except Exception:
            return None


class Database:
    """An Aodh database of our own: SQLite, PostgreSQL or MariaDB."""

    def __init__(self, url=None, workdir=None):
        self.base_url = url
        self.workdir = workdir
        self.name = None
        self.url = None

    def start(self):
        if not self.base_url or self.base_url.startswith('sqlite'):
            self.url = self.base_url or 'sqlite:///%s' % os.path.join(
                self.workdir, 'aodh.sqlite')
            return self
        self.name = 'doctor_%s' % uuid.uuid4().hex[:10]
        admin = sa.create_engine(self._driver_url(self.base_url),
                                 isolation_level='AUTOCOMMIT')
        try:
            with admin.connect() as conn:
                conn.execute(sa.text('CREATE DATABASE %s' % self.name))
        except sa.exc.SQLAlchemyError as e:
            raise StackError('cannot create a database on %s: %s' % (
                sa.engine.make_url(self.base_url).render_as_string(
                    hide_password=True), str(e).splitlines()[0]))
        finally:
            admin.dispose()
        self.url = sa.engine.make_url(self.base_url).set(
            database=self.name).render_as_string(hide_password=False)
        return self

    def insert_alarms(self, rows, batch=5000):
        """Load alarms through Aodh's storage layer (its tables).

        Creating alarms through aodh-api slows as a project's alarms grow
        (its quota check loads them all); large sets for benchmarks are
        written here, as Aodh's storage would write them.
        """
        from aodh.storage.sqlalchemy import models
        engine = sa.create_engine(self._driver_url(self.url))
        try:
            with engine.begin() as conn:
                for i in range(0, len(rows), batch):
                    conn.execute(models.Alarm.__table__.insert(),
                                 rows[i:i + batch])
        finally:
            engine.dispose()

    @staticmethod
    def _driver_url(url):
        if url.startswith('mysql://'):
            return 'mysql+pymysql://' + url[len('mysql://'):]
        return url

    def stop(self):
        if not self.name:
            return
        admin = sa.create_engine(self._driver_url(self.base_url),
                                 isolation_level='AUTOCOMMIT')
        force = ' WITH (FORCE)' if self.base_url.startswith('postgres') \
            else ''
        try:
            with admin.connect() as conn:
                conn.execute(sa.text('DROP DATABASE IF EXISTS %s%s'
                                     % (self.name, force)))
        finally:
            admin.dispose()
        self.name = None


def doctor_rule(instance_id):
    """The event rule of an alarm as Doctor defines it."""
    return {'event_type': 'compute.instance.update',
            'query': [{'field': 'traits.state', 'op': 'eq',
                       'type': 'string', 'value': 'error'},
                      {'field': 'traits.instance_id', 'op': 'eq',
                       'type': 'string', 'value': instance_id}]}


def alarm_row(project_id, instance_id, action, alarm_id=None,
              repeat=False):
    """A row of Aodh's alarm table for a Doctor alarm."""
    now = datetime.datetime.utcnow()
    alarm_id = alarm_id or str(uuid.uuid4())
    return {'alarm_id': alarm_id, 'enabled': True,
            'name': 'doctor-%s' % instance_id, 'type': 'event',
            'severity': 'critical', 'description': '',
            'timestamp': now, 'user_id': 'user-' + project_id,
            'project_id': project_id, 'state': 'insufficient data',
            'state_reason': '', 'state_timestamp': now,
            'ok_actions': [], 'alarm_actions': [action],
            'insufficient_data_actions': [], 'repeat_actions': repeat,
            'rule': doctor_rule(instance_id), 'time_constraints': [],
            'evaluate_timestamp': now}


class Process:
    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, 'ab')
        self.proc = subprocess.Popen(argv, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGTERM):
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10):
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()


class Stack:
    """RabbitMQ vhost + Aodh DB + aodh-api + ceilometer-agent-notification.

    :param nova_credentials: keystoneauth ``password`` options of an admin
        user of the Nova double (``NovaDouble.credentials()``) or a cloud.
    :param agent_options: extra ``{section: {key: value}}`` for the agent.
    """

    def __init__(self, nova_credentials, transport_url=None, db_url=None,
                 workdir=None, agent_options=None, aodh_options=None,
                 event_pipeline=None, progress=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix='doctor-lab-')
        self._own_workdir = workdir is None
        self.broker = Broker(transport_url, vhost='') if transport_url \
            else Broker()
        self.db = Database(db_url, self.workdir)
        self.nova_credentials = dict(nova_credentials)
        self.agent_options = agent_options or {}
        self.aodh_options = aodh_options or {}
        self.event_pipeline = event_pipeline or os.path.join(
            REPO, 'etc', 'ceilometer', 'event_pipeline.yaml')
        self.event_definitions = os.path.join(
            REPO, 'etc', 'ceilometer', 'event_definitions.yaml')
        # Shared by the agents ([doctor_reports] secret) and the reporters
        # of :meth:`reporter` ([doctor_monitor] secret).
        self.report_secret = secrets.token_hex(16)
        self.aodh_url = None
        self.processes = []
        self.agents = []
        self._progress = progress or (lambda msg: None)

    # -- life cycle --------------------------------------------------------
    def start(self, agents=1):
        try:
            self._progress('creating RabbitMQ vhost')
            self.broker.start()
            self._progress('creating the Aodh database')
            self.db.start()
            self.start_aodh()
            for _ in range(agents):
                self.start_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for p in reversed(self.processes):
            p.stop()
        self.processes = []
        self.agents = []
        self.db.stop()
        self.broker.stop()

    def cleanup(self):
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- Aodh --------------------------------------------------------------
    @property
    def aodh_conf(self):
        return os.path.join(self.workdir, 'aodh.conf')

    def aodh_sections(self):
        return {
            'DEFAULT': {'transport_url': self.broker.url},
            'api': {'auth_mode': 'noauth'},
            'database': {'connection': self.db.url},
            'oslo_messaging_notifications': {'driver': 'messagingv2'},
        }

    def start_aodh(self):
        sections = self.aodh_sections()
        for section, values in self.aodh_options.items():
            sections.setdefault(section, {}).update(values)
        _write_ini(self.aodh_conf, sections)
        self._progress('creating the Aodh schema (aodh-dbsync)')
        res = subprocess.run([os.path.join(BIN, 'aodh-dbsync'),
                              '--config-file', self.aodh_conf],
                             capture_output=True, timeout=300)
        if res.returncode:
            raise StackError('aodh-dbsync failed: %s' % res.stderr.decode(
                errors='replace')[-2000:])
        self._progress("creating doctor-ext's tables (doctor-ext-dbsync)")
        from doctor_ext.db import migration
        migration.upgrade(self.db.url)
        port = free_port()
        self._progress('starting aodh-api on port %d' % port)
        proc = Process('aodh-api', [
            os.path.join(BIN, 'aodh-api'), '--port', str(port), '--host',
            '127.0.0.1', '--', '--config-file', self.aodh_conf,
            '--log-file', os.path.join(self.workdir, 'aodh-api.log')],
            os.path.join(self.workdir, 'aodh-api.out'))
        self.processes.append(proc)
        self.aodh_url = 'http://127.0.0.1:%d' % port

        def up():
            try:
                return requests.get(self.aodh_url, timeout=1).ok
            except requests.RequestException:
                return False
        wait_for(up, 60, 'aodh-api', proc.proc, proc.log_path)

    def start_aodh_service(self, name):
        """Start another Aodh service (aodh-listener, aodh-notifier...)."""
        self._progress('starting %s' % name)
        proc = Process(name, [os.path.join(BIN, name), '--config-file',
                              self.aodh_conf,
                              '--log-file', os.path.join(
                                  self.workdir, '%s.log' % name)],
                       os.path.join(self.workdir, '%s.out' % name))
        proc.log_file = os.path.join(self.workdir, '%s.log' % name)
        self.processes.append(proc)
        return proc

    # -- the notification agent ---------------------------------------------
    def agent_conf(self, name):
        return os.path.join(self.workdir, '%s.conf' % name)

    def agent_sections(self, log_file, name):
        """ceilometer.conf of an agent with doctor-ext."""
        return {
            'DEFAULT': {'transport_url': self.broker.url,
                        'log_file': log_file,
                        'event_pipeline_cfg_file': self.event_pipeline},
            'notification': {
                # Ceilometer's event pipeline, with notifications that
                # cannot be converted dropped instead of requeued for ever.
                'pipelines': 'doctor_event',
                'ack_on_event_error': 'False',
                'notification_control_exchanges': ['nova', 'doctor',
                                                   'aodh'],
            },
            'event': {'definitions_cfg_file': self.event_definitions},
            # Nova's versioned service.update comes on its own topic.
            'oslo_messaging_notifications': {
                'topics': 'notifications,versioned_notifications'},
            'doctor_evaluator': {'aodh_connection': self.db.url,
                                 'alarm_changes_pool':
                                     'doctor-ext-alarms.%s' % name,
                                 'timeline_log': 'True'},
            'doctor_nova': self.nova_credentials,
            'doctor_inspector': {'timeline_log': 'True'},
            # The monitor's reports are signed with the stack's secret.
            'doctor_reports': {'secret': self.report_secret},
            # Maintenance state files stay in the lab's work directory.
            'doctor_maintenance': {'state_dir': os.path.join(
                self.workdir, 'maintenance-%s' % name)},
            'doctor_notifier': {'egress_allow': LAB_EGRESS_ALLOW},
        }

    def start_agent(self, wait=True):
        # The lowest free number: a restarted agent takes the name, the
        # configuration and the log file of the one it replaces.
        used = {a.name for a in self.agents}
        name = next('ceilometer-%d' % i for i in range(len(used) + 1)
                    if 'ceilometer-%d' % i not in used)
        log_file = os.path.join(self.workdir, '%s.log' % name)
        sections = self.agent_sections(log_file, name)
        for section, values in self.agent_options.items():
            sections.setdefault(section, {}).update(values)
        path = self.agent_conf(name)
        _write_ini(path, sections)
        self._progress('starting %s' % name)
        proc = Process(name, [
            os.path.join(BIN, 'ceilometer-agent-notification'),
            '--config-file', path], os.path.join(self.workdir,
                                                 '%s.out' % name))
        proc.conf = path
        proc.log_file = log_file
        self.processes.append(proc)
        self.agents.append(proc)
        if wait:
            self.wait_agent(proc)
        return proc

    def reporter(self, secret=None):
        """A monitor's reporter on this stack's bus (close it when done).

        It signs with the stack's secret, or ``secret`` if given (``''``:
        unsigned).
        """
        from doctor_ext.monitor import report
        conf = cfg.ConfigOpts()
        conf([], project='doctor-monitor')
        report.register_opts(conf)
        report.register_transport_opts(conf)
        conf.set_override('transport_url', self.broker.url)
        conf.set_override('secret', self.report_secret if secret is None
                          else secret, report.GROUP)
        return report.Reporter(conf)

    def wait_agent(self, proc, timeout=90):
        """Ready: alarms loaded, instance map loaded, queues consumed."""
        wait_for(lambda: log_contains(proc.log_file, 'event alarm(s) from '
                                      'Aodh'),
                 timeout, '%s to load the alarms' % proc.name, proc.proc,
                 proc.log_file)
        wait_for(lambda: log_contains(proc.log_file, 'Instance map loaded'),
                 timeout, '%s to load the instance map' % proc.name,
                 proc.proc, proc.log_file)
        # Every agent of the stack consumes the shared queues: with one
        # consumer already there, the new agent is ready once the count
        # reaches the number of agents.
        agents = len(self.agents)
        for queue in ('notifications.info', 'notifications.error',
                      'versioned_notifications.info'):
            wait_for(lambda: (self.broker.consumers(queue) or 0) >= agents,
                     timeout, '%s to consume %s' % (proc.name, queue),
                     proc.proc, proc.log_file)

    def restart_agent(self, proc, sig=signal.SIGTERM):
        proc.kill(sig)
        proc.proc.wait(30)
        self.processes.remove(proc)
        self.agents.remove(proc)
        return self.start_agent()

    # -- Aodh API helpers (as users do) ---------------------------------------
    def aodh(self, method, path, project, json=None, user='user',
             roles='reader,member'):
        headers = {'X-Project-Id': project, 'X-User-Id': user,
                   'X-Roles': roles}
        resp = requests.request(method, self.aodh_url + path, json=json,
                                headers=headers, timeout=30)
        if resp.status_code >= 400:
            raise StackError('%s %s -> %s %s' % (method, path,
                                                 resp.status_code,
                                                 resp.text[:500]))
        return resp.json() if resp.content else None

    def create_doctor_alarm(self, project, instance_id, action, name=None,
                            repeat=False):
        """An alarm defined as Doctor defines it."""
        return self.aodh('POST', '/v2/alarms', project, {
            'name': name or 'doctor-%s' % instance_id,
            'type': 'event',
            'severity': 'critical',
            'repeat_actions': repeat,
            'alarm_actions': [action],
            'event_rule': doctor_rule(instance_id),
        })
