"""Real Keystone, Placement and Nova on this machine, for a test suite.

:class:`RealCloud` starts, from the venv of :mod:`tests.realnova.install`:

* a RabbitMQ vhost of its own (Nova's RPC and its notifications) and five
  MariaDB databases of its own (Keystone, Placement, Nova API, cell0, cell1);
* Keystone, Placement and nova-api under gunicorn, on free loopback ports
  (``sys.argv`` is reset before the WSGI module is imported, or the services
  read gunicorn's own arguments as theirs; keep-alive raised so that polling
  clients keep their connections);
* nova-conductor, nova-scheduler and one nova-compute per host with
  ``fake.FakeDriverWithoutFakeNodes`` (a stable node per host, so a
  restarted compute starts again) and its own ``state_path``;
* the Glance and Neutron stubs of :mod:`tests.realnova.stubs`;
* a TCP proxy in front of nova-api (:class:`tests.proxy.TcpProxy`): the
  catalog's compute endpoint is the proxy, so a test can slow or refuse Nova
  for doctor-ext while the test itself talks to nova-api directly.

Nova is configured as doc/source/install.rst tells an operator (legacy and
versioned notifications, ``notify_on_state_change = vm_state``, and the
guide's policy rules for the agent's own ``doctor`` role, read from the
guide itself; Keystone has that role's ``doctor`` user in a ``doctor``
project, and a ``doctor-member`` user of that project without it). The catalog
(identity, compute, placement, image, network; region ``RegionOne``) is what
doctor-ext reaches through keystoneauth with :meth:`RealCloud.credentials`.

A cold start takes 70-100 s, so a suite starts one cloud (:func:`shared`)
and stops it when its process exits; everything started here runs with a
parent-death signal, so nothing outlives a killed test runner.
"""

import atexit
import concurrent.futures
import ctypes
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid

from keystoneauth1 import adapter
from keystoneauth1.identity import v3
from keystoneauth1 import session as ks_session
import sqlalchemy as sa
import yaml

from doctor_ext_lab import services
from tests import proxy
from tests.realnova import install
from tests.realnova import stubs

MYSQL = os.environ.get('DOCTOR_TEST_MYSQL_ADMIN',
                       'mysql+pymysql://root@127.0.0.1')
REGION = 'RegionOne'
HOSTS = ('compute-1', 'compute-2', 'compute-3')
API_HOST = 'controller'
PROJECTS = ('project-a', 'project-b', 'project-c')
FLAVOR = 'doctor.tiny'
MICROVERSION = '2.95'
START_TIMEOUT = 300
# The agent's own Nova user, role and project (doc/source/install.rst).
DOCTOR = 'doctor'
# A user of the same project without that role: what Nova refuses.
MEMBER = 'doctor-member'
INSTALL_GUIDE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                             'doc', 'source', 'install.rst')
POLICY_BLOCK = re.compile(
    r"these\s+rules\s+in\s+Nova's\s+``policy.yaml``")

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child: SIGTERM when the process that started it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG,
                                                signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    os.setsid()


def _ini(path, sections):
    services._write_ini(path, sections)
    return path


def install_guide_nova_policy(path=INSTALL_GUIDE):
    """The install guide's Nova policy rules, as pasted: ``{rule: check}``.

    They are the literal block of the paragraph that matches
    :data:`POLICY_BLOCK`; the cloud's nova-api runs with exactly these.
    """
    with open(path) as f:
        text = f.read()
    found = POLICY_BLOCK.search(text)
    if not found:
        raise CloudError('no Nova policy paragraph in %s' % path)
    start = text.index('::\n', found.end()) + 3
    lines = []
    for line in text[start:].splitlines():
        if line.strip() and not line.startswith('     '):
            break
        lines.append(line)
    rules = yaml.safe_load(textwrap.dedent('\n'.join(lines)))
    if not rules:
        raise CloudError('no Nova policy rules found in %s' % path)
    return rules


class CloudError(services.StackError):
    """The cloud could not start; the message names the step and its log."""


class Proc:
    """A service process with its log, stopped by its process group."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, 'ab')
        self.proc = subprocess.Popen(argv, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15):
        if self.alive():
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()


class RealCloud:
    """Keystone, Placement, Nova and their stubs; see the module doc."""

    def __init__(self, hosts=HOSTS, projects=PROJECTS, workdir=None,
                 progress=None):
        self.hosts = tuple(hosts)
        self.projects = tuple(projects)
        self.workdir = workdir or tempfile.mkdtemp(prefix='doctor-realnova-')
        self._progress = progress or (lambda msg: None)
        self.venv = None
        self.tag = uuid.uuid4().hex[:8]
        self.password = uuid.uuid4().hex
        self.broker = services.Broker()
        self.databases = {}
        self.processes = []
        self.glance = self.neutron = self.proxy = None
        self.ports = {}
        self.computes = {}
        self.project_ids = {}
        self._sessions = {}
        self._lock = threading.Lock()
        self.flavor_id = None

    # -- paths and URLs -------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def url(self, service):
        return 'http://127.0.0.1:%d' % self.ports[service]

    @property
    def auth_url(self):
        return self.url('keystone') + '/v3'

    @property
    def compute_url(self):
        """nova-api itself (the tests' own calls), not the proxy."""
        return self.url('nova') + '/v2.1'

    def credentials(self, project='admin', user='admin'):
        """keystoneauth ``password`` options of the cloud's admin.

        ``user=DOCTOR`` (with ``project=DOCTOR``) gives the user of the
        install guide's Nova role instead, ``MEMBER`` a user of that
        project without the role.
        """
        return {'auth_type': 'password', 'auth_url': self.auth_url,
                'username': user, 'password': self.password,
                'project_name': project, 'user_domain_name': 'Default',
                'project_domain_name': 'Default', 'region_name': REGION}

    # -- life cycle -----------------------------------------------------------
    def start(self):
        started = time.monotonic()
        try:
            self.venv = install.ensure(progress=self._progress)
            self._start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        self._progress('real Nova ready in %.0f s' % self.start_seconds)
        return self

    def _start(self):
        self._progress('creating the RabbitMQ vhost and the databases')
        self.broker.start()
        # Nova's notification queues fill up while no agent reads them.
        self.broker._ctl(
            'set_policy', '-p', self.broker.vhost,
            'doctor-notifications-bound', r'^(versioned_)?notifications\.',
            '{"max-length": 10000}', '--apply-to', 'queues')
        for name in ('keystone', 'placement', 'nova_api', 'nova',
                     'nova_cell0'):
            self._create_database(name)
        for name in ('keystone', 'placement', 'nova', 'glance', 'neutron'):
            self.ports[name] = services.free_port()
        self.glance = stubs.Glance().start()
        self.neutron = stubs.Neutron().start()
        self.ports['glance'] = self.glance.port
        self.ports['neutron'] = self.neutron.port
        self.proxy = proxy.TcpProxy('127.0.0.1', self.ports['nova'])
        self._write_configs()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            steps = [pool.submit(self._keystone_setup),
                     pool.submit(self._nova_db_setup),
                     pool.submit(self._manage, 'placement-manage',
                                 '--config-file', self.path(
                                     'placement', 'placement.conf'),
                                 'db', 'sync')]
            for step in steps:
                step.result()
        self._start_keystone()
        self._register()
        self._start_wsgi('placement', 'placement.wsgi.api',
                         {'OS_PLACEMENT_CONFIG_DIR': self.path('placement')})
        self._start_wsgi('nova', 'nova.wsgi.osapi_compute', {
            'OS_NOVA_CONFIG_DIR': self.path('nova'),
            'OS_NOVA_CONFIG_FILES': 'api-paste.ini;nova.conf;nova-api.conf'})
        for binary in ('nova-conductor', 'nova-scheduler'):
            self._start_service(binary, API_HOST)
        for host in self.hosts:
            self._start_service('nova-compute', host)
        self._wait_for_computes()
        self._make_flavor()

    def stop(self):
        for p in reversed(self.processes):
            p.stop()
        self.processes = []
        for stub in (self.glance, self.neutron, self.proxy):
            if stub is not None:
                stub.stop()
        self.glance = self.neutron = self.proxy = None
        for name in list(self.databases):
            self._drop_database(name)
        self.broker.stop()
        if os.environ.get('DOCTOR_REALNOVA_KEEP'):
            self._progress('real Nova\'s files kept in %s' % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- databases ------------------------------------------------------------
    def _admin_engine(self):
        return sa.create_engine(MYSQL + '/', isolation_level='AUTOCOMMIT')

    def _create_database(self, name):
        # nova-manage finds cell0 as "<cell1 database>_cell0".
        db = 'drn_%s_%s' % (self.tag, name)
        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(sa.text('CREATE DATABASE %s' % db))
        except sa.exc.SQLAlchemyError as e:
            raise CloudError('cannot create database %s on %s: %s' % (
                db, MYSQL, str(e).splitlines()[0]))
        finally:
            engine.dispose()
        self.databases[name] = '%s/%s?charset=utf8' % (MYSQL, db)

    def _drop_database(self, name):
        db = 'drn_%s_%s' % (self.tag, name)
        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(sa.text('DROP DATABASE IF EXISTS %s' % db))
        except sa.exc.SQLAlchemyError:
            pass
        finally:
            engine.dispose()
        self.databases.pop(name, None)

    # -- configuration --------------------------------------------------------
    def _authtoken(self, user):
        return {'www_authenticate_uri': self.auth_url,
                'auth_url': self.auth_url, 'auth_type': 'password',
                'project_domain_name': 'Default',
                'user_domain_name': 'Default', 'project_name': 'service',
                'username': user, 'password': self.password,
                'region_name': REGION}

    def _write_configs(self):
        for d in ('keystone', 'placement', 'nova', 'fernet', 'credential',
                  'locks'):
            os.makedirs(self.path(d), exist_ok=True)
        _ini(self.path('keystone', 'keystone.conf'), {
            'DEFAULT': {'log_file': self.path('keystone.log')},
            'database': {'connection': self.databases['keystone']},
            'token': {'provider': 'fernet'},
            'fernet_tokens': {'key_repository': self.path('fernet')},
            'fernet_receipts': {'key_repository': self.path('fernet')},
            'credential': {'key_repository': self.path('credential')},
            # Hashing passwords is the slowest part of a token: as few
            # rounds as Keystone allows (test users only).
            'identity': {'password_hash_rounds': '4'},
        })
        _ini(self.path('placement', 'placement.conf'), {
            'DEFAULT': {'log_file': self.path('placement.log')},
            'placement_database': {
                'connection': self.databases['placement']},
            'api': {'auth_strategy': 'keystone'},
            'keystone_authtoken': self._authtoken('placement'),
        })
        service_auth = {k: v for k, v in self._authtoken('nova').items()
                        if k != 'www_authenticate_uri'}
        _ini(self.path('nova', 'nova.conf'), {
            'DEFAULT': {
                'transport_url': self.broker.url,
                'compute_driver': 'fake.FakeDriverWithoutFakeNodes',
                'state_path': self.path('nova'),
                'my_ip': '127.0.0.1',
                'host': API_HOST,
                'heal_instance_info_cache_interval': '-1',
            },
            'api': {'auth_strategy': 'keystone'},
            'api_database': {'connection': self.databases['nova_api']},
            'database': {'connection': self.databases['nova']},
            'keystone_authtoken': self._authtoken('nova'),
            'placement': service_auth,
            'neutron': service_auth,
            'glance': {'region_name': REGION},
            'oslo_concurrency': {'lock_path': self.path('locks')},
            # One process each: forked workers share the parent's open
            # connection to Placement, and their answers cross.
            'scheduler': {'discover_hosts_in_cells_interval': '-1',
                          'workers': '1'},
            'conductor': {'workers': '1'},
            'quota': {'instances': '-1', 'cores': '-1', 'ram': '-1'},
            # What doc/source/install.rst asks of an operator.
            'oslo_messaging_notifications': {'driver': 'messagingv2'},
            'notifications': {'notify_on_state_change': 'vm_state',
                              'notification_format': 'both'},
            'vnc': {'enabled': 'False'},
            # The install guide's rules for the agent's own role.
            'oslo_policy': {'policy_file': self.path('nova', 'policy.yaml')},
        })
        with open(self.path('nova', 'policy.yaml'), 'w') as f:
            yaml.safe_dump(install_guide_nova_policy(), f)
        # nova-api reads its paste pipeline from its first config file.
        shutil.copy(os.path.join(self.venv, 'etc', 'nova', 'api-paste.ini'),
                    self.path('nova', 'api-paste.ini'))
        _ini(self.path('nova', 'nova-api.conf'), {
            'DEFAULT': {'log_file': self.path('nova-api.log')}})

    # -- steps ----------------------------------------------------------------
    def _manage(self, tool, *args):
        log = self.path('%s.out' % tool)
        with open(log, 'ab') as out:
            res = subprocess.run([install.bin_path(tool, self.venv)] +
                                 list(args), stdout=out,
                                 stderr=subprocess.STDOUT, timeout=300)
        if res.returncode:
            raise CloudError('%s %s failed (%s)%s' % (
                tool, ' '.join(a for a in args if '://' not in a),
                res.returncode, services._tail(log)))

    def _keystone_setup(self):
        conf = ['--config-file', self.path('keystone', 'keystone.conf')]
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        self._manage('keystone-manage', *conf, 'db_sync')
        self._manage('keystone-manage', *conf, 'fernet_setup',
                     '--keystone-user', user, '--keystone-group', group)
        self._manage('keystone-manage', *conf, 'credential_setup',
                     '--keystone-user', user, '--keystone-group', group)
        url = self.auth_url
        self._manage('keystone-manage', *conf, 'bootstrap',
                     '--bootstrap-password', self.password,
                     '--bootstrap-admin-url', url,
                     '--bootstrap-internal-url', url,
                     '--bootstrap-public-url', url,
                     '--bootstrap-region-id', REGION)

    def _nova_db_setup(self):
        conf = ['--config-file', self.path('nova', 'nova.conf')]
        self._manage('nova-manage', *conf, 'api_db', 'sync')
        self._manage('nova-manage', *conf, 'cell_v2', 'map_cell0')
        self._manage('nova-manage', *conf, 'cell_v2', 'create_cell',
                     '--name', 'cell1')
        self._manage('nova-manage', *conf, 'db', 'sync')

    def _start_wsgi(self, name, module, env):
        wrapper = self.path('wsgi_%s.py' % name)
        with open(wrapper, 'w') as f:
            f.write('import sys\n'
                    '# The service must not read gunicorn\'s arguments.\n'
                    'sys.argv = sys.argv[:1]\n'
                    'from %s import application  # noqa\n' % module)
        self._progress('starting %s on port %d' % (name, self.ports[name]))
        proc = Proc(name, [
            install.bin_path('gunicorn', self.venv), '--pythonpath',
            self.workdir, '--bind', '127.0.0.1:%d' % self.ports[name],
            '--workers', '1', '--threads', '8', '--keep-alive', '300',
            '--timeout', '300', 'wsgi_%s:application' % name],
            self.path('%s.out' % name), env=dict(os.environ, **env))
        self.processes.append(proc)
        return proc

    def _start_service(self, binary, host):
        conf = self.path('nova', '%s-%s.conf' % (binary, host))
        state = self.path('state-%s' % host)
        os.makedirs(state, exist_ok=True)
        _ini(conf, {'DEFAULT': {
            'host': host, 'state_path': state,
            'instances_path': os.path.join(state, 'instances'),
            'log_file': self.path('%s-%s.log' % (binary, host))}})
        self._progress('starting %s on %s' % (binary, host))
        proc = Proc('%s-%s' % (binary, host), [
            install.bin_path(binary, self.venv),
            '--config-file', self.path('nova', 'nova.conf'),
            '--config-file', conf], self.path('%s-%s.out' % (binary, host)))
        self.processes.append(proc)
        if binary == 'nova-compute':
            self.computes[host] = proc
        return proc

    def _start_keystone(self):
        proc = self._start_wsgi('keystone', 'keystone.wsgi.api', {
            'OS_KEYSTONE_CONFIG_FILES': self.path('keystone',
                                                  'keystone.conf')})
        # The first token checks right after start can get a spurious 403:
        # one token, used once, before anything else relies on Keystone.
        deadline = time.monotonic() + START_TIMEOUT

        def warm():
            try:
                sess = self._new_session('admin')
                token = sess.get_token()
                resp = sess.get(self.auth_url + '/auth/tokens', headers={
                    'X-Subject-Token': token}, raise_exc=False)
                return resp.status_code == 200
            except Exception:
                return False
        services.wait_for(warm, deadline - time.monotonic(), 'Keystone',
                          proc.proc, self.path('keystone.log'))

    # -- Keystone contents ----------------------------------------------------
    def _new_session(self, project, user='admin'):
        auth = v3.Password(auth_url=self.auth_url, username=user,
                           password=self.password, project_name=project,
                           user_domain_name='Default',
                           project_domain_name='Default')
        return ks_session.Session(auth=auth)

    def session(self, project='admin', user='admin'):
        with self._lock:
            if (project, user) not in self._sessions:
                self._sessions[project, user] = self._new_session(project,
                                                                  user)
            return self._sessions[project, user]

    def keystone(self, method, path, json=None, ok=(200, 201, 204)):
        resp = self.session().request(self.auth_url + path, method,
                                      json=json, raise_exc=False)
        if resp.status_code not in ok:
            raise CloudError('Keystone %s %s -> %s %s' % (
                method, path, resp.status_code, resp.text[:300]))
        return resp.json() if resp.content else None

    def _find_or_create(self, kind, name, body):
        found = self.keystone('GET', '/%ss?name=%s' % (kind, name))[kind + 's']
        if found:
            return found[0]['id']
        return self.keystone('POST', '/%ss' % kind, {kind: body})[kind]['id']

    def _register(self):
        self._progress('registering users, projects and the catalog')
        role = {r: self._find_or_create('role', r, {'name': r})
                for r in ('admin', 'service', 'member', 'reader', DOCTOR)}
        service_project = self._find_or_create(
            'project', 'service', {'name': 'service',
                                   'domain_id': 'default'})
        admin = self.keystone('GET', '/users?name=admin')['users'][0]['id']
        self.project_ids['admin'] = self.keystone(
            'GET', '/projects?name=admin')['projects'][0]['id']
        for name in ('nova', 'placement'):
            uid = self._find_or_create('user', name, {
                'name': name, 'password': self.password,
                'domain_id': 'default'})
            for r in ('admin', 'service'):
                self.keystone('PUT', '/projects/%s/users/%s/roles/%s' % (
                    service_project, uid, role[r]))
        # The admin creates the servers of every project on the host the
        # test asks for (an admin-only placement), so it is an admin of
        # each project.
        for name in self.projects:
            pid = self._find_or_create('project', name, {
                'name': name, 'domain_id': 'default'})
            self.project_ids[name] = pid
            self.keystone('PUT', '/projects/%s/users/%s/roles/%s' % (
                pid, admin, role['admin']))
        # The agent's own user, as the install guide has it: a role of its
        # own in a project of its own; and a user of that project without
        # the role.
        doctor = self._find_or_create('project', DOCTOR, {
            'name': DOCTOR, 'domain_id': 'default'})
        self.project_ids[DOCTOR] = doctor
        for name, r in ((DOCTOR, DOCTOR), (MEMBER, 'member')):
            uid = self._find_or_create('user', name, {
                'name': name, 'password': self.password,
                'domain_id': 'default'})
            self.keystone('PUT', '/projects/%s/users/%s/roles/%s' % (
                doctor, uid, role[r]))
        endpoints = {
            'compute': ('nova', 'http://127.0.0.1:%d/v2.1' % self.proxy.port),
            'placement': ('placement', self.url('placement')),
            'image': ('glance', self.glance.url),
            'network': ('neutron', self.neutron.url),
        }
        for stype, (name, url) in endpoints.items():
            sid = self.keystone('POST', '/services', {'service': {
                'type': stype, 'name': name}})['service']['id']
            for interface in ('public', 'internal', 'admin'):
                self.keystone('POST', '/endpoints', {'endpoint': {
                    'service_id': sid, 'interface': interface,
                    'region_id': REGION, 'url': url}})

    # -- Nova -----------------------------------------------------------------
    def nova(self, method, path, json=None, project='admin',
             microversion=MICROVERSION, ok=(200, 201, 202, 204),
             user='admin'):
        """A call to nova-api itself, as ``user`` scoped to ``project``."""
        resp = adapter.Adapter(
            self.session(project, user), endpoint_override=self.compute_url,
            service_type='compute').request(
            path, method, json=json, raise_exc=False, headers={
                'OpenStack-API-Version': 'compute %s' % microversion})
        if resp.status_code not in ok:
            raise CloudError('Nova %s %s -> %s %s' % (
                method, path, resp.status_code, resp.text[:300]))
        return resp.json() if resp.content else None

    def _wait_for_computes(self):
        self._progress('waiting for %d computes in Nova and Placement'
                       % len(self.hosts))
        deadline = time.monotonic() + START_TIMEOUT
        api = next(p for p in self.processes if p.name == 'nova')

        def api_up():
            try:
                self.nova('GET', '/os-services')
                return True
            except Exception:
                return False
        services.wait_for(api_up, deadline - time.monotonic(), 'nova-api',
                          api.proc, self.path('nova-api.log'))

        def computes_up():
            for p in self.processes:
                if not p.alive():
                    raise CloudError('%s exited with %s%s' % (
                        p.name, p.proc.returncode, services._tail(
                            p.log_path)))
            svcs = self.nova('GET', '/os-services?binary=nova-compute')
            up = {s['host'] for s in svcs['services'] if s['state'] == 'up'}
            return up >= set(self.hosts)
        services.wait_for(computes_up, deadline - time.monotonic(),
                          'the nova-compute services up')

        def providers():
            resp = self.session().get(
                self.url('placement') + '/resource_providers',
                raise_exc=False)
            return resp.ok and len(resp.json()['resource_providers']) >= len(
                self.hosts)
        services.wait_for(providers, deadline - time.monotonic(),
                          'the resource providers of the computes')
        self._manage('nova-manage', '--config-file',
                     self.path('nova', 'nova.conf'), 'cell_v2',
                     'discover_hosts')

    def _make_flavor(self):
        flavors = self.nova('GET', '/flavors')['flavors']
        for f in flavors:
            if f['name'] == FLAVOR:
                self.flavor_id = f['id']
                return
        self.flavor_id = self.nova('POST', '/flavors', {'flavor': {
            'name': FLAVOR, 'ram': 64, 'vcpus': 1, 'disk': 0}})['flavor']['id']

    def create_servers(self, placement, timeout=START_TIMEOUT):
        """Servers ``{(host, project, name), ...}``; ``{id: (project, host)}``.

        Each is created by its project on the host asked for (the admin's
        ``nova:<host>`` zone), with no network; returns once all are
        ACTIVE.
        """
        created = {}
        for host, project, name in placement:
            body = {'server': {
                'name': name, 'flavorRef': self.flavor_id,
                'imageRef': stubs.IMAGE_ID, 'networks': 'none',
                'availability_zone': 'nova:%s' % host}}
            server = self.nova('POST', '/servers', body, project=project)
            created[server['server']['id']] = (project, host)

        def built():
            states = {s['id']: s for s in self.servers()}
            failed = [i for i in created
                      if states.get(i, {}).get('status') == 'ERROR']
            if failed:
                raise CloudError('servers in ERROR at build: %s (see %s)'
                                 % (failed, self.workdir))
            return all(states.get(i, {}).get('status') == 'ACTIVE'
                       for i in created)
        services.wait_for(built, timeout, '%d servers ACTIVE' % len(created))
        return created

    def servers(self, host=None):
        """Every server (all projects), or those of ``host``."""
        path = '/servers/detail?all_tenants=1'
        if host:
            path += '&host=%s' % host
        return self.nova('GET', path)['servers']

    def server(self, server_id):
        return self.nova('GET', '/servers/%s' % server_id)['server']

    def service(self, host, binary='nova-compute'):
        found = self.nova('GET', '/os-services?binary=%s&host=%s' % (
            binary, host))['services']
        return found[0] if found else None

    def set_service(self, host, **fields):
        svc = self.service(host)
        return self.nova('PUT', '/os-services/%s' % svc['id'],
                         fields)['service']

    def reset_state(self, server_id, state='active'):
        self.nova('POST', '/servers/%s/action' % server_id,
                  {'os-resetState': {'state': state}})

    def restore(self, host):
        """Undo a test's fencing of ``host``: back up, servers ACTIVE."""
        svc = self.service(host)
        if svc['forced_down'] or svc['status'] != 'enabled':
            self.set_service(host, forced_down=False, status='enabled')
        for s in self.servers(host):
            if s['status'] != 'ACTIVE':
                self.reset_state(s['id'], 'active')


_SHARED = []
_SHARED_LOCK = threading.Lock()


def shared(progress=None):
    """The suite's cloud: started on first use, stopped at exit."""
    with _SHARED_LOCK:
        if not _SHARED:
            cloud = RealCloud(progress=progress)
            cloud.start()
            atexit.register(cloud.stop)
            _SHARED.append(cloud)
        return _SHARED[0]
