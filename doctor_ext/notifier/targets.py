"""Action URLs, parsed once into delivery targets.

A :class:`Target` says where and how one action URL is delivered: an
``http``/``https`` consumer (host, port, request path, basic auth from
``user:password@``, the TLS context chosen by ``ssl_verify`` or the URL's
``aodh-alarm-ssl-verify``), or one of Aodh's notifier plugins (stevedore
namespace ``aodh.notifier``: ``log://``, ``trust+http://``, ``zaqar://``
...) for any other scheme. :meth:`Targets.get` raises :class:`BadTarget`,
whose message names the masked URL, for a URL that cannot be delivered to.
"""

import base64
import re
import ssl
import threading
import urllib.parse

from oslo_config import cfg
from oslo_utils import netutils
from oslo_utils import strutils
from stevedore import driver
from stevedore import exception as stevedore_exception

from doctor_ext.notifier import masking
from doctor_ext.notifier import models

GROUP = 'doctor_notifier'

OPTS = [
    cfg.StrOpt('ca_file',
               help='CA bundle to verify consumers\' https certificates '
                    'with (default: the system CA store). Like Aodh\'s '
                    'rest_notifier_ca_bundle_certificate_path.'),
    cfg.StrOpt('cert_file',
               help='Client certificate (PEM) presented to https '
                    'consumers. Like Aodh\'s rest_notifier_certificate_file.'),
    cfg.StrOpt('key_file',
               help='Private key of cert_file, if not in cert_file itself. '
                    'Like Aodh\'s rest_notifier_certificate_key.'),
    cfg.StrOpt('aodh_config_file',
               help='aodh.conf to read for alarm actions that are not '
                    'http(s) (log://, trust+http://, zaqar://...), which '
                    "are handed to Aodh's notifier plugins. Unset: Aodh's "
                    'defaults.'),
    cfg.BoolOpt('ssl_verify', default=True,
                help='Verify https consumers\' certificates. An action URL '
                     'overrides it with the query parameter '
                     'aodh-alarm-ssl-verify=0|1, as in Aodh.'),
]

# Query parameter of an action URL that overrides ssl_verify (Aodh's).
SSL_VERIFY_PARAM = 'aodh-alarm-ssl-verify'
# Stevedore namespace of Aodh's notifier plugins.
AODH_NOTIFIER_NAMESPACE = 'aodh.notifier'
# Parsed URLs kept; the cache is cleared when it is full.
MAX_CACHED = 4096
# What http.client refuses in a request target.
_BAD_PATH_RE = re.compile(r'[\x00-\x20\x7f]')


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class BadTarget(ValueError):
    """The action URL cannot be delivered to; the message says why."""


def load_aodh_conf(conf):
    """Aodh's options, read from ``aodh_config_file`` (or defaults).

    Aodh's own prepare_service() is not called: it would set up logging
    again inside the agent.
    """
    from aodh import opts as aodh_opts
    aodh_conf = cfg.ConfigOpts()
    for group, opts in aodh_opts.list_opts():
        aodh_conf.register_opts(list(opts),
                                group=None if group == 'DEFAULT' else group)
    path = conf[GROUP].aodh_config_file if conf is not None else None
    aodh_conf([], project='aodh', validate_default_values=True,
              default_config_files=[path] if path else [])
    return aodh_conf


class Target:
    """A parsed action URL.

    ``consumer``: the key of its consumer, ``(scheme, host, port)``, which
    the lanes bound and pool connections by; ``refused``: why the egress
    policy refuses its host (an IP literal), or None.
    """

    __slots__ = ('masked', 'scheme', 'host', 'port', 'request_path', 'auth',
                 'ssl_context', 'consumer', 'plugin', 'action',
                 'host_header', 'refused')

    def __init__(self, masked, scheme, host, port, request_path=None,
                 auth=None, ssl_context=None, plugin=None, action=None,
                 refused=None):
        self.masked = masked
        self.refused = refused
        self.scheme = scheme
        self.host = host
        self.port = port
        self.consumer = (scheme, host, port)
        self.request_path = request_path
        self.auth = auth
        self.ssl_context = ssl_context
        self.plugin = plugin
        self.action = action
        name = '[%s]' % host if host and ':' in host else host
        default = {'http': 80, 'https': 443}.get(scheme)
        self.host_header = name if port in (None, default) else '%s:%s' % (
            name, port)


def _reraise(manager, entrypoint, exc):
    raise exc


def _basic_auth(parts):
    # What requests (hence Aodh's REST notifier) does with user:password@.
    if parts.password is None:
        return None
    user = urllib.parse.unquote(parts.username or '')
    password = urllib.parse.unquote(parts.password)
    creds = '%s:%s' % (user, password)
    try:
        raw = creds.encode('latin-1')
    except UnicodeEncodeError:
        raw = creds.encode('utf-8')
    return 'Basic ' + base64.b64encode(raw).decode('ascii')


class Targets:
    """Parses action URLs into :class:`Target` objects, cached per URL.

    ``aodh_conf``: Aodh's ``ConfigOpts`` for its plugins; read from
    ``aodh_config_file`` on first use when None. ``check(host)``: why an
    http(s) host is refused at once, or None (the egress policy, for IP
    literals).
    """

    def __init__(self, conf, aodh_conf=None, check=None):
        self._check = check
        register_opts(conf)
        opts = conf[GROUP]
        self.conf = conf
        self.aodh_conf = aodh_conf
        self._ca_file = opts.ca_file or None
        self._cert_file = opts.cert_file or None
        self._key_file = opts.key_file or None
        self._ssl_verify = opts.ssl_verify
        self._lock = threading.Lock()
        self._cache = {}
        self._plugins = {}
        self._ssl_contexts = {}

    def get(self, url):
        """The Target of ``url``; raises BadTarget."""
        target = self._cache.get(url) if isinstance(url, str) else None
        if target is not None:
            return target
        masked = masking.mask_url(url)
        if not isinstance(url, str) or not url.strip():
            raise BadTarget('invalid action URL %r: empty or not a string'
                            % masked)
        try:
            parts = urllib.parse.urlsplit(url)
            scheme = parts.scheme.lower()
            if not scheme:
                raise ValueError('no scheme')
            if scheme in ('http', 'https'):
                target = self._http(masked, scheme, parts)
            else:
                target = self._plugin_target(url, masked, scheme, parts)
        except BadTarget:
            raise
        except (ValueError, TypeError) as exc:
            raise BadTarget('invalid action URL %r: %s' % (masked, exc))
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[url] = target
        return target

    def _http(self, masked, scheme, parts):
        host = parts.hostname
        if not host:
            raise ValueError('no host')
        port = parts.port
        if port is None:
            port = 443 if scheme == 'https' else 80
        request_path = parts.path or '/'
        if parts.query:
            request_path += '?' + parts.query
        if _BAD_PATH_RE.search(request_path) or _BAD_PATH_RE.search(host):
            raise ValueError('control character or space in the URL')
        context = None
        if scheme == 'https':
            context = self._ssl_context(self._verify(parts.query), masked)
        return Target(masked, scheme, host, port, request_path=request_path,
                      auth=_basic_auth(parts), ssl_context=context,
                      refused=self._check(host) if self._check else None)

    def _verify(self, query):
        # Aodh: bool(int(parse_qs(query).get(param, [default])[-1])).
        values = urllib.parse.parse_qs(query).get(SSL_VERIFY_PARAM)
        if not values:
            return self._ssl_verify
        value = values[-1]
        try:
            return bool(int(value))
        except ValueError:
            try:
                return strutils.bool_from_string(value, strict=True)
            except ValueError:
                raise ValueError('%s=%s is neither 0 nor 1'
                                 % (SSL_VERIFY_PARAM, value))

    def _ssl_context(self, verify, masked):
        context = self._ssl_contexts.get(verify)
        if context is not None:
            return context
        try:
            if verify:
                context = ssl.create_default_context(cafile=self._ca_file)
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self._cert_file:
                context.load_cert_chain(self._cert_file, self._key_file)
        except (OSError, ssl.SSLError) as exc:
            raise BadTarget('cannot notify %r: TLS configuration error '
                            '([%s] ca_file/cert_file/key_file): %s'
                            % (masked, GROUP, models.describe(exc)))
        with self._lock:
            return self._ssl_contexts.setdefault(verify, context)

    def _plugin_target(self, url, masked, scheme, parts):
        plugin = self._plugin(scheme, masked)
        action = netutils.urlsplit(url)
        # Keep the port check lazy: plugins decide what their URLs mean.
        return Target(masked, scheme, parts.hostname or '', None,
                      plugin=plugin, action=action)

    def _plugin(self, scheme, masked):
        with self._lock:
            found = self._plugins.get(scheme)
            if found is None:
                found = self._load_plugin(scheme)
                self._plugins[scheme] = found
        plugin, error = found
        if plugin is None:
            raise BadTarget('cannot notify %r: %s' % (masked, error))
        return plugin

    def _load_plugin(self, scheme):
        """(plugin, None) or (None, why not)."""
        if self.aodh_conf is None:
            try:
                self.aodh_conf = load_aodh_conf(self.conf)
            except Exception as exc:
                return None, ('scheme %r is delegated to Aodh\'s notifier '
                              'plugins, and the Aodh configuration cannot '
                              'be read: %s' % (scheme, models.describe(exc)))
        try:
            manager = driver.DriverManager(
                AODH_NOTIFIER_NAMESPACE, scheme, invoke_on_load=True,
                invoke_args=(self.aodh_conf,),
                on_load_failure_callback=_reraise)
        except stevedore_exception.NoMatches:
            return None, ('unknown scheme %r: not http(s) and no Aodh '
                          'notifier plugin of that name (stevedore '
                          'namespace %s)' % (scheme, AODH_NOTIFIER_NAMESPACE))
        except Exception as exc:
            return None, ('the Aodh notifier plugin of scheme %r cannot be '
                          'loaded: %s' % (scheme, models.describe(exc)))
        return manager.driver, None
