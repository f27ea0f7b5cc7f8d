"""The inspector's Nova client: find a host's servers, fence the host.

Everything goes through openstacksdk (``openstack.connection.Connection``) on
a keystoneauth1 session built from the ``[doctor_nova]`` config group
(:mod:`.nova_connection`: its options and how the connection is built).

Fencing a host is two things in Nova:

* force-down its ``nova-compute`` service: by service uuid with
  microversion 2.53 and later, else with the 2.11 ``force-down`` action
  (openstacksdk's ``update_service_forced_down`` picks the call from the
  microversions the server offers);
* reset its servers to ``error``, in parallel (at most
  ``max_parallel_resets`` calls at once across all callers), each call
  retried on 5xx, connection errors and timeouts with exponential backoff;
  4xx answers are not retried (404: the server is gone).

Nothing here logs a token or a password: messages name the host, the server
and Nova's answer only.
"""

from concurrent import futures
import dataclasses
import threading
import time

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc
from openstack import utils as sdk_utils
from oslo_log import log

from doctor_ext.inspector import nova_connection as nova
from doctor_ext import retry as retry_mod

LOG = log.getLogger(__name__)

NOVA_COMPUTE = 'nova-compute'
OK = 'ok'

# Nova microversions of the two force-down calls.
FORCE_DOWN_BY_UUID = '2.53'
FORCE_DOWN_BY_HOST = '2.11'

# Servers per page when listing (Nova caps it at [api] max_limit).
LIST_PAGE = 1000

# Fencing's public names, from the module that defines them.
FencingError = nova.FencingError


@dataclasses.dataclass(frozen=True)
class ServerRef:
    """A server as the inspector needs it."""

    id: str
    project_id: str
    user_id: str
    host: str
    status: str
    name: str


class _Permanent(Exception):
    """A failure found by us (not an HTTP error): never retried."""


class _Transient(Exception):
    """A failure worth retrying; the message says why (Nova's answer)."""


def _status_of(exc):
    status = getattr(exc, 'status_code', None)  # openstacksdk
    if status is None:
        status = getattr(exc, 'http_status', None)  # keystoneauth
    return status


def _causes(exc):
    """The exception and what it was raised from or during."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _retriable(exc):
    for cause in _causes(exc):
        if isinstance(cause, (ks_exc.RetriableConnectionFailure,
                              ks_exc.UnknownConnectionError,
                              # The endpoint is in the catalog but its
                              # version document did not answer (openstacksdk
                              # does not keep the cause).
                              ks_exc.DiscoveryFailure,
                              sdk_exc.ServiceDiscoveryException)):
            return True
        status = _status_of(cause)
        if status is not None:
            return status >= 500
    return False


class NovaFencer:
    """Nova calls of the inspector, through openstacksdk.

    Constructing it never touches the network: the session, the token and
    the endpoint discovery happen on the first call. Thread-safe.
    """

    def __init__(self, conf):
        nova.register_opts(conf)
        self._conf = conf
        self._lock = threading.Lock()
        self._session = None
        self._connection = None
        self._proxy = None
        self._executor = None

    @property
    def _opts(self):
        return self._conf[nova.GROUP]

    # -- connection --------------------------------------------------------

    def _compute(self):
        """The compute proxy; the first call authenticates and discovers."""
        with self._lock:
            if self._proxy is None:
                if self._connection is None:
                    self._session, self._connection = (
                        nova.connect(self._conf))
                # Not cached by openstacksdk when discovery fails.
                self._proxy = self._connection.compute
            return self._proxy

    def _pool(self):
        with self._lock:
            if self._executor is None:
                self._executor = futures.ThreadPoolExecutor(
                    max_workers=self._opts.max_parallel_resets,
                    thread_name_prefix='doctor-nova-reset')
            return self._executor

    def close(self):
        """Stop the reset threads and drop the connection (reopened lazily)."""
        with self._lock:
            executor, self._executor = self._executor, None
            session, self._session = self._session, None
            self._connection = self._proxy = None
        if executor is not None:
            executor.shutdown(wait=True)
        if session is not None:
            session.session.close()

    # -- error handling ----------------------------------------------------

    def _describe(self, exc):
        for cause in _causes(exc):
            if isinstance(cause, ks_exc.ConnectTimeout):
                return ('no answer within call_timeout=%ss'
                        % self._opts.call_timeout)
            if isinstance(cause, ks_exc.ConnectionError):
                return 'connection failed (%s)' % nova.first_line(cause)
            status = _status_of(cause)
            if status is None:
                continue
            details = (getattr(cause, 'details', None) or
                       getattr(cause, 'message', None) or cause)
            text = 'HTTP %s: %s' % (status, nova.first_line(details))
            if status == 401:
                text += (' (Keystone refused the [%s] credentials)'
                         % nova.GROUP)
            elif status == 403:
                text += (' (the [%s] user needs the admin role)' % nova.GROUP)
            return text
        return nova.first_line(exc) or type(exc).__name__

    def _call(self, what, func, *args):
        """Run ``func``; retry 5xx/connection/timeout failures with backoff.

        The retries are :func:`doctor_ext.retry.attempts`'. Raises
        FencingError naming ``what`` when it finally fails.
        """
        opts = self._opts
        tries = []

        def attempt():
            tries.append(1)
            try:
                return func(*args)
            except FencingError:
                raise
            except _Permanent as exc:
                raise FencingError('%s failed: %s' % (what, exc))
            except (sdk_exc.SDKException, ks_exc.ClientException) as exc:
                reason = self._describe(exc)
                if not _retriable(exc):
                    raise FencingError('%s failed: %s' % (what, reason))
                raise _Transient(reason) from exc

        try:
            return retry_mod.attempts(attempt, what, opts.max_retries + 1,
                                      opts.retry_backoff,
                                      retry_on=_Transient, logger=LOG)
        except _Transient as exc:
            raise FencingError('%s failed after %d attempts: %s'
                               % (what, len(tries), exc))

    # -- queries -------------------------------------------------------------

    def _list(self, host=None):
        """Page through GET /servers/detail (all projects, maybe one host).

        The JSON is read as is: building openstacksdk Server resources costs
        milliseconds of CPU per server, minutes for a large cloud.
        """
        compute = self._compute()
        params = {'all_tenants': 'True', 'limit': LIST_PAGE}
        if host is not None:
            params['host'] = host
        refs = []
        while True:
            resp = compute.get('/servers/detail', params=params)
            sdk_exc.raise_from_response(resp)
            body = resp.json()
            servers = body.get('servers') or []
            for s in servers:
                refs.append(ServerRef(
                    id=s['id'], project_id=s.get('tenant_id'),
                    user_id=s.get('user_id'),
                    host=s.get('OS-EXT-SRV-ATTR:host'),
                    status=s.get('status'), name=s.get('name')))
            more = any(link.get('rel') == 'next'
                       for link in body.get('servers_links') or ())
            if not servers or not more:
                return refs
            params = dict(params, marker=servers[-1]['id'])

    def servers_on_host(self, host):
        """The servers of every project on ``host``: list of ServerRef.

        Raises FencingError (naming the host) when Nova cannot tell.
        """
        refs = self._call('listing the servers of host %s' % host,
                          self._list, host)
        # Nova ignores the host filter for non-admins: never trust it.
        return [r for r in refs if r.host == host]

    def all_servers(self):
        """The servers of every project and host: list of ServerRef."""
        return self._call('listing all servers', self._list)

    # -- fencing -------------------------------------------------------------

    def _force_down(self, host, forced=True):
        compute = self._compute()
        if not sdk_utils.supports_microversion(compute, FORCE_DOWN_BY_HOST):
            raise _Permanent('Nova does not offer microversion %s, the '
                             'first with force-down' % FORCE_DOWN_BY_HOST)
        services = [s for s in compute.services(host=host,
                                                binary=NOVA_COMPUTE)
                    if s.host == host and s.binary == NOVA_COMPUTE]
        if not services:
            raise _Permanent('Nova has no %s service on host %s'
                             % (NOVA_COMPUTE, host))
        service = services[0]
        by_uuid = sdk_utils.supports_microversion(compute, FORCE_DOWN_BY_UUID)
        updated = compute.update_service_forced_down(
            service, host=host, binary=NOVA_COMPUTE, forced=forced)
        if updated is not None and updated.is_forced_down is (not forced):
            raise _Permanent('Nova answered forced_down=%s'
                             % str(not forced).lower())
        return ('service %s, microversion %s+' % (service.id,
                                                  FORCE_DOWN_BY_UUID)
                if by_uuid else
                'legacy force-down action, microversion %s'
                % FORCE_DOWN_BY_HOST)

    def force_down(self, host, forced=True):
        """Force down the nova-compute service of ``host`` (or unset it).

        Returns True when Nova accepted it, False otherwise (the reason is
        logged, naming the host).
        """
        started = time.monotonic()
        what = 'force-down' if forced else 'unset of the force-down'
        try:
            how = self._call('%s of nova-compute on host %s' % (what, host),
                             self._force_down, host, forced)
        except FencingError as exc:
            LOG.error('%s', exc)
            return False
        LOG.info('%s nova-compute on host %s (%s) in %.3fs',
                 'Forced down' if forced else 'Unset the force-down of',
                 host, how, time.monotonic() - started)
        return True

    def _reset_one(self, server_id):
        what = 'reset of server %s to error' % server_id
        try:
            self._call(what, self._reset, server_id)
        except FencingError as exc:
            message = str(exc)
            for cause in _causes(exc.__context__):
                if _status_of(cause) == 404:
                    message += (' (the server is gone, or not visible to '
                                'the [%s] user)' % nova.GROUP)
                    break
            LOG.warning('%s', message)
            return message
        except Exception as exc:
            LOG.exception('%s failed', what)
            return '%s failed: %s' % (what, nova.first_line(exc))
        return OK

    def _reset(self, server_id):
        # POST /servers/{id}/action os-resetState, without building a
        # Server resource (CPU the notifications need more).
        resp = self._compute().post(
            '/servers/%s/action' % server_id,
            json={'os-resetState': {'state': 'error'}})
        sdk_exc.raise_from_response(resp)

    def reset_to_error(self, server_ids, on_result=None):
        """Reset servers to ``error`` in parallel.

        Returns a dict: server id -> :data:`OK` or an error message naming
        the server and Nova's answer. Never raises for a single server.
        ``on_result(server_id, result)`` is called as each call ends (the
        fault journal records confirmed resets one by one).
        """
        ids = list(dict.fromkeys(server_ids))
        if not ids:
            return {}
        started = time.monotonic()
        pool = self._pool()

        def reset(sid):
            result = self._reset_one(sid)
            if on_result is not None:
                on_result(sid, result)
            return result
        pending = {sid: pool.submit(reset, sid) for sid in ids}
        results = {sid: f.result() for sid, f in pending.items()}
        failed = sum(1 for r in results.values() if r != OK)
        log = LOG.warning if failed else LOG.info
        log('Reset %d server(s) to error, %d failed, in %.3fs',
            len(ids), failed, time.monotonic() - started)
        return results

    # -- maintenance ---------------------------------------------------------

    def _live_migrate_one(self, server_id):
        what = 'live migration of server %s' % server_id
        try:
            self._call(what, self._live_migrate, server_id)
        except FencingError as exc:
            LOG.warning('%s', exc)
            return str(exc)
        except Exception as exc:
            LOG.exception('%s failed', what)
            return '%s failed: %s' % (what, nova.first_line(exc))
        return OK

    def _live_migrate(self, server_id):
        # The scheduler picks the destination; block_migration 'auto'.
        self._compute().live_migrate_server(server_id)

    def live_migrate(self, server_ids):
        """Ask Nova to live-migrate servers off their host, in parallel.

        Returns a dict: server id -> :data:`OK` (Nova accepted; the move
        itself is asynchronous) or an error message naming the server and
        Nova's answer (e.g. 409 for a server that is not active). Shares
        the reset pool; never raises for a single server.
        """
        ids = list(dict.fromkeys(server_ids))
        if not ids:
            return {}
        started = time.monotonic()
        pool = self._pool()
        pending = {sid: pool.submit(self._live_migrate_one, sid)
                   for sid in ids}
        results = {sid: f.result() for sid, f in pending.items()}
        failed = sum(1 for r in results.values() if r != OK)
        log = LOG.warning if failed else LOG.info
        log('Asked for the live migration of %d server(s), %d refused, in '
            '%.3fs', len(ids), failed, time.monotonic() - started)
        return results
