"""Egress policy: which addresses the notifier may POST to.

Alarm action URLs are chosen by tenants, and the agent that POSTs them
holds Nova admin credentials and Aodh's database. By default it refuses to
connect to:

* loopback (127.0.0.0/8, ::1), the unspecified addresses (0.0.0.0/8, ::)
  and link-local addresses (169.254.0.0/16, fe80::/10: the metadata
  service);
* the addresses of its own endpoints: the host of ``[doctor_evaluator]
  aodh_connection``, of ``[doctor_nova]`` ``auth_url`` and
  ``endpoint_override``, and of the message broker (``[DEFAULT]`` and
  ``[oslo_messaging_notifications]`` ``transport_url``).

``egress_allow`` and ``egress_deny`` (CIDR lists) come first: the most
specific entry that contains the address decides (``egress_deny`` on a
tie); an address that no entry contains is refused if a rule above refuses
it, and allowed otherwise.

The check applies to every *resolved* address: :meth:`EgressPolicy.addresses`
resolves the host once and returns the socket addresses to connect to, so
the connection goes to the address that was checked (no second
resolution). A host with any refused address is refused as a whole.
"""

import ipaddress
import socket
import threading
import time
import urllib.parse

from oslo_config import cfg
from oslo_log import log

LOG = log.getLogger(__name__)

GROUP = 'doctor_notifier'

# Seconds between two resolutions of the agent's own endpoint hosts.
OWN_ENDPOINTS_REFRESH = 300.0


def cidr(value):
    """An IP network from ``value`` (host bits allowed: 10.1.2.3/8)."""
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return value
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise ValueError('%r is not an IP network in CIDR notation '
                         '(e.g. 10.0.0.0/8 or fd00::/8)' % value)


cidr.type_name = 'CIDR'

OPTS = [
    cfg.ListOpt('egress_allow', default=[], item_type=cidr,
                help='Networks (CIDR, e.g. 10.20.0.0/16) that action URLs '
                     'may reach even though the default rules refuse them '
                     '(loopback, link-local, the agent\'s own endpoints). '
                     'With egress_deny: the most specific entry containing '
                     'the address decides, egress_deny on a tie.'),
    cfg.ListOpt('egress_deny', default=[], item_type=cidr,
                help='Networks (CIDR) that action URLs may never reach, on '
                     'top of the default rules. A POST to a refused address '
                     'is not sent: the notification is given up at once and '
                     'logged once per alarm and URL.'),
]

_BUILTIN = [(cidr(net), why) for net, why in (
    ('127.0.0.0/8', 'loopback'), ('::1/128', 'loopback'),
    ('0.0.0.0/8', 'unspecified'), ('::/128', 'unspecified'),
    ('169.254.0.0/16', 'link-local'), ('fe80::/10', 'link-local'))]


class EgressRefused(Exception):
    """The egress policy refuses the address; the message says why."""


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def ip_of(address):
    """The ip_address of ``address`` (IPv4-mapped IPv6 as IPv4)."""
    ip = ipaddress.ip_address(address.split('%', 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def literal(host):
    """``host`` as an ip_address if it is an IP literal, else None."""
    try:
        return ip_of(host)
    except ValueError:
        return None


def _option(conf, group, name):
    try:
        return (conf[group] if group else conf)[name]
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
        return None


def _url_hosts(url):
    try:
        parts = urllib.parse.urlsplit(url)
        return [parts.hostname] if parts.hostname else []
    except ValueError:
        return []


def _keystone_auth_url(conf):
    """``[doctor_nova]``'s auth_url, as keystoneauth loads it."""
    from keystoneauth1 import loading as ks_loading
    try:
        ks_loading.register_auth_conf_options(conf, 'doctor_nova')
        auth = ks_loading.load_auth_from_conf_options(conf, 'doctor_nova')
    except Exception as exc:
        LOG.debug('No Keystone auth_url for the egress policy: %s', exc)
        return None
    return getattr(auth, 'auth_url', None)


def own_endpoint_hosts(conf):
    """Host names or addresses of the services the agent itself uses.

    Read from the options other modules register; an option not
    registered, unset or unreadable is skipped.
    """
    hosts = set()
    db_url = _option(conf, 'doctor_evaluator', 'aodh_connection')
    if db_url:
        try:
            from sqlalchemy.engine import url as sa_url
            host = sa_url.make_url(db_url).host
            if host:
                hosts.add(host)
        except Exception:
            LOG.debug('[doctor_evaluator] aodh_connection has no host the '
                      'egress policy can read')
    for url in (_keystone_auth_url(conf),
                _option(conf, 'doctor_nova', 'endpoint_override')):
        if url:
            hosts.update(_url_hosts(url))
    for group in (None, 'oslo_messaging_notifications'):
        url = _option(conf, group, 'transport_url')
        if not url:
            continue
        try:
            import oslo_messaging
            parsed = oslo_messaging.TransportURL.parse(conf, url)
            hosts.update(h.hostname for h in parsed.hosts if h.hostname)
        except Exception:
            LOG.debug('A transport_url has no host the egress policy can '
                      'read')
    return hosts


class EgressPolicy:
    """The addresses the notifier may connect to; see the module doc.

    ``conf``: the agent's configuration (``[doctor_notifier]`` egress
    options and the options of its own endpoints); ``own_hosts``: extra
    host names or addresses to treat as the agent's own (tests).
    """

    def __init__(self, conf, own_hosts=()):
        register_opts(conf)
        opts = conf[GROUP]
        self._rules = sorted(
            [(n, True) for n in opts.egress_allow] +
            [(n, False) for n in opts.egress_deny],
            key=lambda r: (r[0].prefixlen, not r[1]), reverse=True)
        self._conf = conf
        self._extra = set(own_hosts)
        self._lock = threading.Lock()
        self._own = {}
        self._own_at = None
        self._refresh()

    def _refresh(self):
        """Resolve the agent's own endpoint hosts (address -> host)."""
        own = {}
        hosts = own_endpoint_hosts(self._conf) | self._extra
        for host in sorted(hosts):
            try:
                infos = socket.getaddrinfo(host, None,
                                           type=socket.SOCK_STREAM)
            except OSError as exc:
                LOG.warning('Cannot resolve %(host)s, an endpoint of this '
                            'agent, for the egress policy: %(error)s',
                            {'host': host, 'error': exc})
                continue
            for info in infos:
                own[ip_of(info[4][0])] = host
        with self._lock:
            self._own = own
            self._own_at = time.monotonic()

    def _own_endpoints(self):
        if time.monotonic() - self._own_at > OWN_ENDPOINTS_REFRESH:
            with self._lock:
                stale = (time.monotonic() - self._own_at >
                         OWN_ENDPOINTS_REFRESH)
                if stale:
                    # One refresh at a time; the others use the old map.
                    self._own_at = time.monotonic()
            if stale:
                self._refresh()
        return self._own

    def why_refused(self, ip):
        """Why ``ip`` (an ip_address) is refused, or None if allowed."""
        for network, allow in self._rules:
            if ip.version == network.version and ip in network:
                if allow:
                    return None
                return 'in [%s] egress_deny (%s)' % (GROUP, network)
        for network, why in _BUILTIN:
            if ip.version == network.version and ip in network:
                return 'a %s address' % why
        host = self._own_endpoints().get(ip)
        if host is not None:
            return 'an address of %s, an endpoint of this agent' % host
        return None

    def refusal(self, host, ip):
        """Why ``ip`` of ``host`` is refused, as an error, or None."""
        why = self.why_refused(ip)
        if why is None:
            return None
        shown = str(ip) if str(ip) == host else '%s (%s)' % (host, ip)
        return ('refused by the egress policy: %s is %s; [%s] egress_allow '
                'lets it through' % (shown, why, GROUP))

    def check(self, host, ip):
        """Raise EgressRefused if ``ip`` of ``host`` is refused."""
        error = self.refusal(host, ip)
        if error is not None:
            raise EgressRefused(error)

    def addresses(self, host, port):
        """Resolve ``host`` once; the checked getaddrinfo entries.

        Raises EgressRefused if any resolved address is refused, and
        OSError (socket.gaierror) if the name does not resolve.
        """
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for info in infos:
            self.check(host, ip_of(info[4][0]))
        return infos
