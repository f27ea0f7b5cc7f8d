"""The inspector's connection to Nova: the ``[doctor_nova]`` options.

The group holds keystoneauth's auth, session and adapter options beside
doctor-ext's own (:data:`OPTS`); :func:`connect` builds the keystoneauth1
session and the openstacksdk ``Connection`` from them, for
:class:`.fencing.NovaFencer`. Operators who want Ceilometer's own
credentials set ``auth_section = service_credentials``.

Of keystoneauth's adapter options, ``valid_interfaces``,
``endpoint_override``, ``service_name`` and the connect / status-code retry
options are passed on to openstacksdk; the version options are not (the
microversion is negotiated per call). The session option ``timeout`` is
replaced by ``call_timeout``.
"""

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from openstack import connection
from oslo_config import cfg

GROUP = 'doctor_nova'

_INTERFACES = ('public', 'internal', 'admin',
               'publicURL', 'internalURL', 'adminURL')


def _adapter_opts():
    return ks_loading.get_adapter_conf_options(include_deprecated=False)


# keystoneauth's own region_name option (the adapter one), so that
# registering the adapter options in the group after OPTS is a no-op for it.
_REGION_OPT = next(o for o in _adapter_opts() if o.dest == 'region_name')

OPTS = [
    cfg.IntOpt('max_parallel_resets', default=32, min=1,
               help='Most reset-state calls in flight at once (shared by '
                    'every host being fenced).'),
    cfg.FloatOpt('call_timeout', default=10.0, min=0.001,
                 help='Seconds to wait for Nova (or Keystone) to answer one '
                      'HTTP call, retries not included. It replaces the '
                      'keystoneauth session option "timeout", which is '
                      'ignored in this group.'),
    cfg.IntOpt('max_retries', default=3, min=0,
               help='Retries of a call that failed with a 5xx answer, a '
                    'connection error or a timeout. 4xx answers are never '
                    'retried.'),
    cfg.FloatOpt('retry_backoff', default=0.2, min=0.0,
                 help='Seconds before the first retry; doubled for each '
                      'next one.'),
    _REGION_OPT,
    cfg.StrOpt('interface', choices=_INTERFACES,
               help='Catalog interface of the compute endpoint. Unset: '
                    'valid_interfaces if set, else the interface of the '
                    'auth_section group if it has one (Ceilometer\'s '
                    '[service_credentials] does), else public.'),
]

_OWN = frozenset(o.dest for o in OPTS)


def list_auth_opts():
    """keystoneauth options of ``[doctor_nova]``, for the config generator.

    The common auth options (``auth_type``, ``auth_section``), the
    ``password`` plugin's, the session's and the adapter's, without the
    ones :data:`OPTS` already lists.
    """
    seen = set(_OWN)
    result = []
    for opt in (ks_loading.get_auth_common_conf_options() +
                ks_loading.get_auth_plugin_conf_options('password') +
                ks_loading.get_session_conf_options() +
                _adapter_opts()):
        if opt.dest not in seen:
            seen.add(opt.dest)
            result.append(opt)
    return result


def register_opts(conf):
    """Register :data:`OPTS` and keystoneauth's options in ``[doctor_nova]``.

    Idempotent. The auth plugin's own options (``auth_url``, ``username``,
    ...) are registered when the plugin is loaded, as keystoneauth does.
    """
    conf.register_opts(OPTS, group=GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    ks_loading.register_session_conf_options(conf, GROUP)
    ks_loading.register_adapter_conf_options(conf, GROUP,
                                             include_deprecated=False)


class FencingError(Exception):
    """A Nova call failed; the message names the host or server and why."""


def first_line(text):
    """``text`` on one line, at most 300 characters (for messages)."""
    text = ' '.join(str(text or '').split())
    return text[:300]


def _auth_section_value(conf, name):
    section = conf[GROUP].auth_section
    if not section:
        return None
    try:
        return conf[section][name]
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
        return None


def connect(conf):
    """(keystoneauth session, openstacksdk Connection) of ``[doctor_nova]``.

    Touches no network: authentication and discovery happen on the first
    call.

    :raises FencingError: the auth options are incomplete or missing
    """
    opts = conf[GROUP]
    if opts.auth_section:
        # auth_type lives in the auth_section group: make sure it is
        # registered there (Ceilometer does it for its own groups).
        ks_loading.register_auth_conf_options(conf, GROUP)
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, GROUP)
    except ks_exc.ClientException as exc:
        raise FencingError('[%s] auth options are incomplete: %s'
                           % (GROUP, first_line(exc)))
    if auth is None:
        raise FencingError(
            '[%s] has no credentials: set auth_type (e.g. password) and '
            'its options, or auth_section = service_credentials' % GROUP)
    session = ks_loading.load_session_from_conf_options(
        conf, GROUP, auth=auth, timeout=opts.call_timeout)
    # A connection pool as wide as the reset pool (requests keeps 10).
    adapter = ks_session.TCPKeepAliveAdapter(
        pool_connections=4, pool_maxsize=opts.max_parallel_resets + 4,
        tls_ciphers=session.tls_ciphers,
        tls_min_version=session.tls_min_version)
    session.session.mount('http://', adapter)
    session.session.mount('https://', adapter)

    interface = (opts.valid_interfaces or opts.interface or
                 _auth_section_value(conf, 'interface') or 'public')
    region = opts.region_name or _auth_section_value(conf, 'region_name')
    extra = {}
    for name in ('endpoint_override', 'service_name', 'connect_retries',
                 'connect_retry_delay', 'status_code_retries',
                 'status_code_retry_delay', 'retriable_status_codes'):
        value = opts[name]
        if value is not None:
            extra['compute_' + name] = value
    return session, connection.Connection(
        session=session, compute_api_version='2', region_name=region,
        interface=interface, strict_proxies=True,
        app_name='doctor-ext', **extra)
