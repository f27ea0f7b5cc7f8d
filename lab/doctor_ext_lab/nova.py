"""A Nova compute API double, with a Keystone v3 front, over real HTTP.

Nova cannot run on the test machines, so unit tests, functional tests, the
demo and the benchmark talk to this double instead. It serves, on
``127.0.0.1`` and an ephemeral port, the part of the compute API (and of
Keystone v3) that the inspector uses, following the API reference:

* Keystone v3: ``GET /identity``, ``GET /identity/v3`` (version discovery),
  ``POST /identity/v3/auth/tokens`` (password method, user and project by
  name or id; the answer carries ``X-Subject-Token`` and a token with roles
  and a catalog whose ``compute`` endpoint is ``<base>/compute/v2.1`` for the
  public, internal and admin interfaces of region ``RegionOne``) and
  ``GET /identity/v3/auth/tokens`` (validation).
* Nova: ``GET /compute/`` and ``GET /compute/v2.1/`` version documents
  (``min_version`` 2.1, ``version`` = the configured maximum); microversions
  from ``OpenStack-API-Version: compute X.Y`` or
  ``X-OpenStack-Nova-API-Version`` (both echoed in the answer, ``latest``
  accepted, 2.1 when absent, 406 above the maximum, 400 when malformed);
  ``os-services`` (list, the 2.53+ update by uuid, and the older
  ``enable``/``disable``/``disable-log-reason``/``force-down`` actions);
  ``servers``, ``servers/detail`` (``all_tenants``, ``host``, ``status``,
  ``name``, ``tenant_id``, ``limit``/``marker`` with ``servers_links``),
  ``servers/{id}``, ``DELETE servers/{id}`` and the actions ``os-resetState``,
  ``os-migrateLive`` and ``migrate``.
* Policy as Nova's defaults: no or unknown token -> 401; services, reset
  state, migrations and ``all_tenants`` need the admin role (403); a project
  member sees only its project's servers (others are 404) and, as the API
  reference says, admin-only filters such as ``host`` are ignored for it.

Where the double is simpler than Nova it says so: moves are synchronous
(``migrate`` ends ACTIVE on the new host, as if auto-confirmed), and the
default sort is Nova's (newest first).

Fault injection, settable while the server runs: latency
(:meth:`NovaDouble.set_latency`), error statuses (:meth:`NovaDouble.fail`),
dropped connections (:meth:`NovaDouble.disconnect`), held requests
(:meth:`NovaDouble.hang` / :meth:`NovaDouble.release`) and token revocation
(:meth:`NovaDouble.revoke_tokens`). Every request is logged in
:attr:`NovaDouble.calls`.

Given an oslo.messaging transport URL the double emits what Nova emits with
``notify_on_state_change`` and ``notification_format=both``: legacy
``compute.instance.update`` (and ``compute.instance.delete.start/end``) on
exchange ``nova``, topic ``notifications``, and versioned ``service.update``
on topic ``versioned_notifications``. Every notification is also kept in
:attr:`NovaDouble.notifications`, with or without a transport.

Typical use in a test::

    nova = self.useFixture(nova_double.NovaDoubleFixture()).nova
    nova.add_host('compute-1')
    server_id = nova.add_server('compute-1', project_id='p1')
    nova.configure(conf, group='doctor_nova')
"""

import dataclasses
import datetime
import hashlib
import http.server
import itertools
import json
import logging
import queue
import re
import socket
import threading
import time
import urllib.parse
import uuid

import fixtures
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
import oslo_messaging
from oslo_messaging import opts as messaging_opts
from oslo_utils import strutils
from oslo_utils import uuidutils

LOG = logging.getLogger(__name__)

LOOPBACK = '127.0.0.1'
MIN_VERSION = '2.1'
DEFAULT_MAX_VERSION = '2.95'
REGION = 'RegionOne'
NOVA_COMPUTE = 'nova-compute'
DEFAULT_ZONE = 'nova'
# Nova's [api] max_limit: the largest page of a list.
DEFAULT_MAX_LIMIT = 1000

# Paths the fault knobs act on when no path_regex is given: every compute
# API call, not the version documents nor Keystone.
API_PATHS = r'^/compute/v2\.1/.+'

COMPUTE_VERSION_HEADER = 'OpenStack-API-Version'
LEGACY_VERSION_HEADER = 'X-OpenStack-Nova-API-Version'

# Where Nova's microversions changed what this double serves.
_V_FORCED_DOWN = (2, 11)
_V_HOST_STATUS = (2, 16)
_V_DESCRIPTION = (2, 19)
_V_TAGS = (2, 26)
_V_FLAVOR_DICT = (2, 47)
_V_SERVICE_UUID = (2, 53)
_V_MIGRATE_HOST = (2, 56)
_V_LOCKED = (2, 9)

_FAULT_NAMES = {
    400: 'badRequest', 401: 'unauthorized', 403: 'forbidden',
    404: 'itemNotFound', 405: 'badMethod', 409: 'conflictingRequest',
    413: 'overLimit', 415: 'badMediaType', 429: 'overLimit',
    501: 'notImplemented', 503: 'serviceUnavailable',
}
_KEYSTONE_TITLES = {
    400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
    404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error',
    503: 'Service Unavailable',
}
_STATUS_OF_VM_STATE = {
    'active': 'ACTIVE', 'building': 'BUILD', 'stopped': 'SHUTOFF',
    'paused': 'PAUSED', 'suspended': 'SUSPENDED', 'error': 'ERROR',
    'resized': 'VERIFY_RESIZE', 'shelved_offloaded': 'SHELVED_OFFLOADED',
    'deleted': 'DELETED',
}
_POWER_STATE_OF_VM_STATE = {'active': 1, 'paused': 3, 'stopped': 4}


@dataclasses.dataclass(frozen=True)
class User:
    """A Keystone user of the double: one project, a set of roles."""

    name: str
    password: str
    project_name: str
    roles: tuple = ('member', 'reader')
    user_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    project_id: str = dataclasses.field(
        default_factory=lambda: uuid.uuid4().hex)
    domain_id: str = 'default'
    domain_name: str = 'Default'

    @property
    def is_admin(self):
        return 'admin' in self.roles


@dataclasses.dataclass(frozen=True)
class Call:
    """One request the double answered (or dropped: status 0).

    Fields read as attributes or as keys (``call.path``, ``call['path']``,
    ``call.get('body')``).
    """

    method: str
    path: str
    query: str
    microversion: str  # the compute microversion served, None elsewhere
    time: float        # time.time() when the request arrived
    duration: float    # seconds until the answer was ready
    status: int
    user: str          # the token's user name, None if unauthenticated
    body: str = None   # the request body; None for Keystone (passwords)

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key)

    def get(self, key, default=None):
        return getattr(self, key, default)


def _version_tuple(text):
    major, minor = text.split('.')
    return int(major), int(minor)


def _version_text(version):
    return '%d.%d' % version


def _isotime(when=None, micro=False):
    when = when or datetime.datetime.now(datetime.timezone.utc)
    if micro:
        return when.strftime('%Y-%m-%dT%H:%M:%S.%f')
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class _HttpError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclasses.dataclass
class _Request:
    method: str
    path: str
    raw_query: str
    query: dict
    headers: object
    body: bytes
    microversion: str = None
    user: User = None

    def param(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def json(self):
        if not self.body:
            raise _HttpError(400, 'Malformed request body')
        try:
            return json.loads(self.body)
        except ValueError:
            raise _HttpError(400, 'Malformed request body')


@dataclasses.dataclass
class _Response:
    status: int
    body: object = None  # a JSON-able object, bytes or None
    headers: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Rule:
    regex: object
    method: str

    def matches(self, req):
        return ((self.method is None or self.method == req.method) and
                self.regex.search(req.path) is not None)


@dataclasses.dataclass
class _FailRule(_Rule):
    status: int = 500
    remaining: int = None  # None: every matching call
    drop: bool = False


@dataclasses.dataclass
class _HangRule(_Rule):
    event: threading.Event = dataclasses.field(
        default_factory=threading.Event)


@dataclasses.dataclass
class _LatencyRule(_Rule):
    seconds: float = 0.0


def _compile(path_regex):
    return re.compile(API_PATHS if path_regex is None else path_regex)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'nova-double/1.0'
    disable_nagle_algorithm = True
    # An idle keep-alive connection is closed after this many seconds.
    timeout = 120

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format, *args):
        # Every request is in NovaDouble.calls; keep the test logs quiet.
        pass

    def _dispatch(self):
        double = self.server.double
        arrived = time.time()
        started = time.monotonic()
        split = urllib.parse.urlsplit(self.path)
        try:
            length = int(self.headers.get('Content-Length') or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b''
        req = _Request(
            method=self.command, path=split.path, raw_query=split.query,
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            headers=self.headers, body=body)
        response = double._handle(req)
        # Logged before the answer leaves: whoever got it sees it logged.
        double._record(Call(
            method=req.method, path=req.path, query=req.raw_query,
            microversion=req.microversion, time=arrived,
            duration=time.monotonic() - started,
            status=0 if response is None else response.status,
            user=req.user.name if req.user else None,
            body=None if req.path.startswith('/identity') or not body
            else body.decode('utf-8', 'replace')))
        if response is None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            self._write(response)

    def _write(self, response):
        body = response.body
        headers = dict(response.headers)
        if body is None:
            data = b''
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode('utf-8')
            headers.setdefault('Content-Type', 'application/json')
        try:
            self.send_response(response.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            if data and self.command != 'HEAD':
                self.wfile.write(data)
        except OSError:
            # The client went away (e.g. it timed out on a held request).
            self.close_connection = True


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, double):
        self.double = double
        self._connections = set()
        self._connections_changed = threading.Condition()
        super().__init__((LOOPBACK, 0), _Handler)

    def process_request(self, request, client_address):
        with self._connections_changed:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        super().shutdown_request(request)
        with self._connections_changed:
            self._connections.discard(request)
            self._connections_changed.notify_all()

    def close_connections(self, timeout):
        """Cut every open connection; wait for their threads to end."""
        with self._connections_changed:
            for sock in list(self._connections):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections_changed.wait_for(
                lambda: not self._connections, timeout)


class _Notifications:
    """Sends Nova's notifications from one thread, in order."""

    def __init__(self, transport_url, retry):
        conf = cfg.ConfigOpts()
        for group, opts in messaging_opts.list_opts():
            if group is None:
                conf.register_opts(opts)
        # Nova's control exchange: listeners bind to exchange 'nova'.
        conf.set_override('control_exchange', 'nova')
        self.transport = oslo_messaging.get_notification_transport(
            conf, url=transport_url)
        self._notifiers = {
            topic: oslo_messaging.Notifier(
                self.transport, driver='messagingv2', topics=[topic],
                retry=retry)
            for topic in ('notifications', 'versioned_notifications')}
        self._queue = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name='nova-double-notify', daemon=True)
        self._thread.start()

    def send(self, topic, publisher_id, event_type, payload, ctxt):
        with self._idle:
            self._pending += 1
        self._queue.put((topic, publisher_id, event_type, payload, ctxt))

    def _run(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, publisher_id, event_type, payload, ctxt = item
            try:
                notifier = self._notifiers[topic].prepare(
                    publisher_id=publisher_id)
                notifier.info(ctxt, event_type, payload)
            except Exception:
                LOG.exception('nova double: cannot send %s', event_type)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def flush(self, timeout):
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout):
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)
        self.transport.cleanup()


class NovaDouble:
    """A Nova API (and Keystone v3) double on 127.0.0.1.

    :param max_version: the highest compute microversion served.
    :param transport_url: an oslo.messaging transport URL (``fake://``,
        ``rabbit://...``); when given, Nova's notifications are sent there.
    :param api_host: the host name of the (pretend) nova-api, used as the
        publisher of API-side notifications (``nova-api:<api_host>``).
    :param max_limit: the largest page Nova returns (``[api] max_limit``).
    :param hang_timeout: how long a held request waits for :meth:`release`
        before it goes on anyway.
    :param users: the Keystone users; default :attr:`admin` (role admin,
        project ``admin``) and :attr:`member` (project ``demo``).
    :param token_ttl: token lifetime in seconds.
    :param notify_retry: oslo.messaging send retries per notification.

    Every method is thread-safe.
    """

    ADMIN_PASSWORD = 'secret'
    MEMBER_PASSWORD = 'member-secret'

    def __init__(self, max_version=DEFAULT_MAX_VERSION, transport_url=None,
                 api_host='controller', region=REGION,
                 max_limit=DEFAULT_MAX_LIMIT, hang_timeout=60.0, users=None,
                 token_ttl=3600, notify_retry=3):
        self.max_version = _version_tuple(max_version)
        if self.max_version < _version_tuple(MIN_VERSION):
            raise ValueError('max_version %s is below %s'
                             % (max_version, MIN_VERSION))
        self.transport_url = transport_url
        self.api_host = api_host
        self.region = region
        self.max_limit = max_limit
        self.hang_timeout = hang_timeout
        self.token_ttl = token_ttl
        self._notify_retry = notify_retry
        if users is None:
            users = [
                User('admin', self.ADMIN_PASSWORD, 'admin',
                     roles=('admin', 'member', 'reader')),
                User('demo', self.MEMBER_PASSWORD, 'demo'),
            ]
        self._users = {u.name: u for u in users}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tokens = {}     # token -> (User, expires monotonic)
        self._issued = []     # every token ever issued
        self._services = {}   # (host, binary) -> dict
        self._service_ids = itertools.count(1)
        self._servers = {}    # id -> dict
        self._server_seq = itertools.count(1)
        self._calls = []
        self._notifications = []
        self._fail_rules = []
        self._hang_rules = []
        self._latency = None
        self._held = 0
        self._inflight = 0
        self._peak_inflight = 0
        self._httpd = None
        self._thread = None
        self._notifier = None
        self.add_service('controller', 'nova-scheduler', zone='internal')
        self.add_service('controller', 'nova-conductor', zone='internal')

    # -- life cycle --------------------------------------------------------

    def start(self):
        """Bind an ephemeral port on 127.0.0.1 and serve; returns self."""
        if self._httpd is not None:
            return self
        if self.transport_url:
            self._notifier = _Notifications(self.transport_url,
                                            self._notify_retry)
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={'poll_interval': 0.05},
            name='nova-double', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Release held requests, stop serving, close every connection."""
        if self._httpd is None:
            return
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections(timeout)
        self._thread.join(timeout)
        self._httpd = None
        if self._notifier is not None:
            self._notifier.close(timeout)
            self._notifier = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- addresses and credentials ----------------------------------------

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def base_url(self):
        return 'http://%s:%d' % (LOOPBACK, self.port)

    @property
    def auth_url(self):
        """Keystone v3, as ``auth_url`` in a keystoneauth config."""
        return self.base_url + '/identity/v3'

    @property
    def compute_url(self):
        """The compute endpoint of the catalog."""
        return self.base_url + '/compute/v2.1'

    @property
    def admin(self):
        return self._users['admin']

    @property
    def member(self):
        return self._users['demo']

    def add_user(self, name, password, project_name, roles=('member',)):
        """Add a Keystone user (replacing one of that name)."""
        user = User(name, password, project_name, roles=tuple(roles))
        with self._lock:
            self._users[name] = user
        return user

    def credentials(self, user='admin'):
        """keystoneauth ``password`` options for a user of the double."""
        u = self._users[user]
        return {
            'auth_type': 'password',
            'auth_url': self.auth_url,
            'username': u.name,
            'password': u.password,
            'project_name': u.project_name,
            'user_domain_name': u.domain_name,
            'project_domain_name': u.domain_name,
        }

    def configure(self, conf, group, user='admin'):
        """Point keystoneauth options of ``conf[group]`` at the double.

        Registers the ``password`` plugin options in ``group`` (they are
        otherwise registered only when the plugin loads) and overrides
        them, plus ``region_name`` when that option exists in the group.
        """
        ks_loading.register_auth_conf_options(conf, group)
        conf.register_opts(
            ks_loading.get_auth_plugin_conf_options('password'), group=group)
        for name, value in self.credentials(user).items():
            conf.set_override(name, value, group=group)
        if 'region_name' in conf[group]:
            conf.set_override('region_name', self.region, group=group)

    @property
    def issued_tokens(self):
        """Every token the double handed out (for no-secret-in-log tests)."""
        with self._lock:
            return list(self._issued)

    def revoke_tokens(self):
        """Forget every token: the next calls get 401 and must re-auth."""
        with self._lock:
            self._tokens.clear()

    # -- the cloud's contents ---------------------------------------------

    def add_service(self, host, binary, zone=DEFAULT_ZONE):
        with self._lock:
            key = (host, binary)
            if key not in self._services:
                self._services[key] = {
                    'id': next(self._service_ids),
                    'uuid': str(uuid.uuid4()),
                    'binary': binary, 'host': host, 'zone': zone,
                    'status': 'enabled', 'disabled_reason': None,
                    'forced_down': False, 'alive': True,
                    'updated_at': _now(), 'report_count': 1,
                    'version': 66, 'topic': binary.replace('nova-', ''),
                }
            return dict(self._services[key])

    def add_host(self, host, zone=DEFAULT_ZONE):
        """Add a compute host (its nova-compute service); idempotent."""
        return self.add_service(host, NOVA_COMPUTE, zone=zone)

    def service(self, host, binary=NOVA_COMPUTE):
        """A copy of a service record (``forced_down``, ``status``...)."""
        with self._lock:
            svc = self._services.get((host, binary))
            return dict(svc) if svc else None

    def set_service_alive(self, host, alive, binary=NOVA_COMPUTE):
        """Make a service's heartbeat stop (state down) or come back."""
        with self._lock:
            self._services[(host, binary)]['alive'] = alive

    def add_server(self, host, project_id, user_id=None, name=None,
                   server_id=None, vm_state='active'):
        """Add an instance on ``host`` (a compute host is created if new)."""
        self.add_host(host)
        with self._lock:
            seq = next(self._server_seq)
            server_id = server_id or str(uuid.uuid4())
            if server_id in self._servers:
                raise ValueError('server %s exists' % server_id)
            now = _now()
            self._servers[server_id] = {
                'seq': seq, 'id': server_id,
                'name': name or 'vm-%d' % seq,
                'project_id': project_id,
                'user_id': user_id or uuid.uuid4().hex,
                'host': host, 'vm_state': vm_state, 'task_state': None,
                'created': now, 'updated': now,
                'image_id': '70a599e0-31e7-49b7-b260-868f441e862b',
                'flavor_id': '1', 'metadata': {},
            }
            return server_id

    def server(self, server_id):
        """A copy of an instance record (``vm_state``, ``host``...)."""
        with self._lock:
            server = self._servers.get(server_id)
            return dict(server, status=self._status(server)) if server \
                else None

    def servers_on(self, host):
        """Copies of the instance records on ``host``, oldest first."""
        with self._lock:
            return [dict(s, status=self._status(s))
                    for s in self._servers.values() if s['host'] == host]

    # -- fault injection ---------------------------------------------------

    def set_latency(self, seconds, path_regex=None, method=None):
        """Delay each matching call by ``seconds`` (0 removes the delay).

        Without ``path_regex`` every compute API call is delayed (not the
        version documents nor Keystone).
        """
        with self._lock:
            self._latency = (_LatencyRule(_compile(path_regex), method,
                                          seconds=seconds)
                             if seconds else None)

    def fail(self, status, count=None, path_regex=None, method=None):
        """Answer ``status`` (with Nova's fault body) to matching calls.

        ``count`` calls, or every matching call when ``count`` is None,
        until :meth:`clear_faults`. Without ``path_regex`` it matches every
        compute API call; the version documents and Keystone only when the
        regex says so.
        """
        with self._lock:
            self._fail_rules.append(_FailRule(
                _compile(path_regex), method, status=status, remaining=count))

    def disconnect(self, count=None, path_regex=None, method=None):
        """Close the connection of matching calls without an answer."""
        with self._lock:
            self._fail_rules.append(_FailRule(
                _compile(path_regex), method, status=0, remaining=count,
                drop=True))

    def clear_faults(self):
        """Remove latency and failure rules and release held calls."""
        with self._lock:
            self._fail_rules = []
            self._latency = None
        self.release()

    def hang(self, path_regex, method=None):
        """Hold matching calls until :meth:`release` (or hang_timeout)."""
        with self._lock:
            self._hang_rules.append(_HangRule(re.compile(path_regex), method))

    def release(self):
        """Let every held call go on, and stop holding new ones."""
        with self._lock:
            rules, self._hang_rules = self._hang_rules, []
        for rule in rules:
            rule.event.set()

    @property
    def held(self):
        """How many calls are being held right now."""
        with self._lock:
            return self._held

    def wait_held(self, count=1, timeout=5.0):
        """Wait until at least ``count`` calls are held; True if so."""
        with self._changed:
            return self._changed.wait_for(lambda: self._held >= count,
                                          timeout)

    # -- what happened -----------------------------------------------------

    @property
    def calls(self):
        """A copy of the call log, in the order answers were ready."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, path_regex, method=None):
        regex = re.compile(path_regex)
        return [c for c in self.calls
                if regex.search(c.path) and method in (None, c.method)]

    def clear_calls(self):
        with self._lock:
            self._calls = []
            self._peak_inflight = self._inflight

    def wait_calls(self, count, path_regex=API_PATHS, method=None,
                   timeout=5.0):
        """Wait until ``count`` matching calls were answered; True if so."""
        regex = re.compile(path_regex)

        def enough():
            return sum(1 for c in self._calls
                       if regex.search(c.path) and
                       method in (None, c.method)) >= count
        with self._changed:
            return self._changed.wait_for(enough, timeout)

    @property
    def peak_inflight(self):
        """Most compute API calls handled at once since clear_calls()."""
        with self._lock:
            return self._peak_inflight

    @property
    def notifications(self):
        """Every notification emitted, oldest first.

        Dicts with ``topic``, ``publisher_id``, ``event_type``,
        ``priority`` and ``payload``.
        """
        with self._lock:
            return list(self._notifications)

    def flush_notifications(self, timeout=5.0):
        """Wait until every notification was handed to the transport."""
        if self._notifier is None:
            return True
        return self._notifier.flush(timeout)

    @property
    def notification_transport(self):
        """The oslo.messaging transport notifications are sent on."""
        return self._notifier.transport if self._notifier else None

    # -- request handling --------------------------------------------------

    def _record(self, call):
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    def _handle(self, req):
        """Answer one request; None means drop the connection."""
        api_call = re.search(API_PATHS, req.path) is not None
        with self._changed:
            if api_call:
                self._inflight += 1
                self._peak_inflight = max(self._peak_inflight,
                                          self._inflight)
            hang = next((r for r in self._hang_rules if r.matches(req)),
                        None)
            latency = self._latency
        try:
            if hang is not None:
                self._hold(hang)
            if latency is not None and latency.matches(req):
                time.sleep(latency.seconds)
            rule = self._take_fault(req)
            if rule is not None:
                if api_call:
                    self._note_caller(req)
                if rule.drop:
                    return None
                raise _HttpError(rule.status, 'Injected fault: HTTP %d'
                                 % rule.status)
            return self._route(req)
        except _HttpError as exc:
            return self._error(req, exc)
        except Exception:
            LOG.exception('nova double: %s %s failed', req.method, req.path)
            return self._error(req, _HttpError(
                500, 'Unexpected API Error. Please report this.'))
        finally:
            if api_call:
                with self._lock:
                    self._inflight -= 1

    def _note_caller(self, req):
        # For the call log of an injected fault: who asked, at what version.
        req.user = self._user_of(req.headers.get('X-Auth-Token'))[0]
        try:
            self._microversion(req)
        except _HttpError:
            pass

    def _hold(self, rule):
        with self._changed:
            self._held += 1
            self._changed.notify_all()
        try:
            rule.event.wait(self.hang_timeout)
        finally:
            with self._changed:
                self._held -= 1
                self._changed.notify_all()

    def _take_fault(self, req):
        with self._lock:
            for rule in self._fail_rules:
                if rule.matches(req):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._fail_rules.remove(rule)
                    return rule
        return None

    def _error(self, req, exc):
        headers = {'x-openstack-request-id': 'req-%s' % uuid.uuid4()}
        headers.update(exc.headers)
        if req.path.startswith('/identity'):
            body = {'error': {
                'code': exc.status, 'message': exc.message,
                'title': _KEYSTONE_TITLES.get(exc.status, 'Error')}}
        else:
            body = {_FAULT_NAMES.get(exc.status, 'computeFault'): {
                'code': exc.status, 'message': exc.message}}
            if req.microversion is not None:
                headers.update(self._version_headers(req.microversion))
        return _Response(exc.status, body, headers)

    def _route(self, req):
        parts = [p for p in req.path.split('/') if p]
        if parts[:1] == ['identity']:
            return self._identity(req, parts[1:])
        if parts[:1] == ['compute']:
            return self._compute(req, parts[1:])
        raise _HttpError(404, 'The resource could not be found.')

    @staticmethod
    def _allow(req, *methods):
        if req.method not in methods:
            raise _HttpError(405, 'The method is not allowed for the '
                             'requested URL.')

    # -- Keystone ----------------------------------------------------------

    def _identity_version(self):
        return {
            'id': 'v3.14', 'status': 'stable',
            'updated': '2020-04-07T00:00:00Z',
            'links': [{'rel': 'self',
                       'href': self.base_url + '/identity/v3/'}],
            'media-types': [{
                'base': 'application/json',
                'type': 'application/vnd.openstack.identity-v3+json'}],
        }

    def _identity(self, req, parts):
        if not parts:
            self._allow(req, 'GET')
            return _Response(300, {'versions': {
                'values': [self._identity_version()]}})
        if parts == ['v3']:
            self._allow(req, 'GET')
            return _Response(200, {'version': self._identity_version()})
        if parts == ['v3', 'auth', 'tokens']:
            self._allow(req, 'GET', 'POST')
            if req.method == 'POST':
                return self._issue_token(req)
            return self._validate_token(req)
        raise _HttpError(404, 'The resource could not be found.')

    def _catalog(self):
        def endpoints(url):
            return [{'id': uuid.uuid5(uuid.NAMESPACE_URL,
                                      url + iface).hex,
                     'interface': iface, 'region': self.region,
                     'region_id': self.region, 'url': url}
                    for iface in ('public', 'internal', 'admin')]
        return [
            {'type': 'compute', 'name': 'nova', 'id': uuid.uuid5(
                uuid.NAMESPACE_URL, self.compute_url).hex,
             'endpoints': endpoints(self.compute_url)},
            {'type': 'identity', 'name': 'keystone', 'id': uuid.uuid5(
                uuid.NAMESPACE_URL, self.base_url + '/identity').hex,
             'endpoints': endpoints(self.base_url + '/identity')},
        ]

    def _token_body(self, user, expires, issued, scoped):
        domain = {'id': user.domain_id, 'name': user.domain_name}
        token = {
            'methods': ['password'],
            'user': {'id': user.user_id, 'name': user.name,
                     'domain': domain, 'password_expires_at': None},
            'audit_ids': [uuid.uuid4().hex[:22]],
            'expires_at': _isotime(expires, micro=True) + 'Z',
            'issued_at': _isotime(issued, micro=True) + 'Z',
        }
        if scoped:
            token.update({
                'project': {'id': user.project_id, 'name': user.project_name,
                            'domain': domain},
                'is_domain': False,
                'roles': [{'id': uuid.uuid5(uuid.NAMESPACE_DNS, r).hex,
                           'name': r} for r in user.roles],
                'catalog': self._catalog(),
            })
        return {'token': token}

    @staticmethod
    def _domain_ok(ref, user):
        domain = (ref or {}).get('domain')
        if not domain:
            return True
        return (domain.get('id') in (None, user.domain_id) and
                domain.get('name') in (None, user.domain_name))

    def _issue_token(self, req):
        unauthorized = _HttpError(
            401, 'The request you have made requires authentication.')
        try:
            auth = req.json()['auth']
            identity = auth['identity']
            if 'password' not in identity.get('methods', []):
                raise unauthorized
            ref = identity['password']['user']
            password = ref['password']
        except (KeyError, TypeError):
            raise _HttpError(400, 'Expecting to find auth.identity.password '
                             'in the request body.')
        with self._lock:
            user = None
            for candidate in self._users.values():
                if ref.get('id') in (candidate.user_id,) or (
                        ref.get('name') == candidate.name and
                        self._domain_ok(ref, candidate)):
                    user = candidate
                    break
        if user is None or password != user.password:
            raise unauthorized
        scope = auth.get('scope')
        scoped = False
        if scope:
            project = scope.get('project') or {}
            if not project or not (
                    project.get('id') == user.project_id or (
                        project.get('name') == user.project_name and
                        self._domain_ok(project, user))):
                raise unauthorized
            scoped = True
        token = uuid.uuid4().hex
        issued = _now()
        expires = issued + datetime.timedelta(seconds=self.token_ttl)
        with self._lock:
            self._tokens[token] = (user, time.monotonic() + self.token_ttl,
                                   scoped)
            self._issued.append(token)
        req.user = user
        return _Response(201, self._token_body(user, expires, issued, scoped),
                         {'X-Subject-Token': token})

    def _user_of(self, token):
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            return None, False
        return entry[0], entry[2]

    def _validate_token(self, req):
        user, _scoped = self._user_of(req.headers.get('X-Auth-Token'))
        if user is None:
            raise _HttpError(
                401, 'The request you have made requires authentication.')
        req.user = user
        subject = req.headers.get('X-Subject-Token')
        owner, scoped = self._user_of(subject)
        if owner is None:
            raise _HttpError(404, 'Could not find token: %s' %
                             hashlib.sha256(
                                 (subject or '').encode()).hexdigest()[:8])
        now = _now()
        return _Response(200, self._token_body(
            owner, now + datetime.timedelta(seconds=self.token_ttl), now,
            scoped), {'X-Subject-Token': subject})

    # -- Nova: versions, auth, microversions --------------------------------

    def _compute_version(self):
        return {
            'id': 'v2.1', 'status': 'CURRENT',
            'version': _version_text(self.max_version),
            'min_version': MIN_VERSION, 'updated': '2013-07-23T11:33:21Z',
            'links': [
                {'rel': 'self', 'href': self.base_url + '/compute/v2.1/'},
                {'rel': 'describedby', 'type': 'text/html',
                 'href': 'http://docs.openstack.org/'}],
            'media-types': [{
                'base': 'application/json',
                'type': 'application/vnd.openstack.compute+json;version=2.1'}],
        }

    def _compute(self, req, parts):
        if not parts:
            self._allow(req, 'GET')
            legacy = {'id': 'v2.0', 'status': 'SUPPORTED', 'version': '',
                      'min_version': '', 'updated': '2011-01-21T11:33:21Z',
                      'links': [{'rel': 'self',
                                 'href': self.base_url + '/compute/v2/'}]}
            return _Response(200, {'versions': [legacy,
                                                self._compute_version()]})
        if parts[0] != 'v2.1':
            raise _HttpError(404, 'The resource could not be found.')
        if len(parts) == 1:
            self._allow(req, 'GET')
            return _Response(200, {'version': self._compute_version()})
        user, scoped = self._user_of(req.headers.get('X-Auth-Token'))
        if user is None or not scoped:
            raise _HttpError(
                401, 'The request you have made requires authentication.',
                {'WWW-Authenticate':
                 'Keystone uri="%s/identity"' % self.base_url})
        req.user = user
        version = self._microversion(req)
        response = self._api(req, user, version, parts[1:])
        response.headers.update(self._version_headers(req.microversion))
        response.headers.setdefault('x-openstack-request-id',
                                    'req-%s' % uuid.uuid4())
        response.headers['x-compute-request-id'] = response.headers[
            'x-openstack-request-id']
        return response

    @staticmethod
    def _version_headers(version):
        return {
            COMPUTE_VERSION_HEADER: 'compute %s' % version,
            LEGACY_VERSION_HEADER: version,
            'Vary': '%s, %s' % (COMPUTE_VERSION_HEADER,
                                LEGACY_VERSION_HEADER),
        }

    def _microversion(self, req):
        requested = None
        header = req.headers.get(COMPUTE_VERSION_HEADER)
        if header:
            for item in header.split(','):
                fields = item.strip().split()
                if len(fields) == 2 and fields[0].lower() == 'compute':
                    requested = fields[1]
        if requested is None:
            requested = req.headers.get(LEGACY_VERSION_HEADER)
        if not requested:
            version = _version_tuple(MIN_VERSION)
        elif requested.strip().lower() == 'latest':
            version = self.max_version
        else:
            if not re.match(r'^\d+\.\d+$', requested.strip()):
                raise _HttpError(
                    400, 'API Version String %s is of invalid format. Must '
                    'be of format MajorNum.MinorNum.' % requested)
            version = _version_tuple(requested.strip())
            if not (_version_tuple(MIN_VERSION) <= version <=
                    self.max_version):
                raise _HttpError(
                    406, 'Version %s is not supported by the API. Minimum '
                    'is %s and maximum is %s.' % (
                        requested, MIN_VERSION,
                        _version_text(self.max_version)))
        req.microversion = _version_text(version)
        return version

    @staticmethod
    def _policy(user, rule):
        if not user.is_admin:
            raise _HttpError(403, "Policy doesn't allow %s to be performed."
                             % rule)

    def _api(self, req, user, version, parts):
        if parts[0] == 'os-services':
            if len(parts) == 1:
                self._allow(req, 'GET')
                return self._list_services(req, user, version)
            if len(parts) == 2:
                self._allow(req, 'PUT')
                return self._update_service(req, user, version, parts[1])
        elif parts[0] == 'servers':
            if len(parts) == 1 or parts[1:] == ['detail']:
                self._allow(req, 'GET')
                return self._list_servers(req, user, version,
                                          detail=len(parts) == 2)
            if len(parts) == 2:
                self._allow(req, 'GET', 'DELETE')
                if req.method == 'DELETE':
                    return self._delete_server(req, user, parts[1])
                server = self._visible_server(user, parts[1])
                return _Response(200, {'server': self._server_view(
                    server, user, version, detail=True)})
            if len(parts) == 3 and parts[2] == 'action':
                self._allow(req, 'POST')
                return self._server_action(req, user, version, parts[1])
        raise _HttpError(404, 'The resource could not be found.')

    # -- Nova: os-services ---------------------------------------------------

    def _service_state(self, svc):
        return 'up' if svc['alive'] and not svc['forced_down'] else 'down'

    def _service_view(self, svc, version):
        view = {
            'id': (svc['uuid'] if version >= _V_SERVICE_UUID
                   else svc['id']),
            'binary': svc['binary'], 'host': svc['host'],
            'zone': svc['zone'], 'status': svc['status'],
            'state': self._service_state(svc),
            'disabled_reason': svc['disabled_reason'],
            'updated_at': _isotime(svc['updated_at'], micro=True),
        }
        if version >= _V_FORCED_DOWN:
            view['forced_down'] = svc['forced_down']
        return view

    def _list_services(self, req, user, version):
        self._policy(user, 'os_compute_api:os-services:list')
        host = req.param('host')
        binary = req.param('binary')
        with self._lock:
            services = [self._service_view(s, version)
                        for s in self._services.values()
                        if host in (None, s['host']) and
                        binary in (None, s['binary'])]
        return _Response(200, {'services': services})

    def _update_service(self, req, user, version, service_id):
        self._policy(user, 'os_compute_api:os-services:update')
        body = req.json()
        if not isinstance(body, dict):
            raise _HttpError(400, 'Invalid input for field/attribute body.')
        if version >= _V_SERVICE_UUID:
            return self._update_service_v253(req, version, service_id, body)
        actions = {'enable', 'disable', 'disable-log-reason'}
        if version >= _V_FORCED_DOWN:
            actions.add('force-down')
        if service_id not in actions:
            raise _HttpError(404, 'Unknown action')
        host, binary = body.get('host'), body.get('binary')
        if not isinstance(host, str) or not isinstance(binary, str):
            raise _HttpError(400, "Invalid input for field/attribute %s. "
                             "'host' and 'binary' are required."
                             % service_id)
        changes = {}
        view = {'host': host, 'binary': binary}
        if service_id == 'force-down':
            forced = body.get('forced_down')
            if not isinstance(forced, bool):
                raise _HttpError(400, "Invalid input for field/attribute "
                                 "forced_down. Value: %r." % (forced,))
            changes['forced_down'] = view['forced_down'] = forced
        elif service_id == 'enable':
            changes = {'status': 'enabled', 'disabled_reason': None}
            view['status'] = 'enabled'
        else:
            reason = body.get('disabled_reason')
            if service_id == 'disable-log-reason' and (
                    not isinstance(reason, str) or not reason.strip()):
                raise _HttpError(400, 'The string containing the reason '
                                 'for disabling the service contains '
                                 'invalid characters or is too long.')
            changes = {'status': 'disabled', 'disabled_reason': reason}
            view['status'] = 'disabled'
            if service_id == 'disable-log-reason':
                view['disabled_reason'] = reason
        with self._lock:
            svc = self._services.get((host, binary))
            if svc is None:
                raise _HttpError(404, 'Service %s on host %s not found.'
                                 % (binary, host))
            self._change_service(svc, changes)
        return _Response(200, {'service': view})

    def _update_service_v253(self, req, version, service_id, body):
        if not uuidutils.is_uuid_like(service_id):
            raise _HttpError(400, 'Invalid uuid %s' % service_id)
        allowed = {'status', 'disabled_reason', 'forced_down'}
        if not body or set(body) - allowed:
            raise _HttpError(400, 'Invalid input for field/attribute body. '
                             'Allowed: status, disabled_reason, forced_down.')
        status = body.get('status')
        if status is not None and status not in ('enabled', 'disabled'):
            raise _HttpError(400, "Invalid input for field/attribute status."
                             " Value: %s." % status)
        if 'disabled_reason' in body and status != 'disabled':
            raise _HttpError(400, 'Specifying a disabled_reason is only '
                             'supported when the status is disabled.')
        if 'forced_down' in body and not isinstance(body['forced_down'],
                                                    bool):
            raise _HttpError(400, 'Invalid input for field/attribute '
                             'forced_down.')
        changes = {}
        if status == 'enabled':
            changes = {'status': 'enabled', 'disabled_reason': None}
        elif status == 'disabled':
            changes = {'status': 'disabled',
                       'disabled_reason': body.get('disabled_reason')}
        if 'forced_down' in body:
            changes['forced_down'] = body['forced_down']
        with self._lock:
            svc = next((s for s in self._services.values()
                        if s['uuid'] == service_id), None)
            if svc is None:
                raise _HttpError(404, 'Service %s could not be found.'
                                 % service_id)
            if svc['binary'] != NOVA_COMPUTE:
                raise _HttpError(400, 'Updating a %s service is not '
                                 'supported. Only nova-compute services '
                                 'can be updated.' % svc['binary'])
            self._change_service(svc, changes)
            view = self._service_view(svc, version)
        return _Response(200, {'service': view})

    def _change_service(self, svc, changes):
        # Caller holds the lock.
        if all(svc[k] == v for k, v in changes.items()):
            return
        svc.update(changes)
        svc['updated_at'] = _now()
        self._notify_service(svc)

    # -- Nova: servers -------------------------------------------------------

    @staticmethod
    def _status(server):
        return _STATUS_OF_VM_STATE.get(server['vm_state'], 'UNKNOWN')

    def _host_status(self, host):
        svc = self._services.get((host, NOVA_COMPUTE))
        if svc is None:
            return 'UNKNOWN'
        if self._service_state(svc) == 'down':
            return 'DOWN'
        return 'MAINTENANCE' if svc['status'] == 'disabled' else 'UP'

    def _links(self, server_id):
        return [
            {'rel': 'self',
             'href': '%s/compute/v2.1/servers/%s' % (self.base_url,
                                                     server_id)},
            {'rel': 'bookmark',
             'href': '%s/compute/servers/%s' % (self.base_url, server_id)},
        ]

    def _server_view(self, s, user, version, detail):
        # Caller may or may not hold the lock: reads one record only.
        view = {'id': s['id'], 'name': s['name'],
                'links': self._links(s['id'])}
        if not detail:
            return view
        if version >= _V_FLAVOR_DICT:
            flavor = {'vcpus': 1, 'ram': 512, 'disk': 1, 'ephemeral': 0,
                      'swap': 0, 'original_name': 'm1.tiny',
                      'extra_specs': {}}
        else:
            flavor = {'id': s['flavor_id'], 'links': []}
        view.update({
            'status': self._status(s),
            'tenant_id': s['project_id'], 'user_id': s['user_id'],
            'metadata': dict(s['metadata']),
            'hostId': hashlib.sha224(
                (s['project_id'] + s['host']).encode()).hexdigest(),
            'image': {'id': s['image_id'], 'links': []},
            'flavor': flavor,
            'created': _isotime(s['created']),
            'updated': _isotime(s['updated']),
            'addresses': {}, 'accessIPv4': '', 'accessIPv6': '',
            'OS-DCF:diskConfig': 'MANUAL', 'progress': 0,
            'OS-EXT-AZ:availability_zone': DEFAULT_ZONE,
            'config_drive': '', 'key_name': None,
            'OS-SRV-USG:launched_at': _isotime(s['created'], micro=True),
            'OS-SRV-USG:terminated_at': None,
            'OS-EXT-STS:task_state': s['task_state'],
            'OS-EXT-STS:vm_state': s['vm_state'],
            'OS-EXT-STS:power_state': _POWER_STATE_OF_VM_STATE.get(
                s['vm_state'], 0),
            'os-extended-volumes:volumes_attached': [],
            'security_groups': [{'name': 'default'}],
        })
        if user.is_admin:
            view.update({
                'OS-EXT-SRV-ATTR:host': s['host'],
                'OS-EXT-SRV-ATTR:hypervisor_hostname': s['host'],
                'OS-EXT-SRV-ATTR:instance_name': 'instance-%08x' % s['seq'],
            })
            if version >= _V_HOST_STATUS:
                view['host_status'] = self._host_status(s['host'])
        if version >= _V_LOCKED:
            view['locked'] = False
        if version >= _V_DESCRIPTION:
            view['description'] = None
        if version >= _V_TAGS:
            view['tags'] = []
        return view

    def _visible_server(self, user, server_id):
        with self._lock:
            server = self._servers.get(server_id)
            if server is None or not (user.is_admin or
                                      server['project_id'] ==
                                      user.project_id):
                raise _HttpError(404, 'Instance %s could not be found.'
                                 % server_id)
            return server

    def _list_servers(self, req, user, version, detail):
        all_tenants = False
        if 'all_tenants' in req.query:
            value = req.param('all_tenants')
            try:
                all_tenants = (value == '' or
                               strutils.bool_from_string(value, strict=True))
            except ValueError as exc:
                raise _HttpError(400, str(exc))
        if all_tenants:
            self._policy(user, 'os_compute_api:servers:%s:get_all_tenants'
                         % ('detail' if detail else 'index'))
        project = req.param('tenant_id') or req.param('project_id')
        if not all_tenants:
            project = user.project_id
        # Admin-only filters are ignored for other users (API reference).
        host = (req.param('host') or req.param('node')) \
            if user.is_admin else None
        status = req.param('status')
        name = req.param('name')
        try:
            name_re = re.compile(name) if name else None
        except re.error:
            raise _HttpError(400, 'Invalid regular expression: %s' % name)
        limit = req.param('limit')
        try:
            limit = self.max_limit if limit is None else int(limit)
            if limit < 0:
                raise ValueError(limit)
        except ValueError:
            raise _HttpError(400, 'limit param must be an integer')
        limit = min(limit, self.max_limit)
        marker = req.param('marker')
        with self._lock:
            start = None
            if marker is not None:
                marked = self._servers.get(marker)
                if marked is None:
                    raise _HttpError(400, 'marker [%s] not found' % marker)
                start = marked['seq']
            matches = []
            # Nova's default order: newest first.
            for s in reversed(self._servers.values()):
                if start is not None and s['seq'] >= start:
                    continue
                if project is not None and s['project_id'] != project:
                    continue
                if host is not None and s['host'] != host:
                    continue
                if status and self._status(s) != status.upper():
                    continue
                if name_re is not None and not name_re.search(s['name']):
                    continue
                matches.append(s)
                if len(matches) >= limit:
                    break
            page = [self._server_view(s, user, version, detail)
                    for s in matches]
        body = {'servers': page}
        if limit and len(page) == limit:
            params = [(k, v) for k, v in urllib.parse.parse_qsl(
                req.raw_query, keep_blank_values=True) if k != 'marker']
            params.append(('marker', page[-1]['id']))
            body['servers_links'] = [{
                'rel': 'next',
                'href': '%s/compute/v2.1/servers%s?%s' % (
                    self.base_url, '/detail' if detail else '',
                    urllib.parse.urlencode(params))}]
        return _Response(200, body)

    def _delete_server(self, req, user, server_id):
        with self._lock:
            server = self._visible_server(user, server_id)
            del self._servers[server_id]
            self._notify_instance(server, 'compute.instance.delete.start',
                                  'nova-compute:%s' % server['host'], user)
            server = dict(server, vm_state='deleted', task_state=None)
            self._notify_instance(server, 'compute.instance.delete.end',
                                  'nova-compute:%s' % server['host'], user)
        return _Response(204)

    def _server_action(self, req, user, version, server_id):
        body = req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise _HttpError(400, 'Malformed request body')
        action, args = next(iter(body.items()))
        handlers = {'os-resetState': self._reset_state,
                    'os-migrateLive': self._live_migrate,
                    'migrate': self._migrate}
        if action not in handlers:
            raise _HttpError(400, 'There is no such action: %s' % action)
        with self._lock:
            server = self._visible_server(user, server_id)
            return handlers[action](user, version, server, args)

    def _reset_state(self, user, version, server, args):
        self._policy(user, 'os_compute_api:os-admin-actions:reset_state')
        state = args.get('state') if isinstance(args, dict) else None
        if not isinstance(args, dict) or set(args) != {'state'} or \
                state not in ('active', 'error'):
            raise _HttpError(400, "Invalid input for field/attribute state. "
                             "Value: %r. %r is not one of ['active', "
                             "'error']" % (state, state))
        old_state, old_task = server['vm_state'], server['task_state']
        server.update(vm_state=state, task_state=None, updated=_now())
        self._notify_instance(server, 'compute.instance.update',
                              'nova-api:%s' % self.api_host, user,
                              old_state=old_state, old_task_state=old_task)
        return _Response(202)

    def _usable(self, host):
        svc = self._services.get((host, NOVA_COMPUTE))
        return (svc is not None and svc['status'] == 'enabled' and
                self._service_state(svc) == 'up')

    def _move(self, user, server, target, action, allowed_states):
        if server['vm_state'] not in allowed_states:
            raise _HttpError(409, "Cannot '%s' instance %s while it is in "
                             "vm_state %s" % (action, server['id'],
                                              server['vm_state']))
        source = server['host']
        if self._service_state(self._services[(source, NOVA_COMPUTE)]) \
                == 'down':
            raise _HttpError(409, 'Compute service of %s is unavailable at '
                             'this time.' % source)
        if target is not None:
            if (target, NOVA_COMPUTE) not in self._services:
                raise _HttpError(400, 'Compute host %s could not be found.'
                                 % target)
            if target == source or not self._usable(target):
                raise _HttpError(400, 'No valid host was found. Host %s is '
                                 'not available.' % target)
        else:
            target = next((h for (h, b) in sorted(self._services)
                           if b == NOVA_COMPUTE and h != source and
                           self._usable(h)), None)
            if target is None:
                raise _HttpError(400, 'No valid host was found. There are '
                                 'not enough hosts available.')
        old_state = server['vm_state']
        server.update(host=target, task_state=None, updated=_now())
        self._notify_instance(server, 'compute.instance.update',
                              'nova-compute:%s' % target, user,
                              old_state=old_state,
                              old_task_state='migrating')
        return _Response(202)

    def _live_migrate(self, user, version, server, args):
        self._policy(user, 'os_compute_api:os-migrate-server:migrate_live')
        if not isinstance(args, dict) or 'block_migration' not in args:
            raise _HttpError(400, "Invalid input for field/attribute "
                             "os-migrateLive. 'block_migration' is a "
                             "required property")
        return self._move(user, server, args.get('host'), 'os-migrateLive',
                          ('active', 'paused'))

    def _migrate(self, user, version, server, args):
        self._policy(user, 'os_compute_api:os-migrate-server:migrate')
        target = None
        if args is not None:
            if not isinstance(args, dict) or (
                    args and version < _V_MIGRATE_HOST):
                raise _HttpError(400, 'Invalid input for field/attribute '
                                 'migrate.')
            target = args.get('host')
        return self._move(user, server, target, 'migrate',
                          ('active', 'stopped'))

    # -- notifications -------------------------------------------------------

    def _emit(self, topic, publisher_id, event_type, payload, user):
        # Caller holds the lock: notifications leave in the order of the
        # changes they describe.
        record = {'topic': topic, 'publisher_id': publisher_id,
                  'event_type': event_type, 'priority': 'INFO',
                  'payload': payload}
        self._notifications.append(record)
        if self._notifier is not None:
            ctxt = {'user_id': user.user_id if user else None,
                    'project_id': user.project_id if user else None,
                    'request_id': 'req-%s' % uuid.uuid4(),
                    'is_admin': bool(user and user.is_admin)}
            self._notifier.send(topic, publisher_id, event_type, payload,
                                ctxt)

    def _notify_instance(self, server, event_type, publisher_id, user,
                         old_state=None, old_task_state=None):
        created = str(server['created'].replace(microsecond=0))
        now = _now()
        payload = {
            'tenant_id': server['project_id'],
            'user_id': server['user_id'],
            'instance_id': server['id'],
            'display_name': server['name'],
            'display_description': '',
            'hostname': server['name'].lower(),
            'reservation_id': 'r-%s' % server['id'][:8],
            'host': server['host'], 'node': server['host'],
            'availability_zone': DEFAULT_ZONE, 'cell_name': '',
            'instance_type': 'm1.tiny', 'instance_type_id': 1,
            'instance_flavor_id': server['flavor_id'],
            'memory_mb': 512, 'disk_gb': 1, 'root_gb': 1, 'ephemeral_gb': 0,
            'vcpus': 1,
            'state': server['vm_state'],
            'state_description': server['task_state'] or '',
            'old_state': old_state or server['vm_state'],
            'old_task_state': old_task_state,
            'new_task_state': server['task_state'],
            'progress': '',
            'created_at': created, 'launched_at': created,
            'terminated_at': str(now.replace(microsecond=0))
            if server['vm_state'] == 'deleted' else '',
            'deleted_at': '',
            'image_ref_url': 'http://%s/images/%s' % (LOOPBACK,
                                                      server['image_id']),
            'image_meta': {}, 'metadata': dict(server['metadata']),
            'architecture': None, 'os_type': None,
            'kernel_id': '', 'ramdisk_id': '',
            'access_ip_v4': None, 'access_ip_v6': None, 'fixed_ips': [],
            'audit_period_beginning': _isotime(
                now.replace(day=1, hour=0, minute=0, second=0,
                            microsecond=0), micro=True),
            'audit_period_ending': _isotime(now, micro=True),
            'bandwidth': {}, 'locked': False, 'tags': [],
        }
        self._emit('notifications', publisher_id, event_type, payload, user)

    def _notify_service(self, svc):
        payload = {
            'nova_object.name': 'ServiceStatusPayload',
            'nova_object.namespace': 'nova',
            'nova_object.version': '1.1',
            'nova_object.data': {
                'host': svc['host'], 'binary': svc['binary'],
                'topic': svc['topic'],
                'disabled': svc['status'] == 'disabled',
                'disabled_reason': svc['disabled_reason'],
                'forced_down': svc['forced_down'],
                'last_seen_up': _isotime(svc['updated_at']),
                'uuid': svc['uuid'], 'version': svc['version'],
                'report_count': svc['report_count'],
                'availability_zone': svc['zone'],
            },
        }
        self._emit('versioned_notifications',
                   '%s:%s' % (svc['binary'], svc['host']), 'service.update',
                   payload, None)


class NovaDoubleFixture(fixtures.Fixture):
    """Runs a :class:`NovaDouble` for the duration of a test.

    The keyword arguments are :class:`NovaDouble`'s; the running double is
    :attr:`nova`.
    """

    def __init__(self, **kwargs):
        super().__init__()
        self._kwargs = kwargs
        self.nova = None

    def _setUp(self):
        self.nova = NovaDouble(**self._kwargs).start()
        self.addCleanup(self.nova.stop)
