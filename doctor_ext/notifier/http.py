"""Delivery of alarm notifications to consumers by HTTP POST.

Consumers (VNF managers) receive exactly what Aodh's REST notifier posts:
a JSON body ``{"alarm_name", "alarm_id", "severity", "previous", "current",
"reason", "reason_data"}`` with the headers ``content-type:
application/json`` and ``x-openstack-request-id: req-<uuid>``. Unlike Aodh's
notifier (a new ``requests`` session per POST, no timeout, no backoff), this
one is built for the fault-management hot path:

* persistent HTTP/1.1 keep-alive connections (``http.client``), one per
  worker thread, reused for every POST of that worker;
* connect and read timeouts;
* bounded retries with exponential backoff and jitter for connection errors,
  timeouts and 5xx answers (any other answer is final);
* isolation: every consumer, that is every ``(scheme, host, port)``, has its
  own *lane* (a queue and up to ``max_connections_per_consumer`` worker
  threads, started on demand): a slow, hanging or dead consumer only ties up
  its own lane.

Action URLs of other schemes (``log://``, ``test://``, ``trust+http://``,
``zaqar://`` ...) are handed to Aodh's installed notifier plugins (stevedore
namespace ``aodh.notifier``), which need Aodh's configuration object; they
run in lanes of their own as well.

:meth:`HttpNotifier.submit` never raises for a bad action URL: the returned
future resolves to a failed :class:`Delivery` whose error names the (masked)
URL. Credentials never reach the logs: see :func:`mask_url`.
"""

import base64
import collections
import concurrent.futures
import http.client
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
import uuid

from oslo_config import cfg
from oslo_log import log
from oslo_utils import netutils
from oslo_utils import strutils
from stevedore import driver
from stevedore import exception as stevedore_exception

LOG = log.getLogger(__name__)

GROUP = 'doctor_notifier'

OPTS = [
    cfg.FloatOpt('connect_timeout', default=1.0, min=0.001,
                 help='Seconds to wait for a TCP (and TLS) connection to a '
                      'consumer.'),
    cfg.FloatOpt('read_timeout', default=5.0, min=0.001,
                 help='Seconds to wait for a consumer to answer a POST '
                      '(between any two bytes of the exchange).'),
    cfg.IntOpt('max_retries', default=3, min=0,
               help='Retries of one notification after a connection error, '
                    'a timeout or a 5xx answer. Any other answer is final.'),
    cfg.FloatOpt('retry_backoff', default=0.1, min=0.0,
                 help='Delay before the first retry, in seconds; it doubles '
                      'with every further retry (with jitter: the actual '
                      'delay is drawn between half and all of it).'),
    cfg.FloatOpt('retry_backoff_max', default=2.0, min=0.0,
                 help='Upper bound of the delay between two retries, in '
                      'seconds.'),
    cfg.IntOpt('max_connections_per_consumer', default=16, min=1,
               help='Worker threads, hence concurrent keep-alive '
                    'connections, per consumer (scheme, host, port). They '
                    'are started when notifications queue up and stop '
                    'after a minute without work.'),
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
# Seconds a lane worker waits for work before it exits (closing its
# connection); a new one starts when notifications arrive again.
SPAWN_BACKLOG = 1
WORKER_IDLE_TIMEOUT = 60.0
# Longest consumer answer body read; a longer one closes the connection.
MAX_RESPONSE_BODY = 64 * 1024
MAX_RESPONSE_HEAD = 64 * 1024
USER_AGENT = 'doctor-ext-notifier'

MASK = '***'
_SECRET_WORDS = r'(?:pass|pwd|token|secret|key|auth|credential|signature)'
# user:password@ (or user@) of a URL; greedy to the last '@' before the
# path, as urllib.parse.urlsplit reads it.
_USERINFO_RE = re.compile(r'//([^/?#]*)@')
# name=value pairs of a query (or fragment) whose name looks secret.
_SECRET_PARAM_RE = re.compile(
    r'([?&;#][^=&;#]*' + _SECRET_WORDS + r'[^=&;#]*=)[^&;#]*', re.IGNORECASE)
# What http.client refuses in a request target.
_BAD_PATH_RE = re.compile(r'[\x00-\x20\x7f]')
# Errors of a reused keep-alive connection the consumer closed meanwhile:
# reconnect once at once, without counting an attempt.
_STALE_ERRORS = (BrokenPipeError, ConnectionAbortedError,
                 ConnectionResetError, http.client.RemoteDisconnected)


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


def register_opts(conf):
    """Register this module's options in ``conf`` (idempotent)."""
    conf.register_opts(OPTS, group=GROUP)


def _mask_userinfo(match):
    userinfo = match.group(1)
    if ':' in userinfo:
        return '//%s:%s@' % (userinfo.split(':', 1)[0], MASK)
    return '//%s@' % MASK


def mask_url(url):
    """Return ``url`` with its credentials replaced by ``***``.

    Masks the password of ``user:password@`` (the whole userinfo when it
    has no password: it is then often a token) and the values of query or
    fragment parameters whose name contains pass, pwd, token, secret, key,
    auth, credential or signature. Works on malformed URLs too and never
    raises.
    """
    if not isinstance(url, str):
        try:
            url = str(url)
        except Exception:
            return '<unprintable URL>'
    masked = _USERINFO_RE.sub(_mask_userinfo, url, count=1)
    return _SECRET_PARAM_RE.sub(r'\1' + MASK, masked)


class Notification:
    """One alarm notification for one action URL."""

    __slots__ = ('action', 'alarm_id', 'alarm_name', 'severity', 'previous',
                 'current', 'reason', 'reason_data', 'project_id')

    def __init__(self, action, alarm_id, alarm_name=None, severity=None,
                 previous=None, current=None, reason=None, reason_data=None,
                 project_id=None):
        self.action = action
        self.alarm_id = alarm_id
        self.alarm_name = alarm_name
        self.severity = severity
        self.previous = previous
        self.current = current
        self.reason = reason
        self.reason_data = reason_data if reason_data is not None else {}
        self.project_id = project_id

    def payload(self):
        """The body Aodh's REST notifier posts (same keys, same order)."""
        return {'alarm_name': self.alarm_name, 'alarm_id': self.alarm_id,
                'severity': self.severity, 'previous': self.previous,
                'current': self.current, 'reason': self.reason,
                'reason_data': self.reason_data}

    def __repr__(self):
        return ('<Notification alarm_id=%s current=%s action=%s>'
                % (self.alarm_id, self.current, mask_url(self.action)))


class Delivery:
    """The outcome of one notification.

    ``ok``: delivered (a 2xx answer, or the Aodh plugin returned);
    ``status``: the last HTTP status received (None if none);
    ``attempts``: POSTs tried (0 when nothing could be sent);
    ``error``: why it failed, naming the masked URL, or None;
    ``submitted_at``, ``sent_at``, ``finished_at``: ``time.monotonic()``
    when submitted, when the first attempt started and when it ended;
    ``url``: the masked action URL; ``request_id``: the
    x-openstack-request-id sent (the same for every attempt).
    """

    __slots__ = ('ok', 'status', 'attempts', 'error', 'sent_at',
                 'finished_at', 'submitted_at', 'url', 'alarm_id',
                 'request_id')

    def __init__(self, ok, status=None, attempts=0, error=None, sent_at=None,
                 finished_at=None, submitted_at=None, url=None,
                 alarm_id=None, request_id=None):
        now = time.monotonic()
        self.ok = ok
        self.status = status
        self.attempts = attempts
        self.error = error
        self.finished_at = now if finished_at is None else finished_at
        self.sent_at = self.finished_at if sent_at is None else sent_at
        self.submitted_at = (self.sent_at if submitted_at is None
                             else submitted_at)
        self.url = url
        self.alarm_id = alarm_id
        self.request_id = request_id

    @property
    def latency(self):
        """Seconds from submit() to the end of the delivery."""
        return self.finished_at - self.submitted_at

    def __repr__(self):
        return ('<Delivery ok=%s status=%s attempts=%s alarm_id=%s url=%s '
                'error=%s>' % (self.ok, self.status, self.attempts,
                               self.alarm_id, self.url, self.error))


class _BadTarget(ValueError):
    """The action URL cannot be delivered to; the message says why."""


class _Target:
    """A parsed action URL (cached per URL string)."""

    __slots__ = ('masked', 'scheme', 'host', 'port', 'request_path', 'auth',
                 'ssl_context', 'lane_key', 'plugin', 'action', 'host_header')

    def __init__(self, masked, scheme, host, port, lane_key,
                 request_path=None, auth=None, ssl_context=None,
                 plugin=None, action=None):
        self.masked = masked
        self.scheme = scheme
        self.host = host
        self.port = port
        self.lane_key = lane_key
        self.request_path = request_path
        self.auth = auth
        self.ssl_context = ssl_context
        self.plugin = plugin
        self.action = action
        name = '[%s]' % host if host and ':' in host else host
        default = {'http': 80, 'https': 443}.get(scheme)
        self.host_header = name if port in (None, default) else '%s:%s' % (
            name, port)


def _describe(exc):
    text = str(exc)
    name = type(exc).__name__
    return '%s: %s' % (name, text) if text else name


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


class _Conn:
    """One keep-alive HTTP/1.1 connection to a consumer, kept lean.

    http.client parses every response's headers with the email package,
    two thirds of its CPU per POST; here the request head is formatted once
    per POST and the response read with bytes operations. TLS goes through
    the target's SSL context. Protocol errors raise http.client's
    exceptions, so the retry rules are the same.
    """

    __slots__ = ('host', 'port', 'ssl_context', 'connect_timeout',
                 'read_timeout', 'sock', '_buf')

    def __init__(self, host, port, ssl_context, connect_timeout,
                 read_timeout):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.sock = None
        self._buf = b''

    def connect(self):
        sock = socket.create_connection((self.host, self.port),
                                        timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(
                    sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buf = b''

    def close(self):
        sock, self.sock = self.sock, None
        self._buf = b''
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _fill(self, fresh):
        data = self.sock.recv(65536)
        if not data:
            if fresh:
                raise http.client.RemoteDisconnected(
                    'Remote end closed connection without response')
            raise http.client.IncompleteRead(self._buf)
        self._buf += data

    def _read_exact(self, n):
        while len(self._buf) < n:
            self._fill(False)
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _read_line(self):
        while True:
            end = self._buf.find(b'\r\n')
            if end >= 0:
                line, self._buf = self._buf[:end], self._buf[end + 2:]
                return line
            if len(self._buf) > MAX_RESPONSE_HEAD:
                raise http.client.LineTooLong('response line')
            self._fill(False)

    def _skip_body(self, length, chunked):
        """Read the response body; False if the connection must close."""
        if chunked:
            while True:
                size = self._read_line().split(b';', 1)[0].strip()
                try:
                    size = int(size, 16)
                except ValueError:
                    raise http.client.HTTPException('bad chunk size %r'
                                                    % size[:20])
                if size == 0:
                    while self._read_line():   # trailers
                        pass
                    return True
                if size > MAX_RESPONSE_BODY:
                    return False
                self._read_exact(size + 2)
        if length is None or length > MAX_RESPONSE_BODY:
            # No length (the body ends when the consumer closes), or a body
            # larger than we read: this connection is done.
            return False
        self._read_exact(length)
        return True

    def exchange(self, data):
        """Send a request; return (status, reason) once it is answered."""
        self.sock.sendall(data)
        fresh = True
        while b'\r\n\r\n' not in self._buf:
            if len(self._buf) > MAX_RESPONSE_HEAD:
                raise http.client.LineTooLong('response head')
            self._fill(fresh)
            fresh = False
        head, self._buf = self._buf.split(b'\r\n\r\n', 1)
        lines = head.split(b'\r\n')
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b'HTTP/'):
            raise http.client.BadStatusLine(repr(lines[0][:100]))
        try:
            status = int(parts[1])
        except ValueError:
            raise http.client.BadStatusLine(repr(lines[0][:100]))
        reason = parts[2].decode('latin-1') if len(parts) > 2 else ''
        length = None
        chunked = False
        keep_alive = parts[0] == b'HTTP/1.1'
        for line in lines[1:]:
            name, _, value = line.partition(b':')
            name = name.strip().lower()
            if name == b'content-length':
                try:
                    length = int(value)
                except ValueError:
                    raise http.client.HTTPException('bad content-length')
            elif name == b'transfer-encoding':
                chunked = b'chunked' in value.lower()
            elif name == b'connection':
                value = value.strip().lower()
                keep_alive = (value == b'keep-alive' or
                              (keep_alive and value != b'close'))
        if status < 200 or status in (204, 304):
            length, chunked = 0, False
        if not self._skip_body(length, chunked) or not keep_alive:
            self.close()
        return status, reason


class _Lane:
    """Queue and worker threads of one consumer (scheme, host, port)."""

    def __init__(self, notifier, key, max_workers):
        self.key = key
        self._notifier = notifier
        self._max_workers = max_workers
        self._cond = threading.Condition(threading.Lock())
        self._queue = collections.deque()
        self._threads = set()
        self._busy = 0
        self._stopping = False
        self._conns = set()
        self._name = 'doctor-notify-%s:%s:%s' % key

    def put(self, item):
        """Queue ``item``; False if the lane is stopping."""
        with self._cond:
            if self._stopping:
                return False
            self._queue.append(item)
            if not self._maybe_spawn():
                self._cond.notify()
        return True

    def _maybe_spawn(self):
        """Start a worker if the lane needs one (called with the lock).

        One worker per lane, and one more whenever every worker is busy
        and the backlog exceeds SPAWN_BACKLOG items per worker, up to
        max_workers: a burst to one consumer widens its lane, while a
        hundred consumers with a few notifications each do not start a
        thousand threads. Checked when an item is queued and when a worker
        takes one.
        """
        workers = len(self._threads)
        if workers >= self._max_workers or self._stopping:
            return False
        if workers and (self._busy < workers or
                        len(self._queue) <= SPAWN_BACKLOG * workers):
            return False
        thread = threading.Thread(target=self._run, name=self._name,
                                  daemon=True)
        self._threads.add(thread)
        thread.start()
        return True

    def _next(self):
        """The next item, or None when this worker is to exit."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    self._threads.discard(threading.current_thread())
                    return None
                if (not self._cond.wait(WORKER_IDLE_TIMEOUT)
                        and not self._queue):
                    self._threads.discard(threading.current_thread())
                    return None
            self._busy += 1
            item = self._queue.popleft()
            self._maybe_spawn()
            return item

    def _run(self):
        conns = {}
        try:
            while True:
                item = self._next()
                if item is None:
                    return
                try:
                    outcome = self._notifier._deliver(item, conns, self)
                finally:
                    with self._cond:
                        self._busy -= 1
                # Resolve only now that this worker counts as available:
                # a submit() woken by the result must not start another.
                if outcome is not None:
                    self._notifier._resolve(*outcome)
        except BaseException:
            LOG.exception('Notifier worker %s died', self._name)
            with self._cond:
                self._threads.discard(threading.current_thread())
            raise
        finally:
            for conn in conns.values():
                self.forget(conn)
                conn.close()

    def remember(self, conn):
        with self._cond:
            self._conns.add(conn)

    def forget(self, conn):
        with self._cond:
            self._conns.discard(conn)

    def stop(self):
        """Fail what is queued, wake the workers, cut open connections."""
        with self._cond:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            conns = list(self._conns)
            self._cond.notify_all()
        for item in pending:
            self._notifier._fail(item, 'the notifier stopped before '
                                       'delivering to %s' % item[2].masked)
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def join(self, deadline):
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class HttpNotifier:
    """Deliver :class:`Notification` objects to their action URLs.

    ``conf``: an oslo.config ``ConfigOpts`` (this module's options are
    registered in it, group ``doctor_notifier``); None for the defaults.
    ``aodh_conf``: Aodh's ``ConfigOpts``, needed only for action URLs that
    are delegated to Aodh's notifier plugins (schemes other than http and
    https); by default read from ``aodh_config_file`` on first use.
    """

    def __init__(self, conf=None, aodh_conf=None):
        if conf is None:
            conf = cfg.ConfigOpts()
            conf([], default_config_files=[], default_config_dirs=[])
        register_opts(conf)
        opts = conf[GROUP]
        self.conf = conf
        self.aodh_conf = aodh_conf
        self._connect_timeout = opts.connect_timeout
        self._read_timeout = opts.read_timeout
        self._max_retries = opts.max_retries
        self._backoff = opts.retry_backoff
        self._backoff_max = opts.retry_backoff_max
        self._max_workers = opts.max_connections_per_consumer
        self._ca_file = opts.ca_file or None
        self._cert_file = opts.cert_file or None
        self._key_file = opts.key_file or None
        self._ssl_verify = opts.ssl_verify
        self._lock = threading.Lock()
        self._lanes = {}
        self._targets = {}
        self._plugins = {}
        self._ssl_contexts = {}
        self._pending = set()
        self._stopped = threading.Event()

    # -- public API --------------------------------------------------------

    def submit(self, notification):
        """Queue ``notification``; return a Future of its :class:`Delivery`.

        Never raises for a bad action URL: the future then resolves at once
        to a failed Delivery whose error names the URL.
        """
        future = concurrent.futures.Future()
        submitted_at = time.monotonic()
        url = getattr(notification, 'action', None)
        alarm_id = getattr(notification, 'alarm_id', None)
        if self._stopped.is_set():
            return self._failed(future, alarm_id, mask_url(url),
                                'the notifier is stopped', submitted_at)
        try:
            target = self._targets.get(url) if isinstance(url, str) else None
            if target is None:
                target = self._target(url)
        except _BadTarget as exc:
            return self._failed(future, alarm_id, mask_url(url), str(exc),
                                submitted_at)
        item = (notification, future, target, submitted_at)
        lane = self._lanes.get(target.lane_key)
        if lane is None:
            lane = self._lane(target.lane_key)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        if not lane.put(item):
            self._fail(item, 'the notifier is stopped')
        return future

    def flush(self, timeout=None):
        """Wait until everything submitted so far is delivered or failed.

        Returns True if it all finished within ``timeout`` seconds.
        """
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return True
        _done, not_done = concurrent.futures.wait(pending, timeout)
        return not not_done

    def stop(self, timeout=5.0):
        """Stop delivering; call :meth:`flush` first to drain the queues.

        Queued notifications and retries waiting for their backoff fail at
        once; POSTs in flight are cut (their sockets are shut down); later
        submits fail. Waits up to ``timeout`` seconds for the workers.
        """
        self._stopped.set()
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.stop()
        deadline = time.monotonic() + (timeout or 0.0)
        for lane in lanes:
            lane.join(deadline)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # -- targets -----------------------------------------------------------

    def _target(self, url):
        masked = mask_url(url)
        if not isinstance(url, str) or not url.strip():
            raise _BadTarget('invalid action URL %r: empty or not a string'
                             % masked)
        try:
            parts = urllib.parse.urlsplit(url)
            scheme = parts.scheme.lower()
            if not scheme:
                raise ValueError('no scheme')
            if scheme in ('http', 'https'):
                target = self._http_target(url, masked, scheme, parts)
            else:
                target = self._plugin_target(url, masked, scheme, parts)
        except _BadTarget:
            raise
        except (ValueError, TypeError) as exc:
            raise _BadTarget('invalid action URL %r: %s' % (masked, exc))
        with self._lock:
            if len(self._targets) >= 4096:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _http_target(self, url, masked, scheme, parts):
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
        return _Target(masked, scheme, host, port, (scheme, host, port),
                       request_path=request_path, auth=_basic_auth(parts),
                       ssl_context=context)

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
            raise _BadTarget('cannot notify %r: TLS configuration error '
                             '([%s] ca_file/cert_file/key_file): %s'
                             % (masked, GROUP, _describe(exc)))
        with self._lock:
            return self._ssl_contexts.setdefault(verify, context)

    def _plugin_target(self, url, masked, scheme, parts):
        plugin = self._plugin(scheme, masked)
        action = netutils.urlsplit(url)
        # Keep the port check lazy: plugins decide what their URLs mean.
        return _Target(masked, scheme, parts.hostname or '', None,
                       (scheme, parts.hostname or '', None), plugin=plugin,
                       action=action)

    def _plugin(self, scheme, masked):
        with self._lock:
            found = self._plugins.get(scheme)
            if found is None:
                found = self._load_plugin(scheme)
                self._plugins[scheme] = found
        plugin, error = found
        if plugin is None:
            raise _BadTarget('cannot notify %r: %s' % (masked, error))
        return plugin

    def _load_plugin(self, scheme):
        """(plugin, None) or (None, why not)."""
        if self.aodh_conf is None:
            try:
                self.aodh_conf = load_aodh_conf(self.conf)
            except Exception as exc:
                return None, ('scheme %r is delegated to Aodh\'s notifier '
                              'plugins, and the Aodh configuration cannot '
                              'be read: %s' % (scheme, _describe(exc)))
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
                          'loaded: %s' % (scheme, _describe(exc)))
        return manager.driver, None

    def _lane(self, key):
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = _Lane(self, key, self._max_workers)
                self._lanes[key] = lane
            return lane

    # -- delivery ----------------------------------------------------------

    def _done(self, future):
        with self._lock:
            self._pending.discard(future)

    def _failed(self, future, alarm_id, masked, error, submitted_at):
        LOG.error('Cannot notify alarm %(alarm_id)s: %(error)s',
                  {'alarm_id': alarm_id, 'error': error})
        future.set_running_or_notify_cancel()
        future.set_result(Delivery(False, error=error, url=masked,
                                   alarm_id=alarm_id,
                                   submitted_at=submitted_at))
        return future

    def _fail(self, item, error):
        notification, future, target, submitted_at = item
        if not future.set_running_or_notify_cancel():
            return
        delivery = Delivery(False, error=error, url=target.masked,
                            alarm_id=notification.alarm_id,
                            submitted_at=submitted_at)
        future.set_result(delivery)
        self._log(delivery)

    def _deliver(self, item, conns, lane):
        """Deliver one item: (future, Delivery), or None if cancelled."""
        notification, future, target, submitted_at = item
        if not future.set_running_or_notify_cancel():
            return None
        try:
            if target.plugin is not None:
                delivery = self._call_plugin(notification, target)
            else:
                delivery = self._post(notification, target, conns, lane)
        except Exception as exc:
            LOG.exception('Unexpected error notifying alarm %(alarm_id)s at '
                          '%(url)s', {'alarm_id': notification.alarm_id,
                                      'url': target.masked})
            delivery = Delivery(False, error='cannot notify %r: %s'
                                % (target.masked, _describe(exc)),
                                url=target.masked,
                                alarm_id=notification.alarm_id)
        delivery.submitted_at = submitted_at
        return future, delivery

    def _resolve(self, future, delivery):
        future.set_result(delivery)
        self._log(delivery)

    def _log(self, delivery):
        if delivery.ok:
            if delivery.attempts > 1:
                LOG.info('Notified alarm %(alarm_id)s at %(url)s after '
                         '%(attempts)d attempts (%(ms).1f ms)',
                         self._log_args(delivery))
            elif LOG.isEnabledFor(logging.DEBUG):
                LOG.debug('Notified alarm %(alarm_id)s at %(url)s: '
                          '%(status)s (%(ms).1f ms)', self._log_args(delivery))
        elif delivery.attempts:
            LOG.error('Failed to notify alarm %(alarm_id)s at %(url)s after '
                      '%(attempts)d attempt(s) (%(ms).1f ms): %(error)s',
                      self._log_args(delivery))
        else:
            LOG.error('Cannot notify alarm %(alarm_id)s: %(error)s',
                      self._log_args(delivery))

    @staticmethod
    def _log_args(delivery):
        return {'alarm_id': delivery.alarm_id, 'url': delivery.url,
                'attempts': delivery.attempts, 'status': delivery.status,
                'error': delivery.error,
                'ms': (delivery.finished_at - delivery.submitted_at) * 1000}

    def _call_plugin(self, notification, target):
        n = notification
        sent_at = time.monotonic()
        try:
            target.plugin.notify(target.action, n.alarm_id, n.alarm_name,
                                 n.severity, n.previous, n.current, n.reason,
                                 n.reason_data)
        except Exception as exc:
            return Delivery(False, attempts=1, sent_at=sent_at,
                            error='Aodh notifier plugin %r failed for %r: %s'
                            % (target.scheme, target.masked, _describe(exc)),
                            url=target.masked, alarm_id=n.alarm_id)
        return Delivery(True, attempts=1, sent_at=sent_at, url=target.masked,
                        alarm_id=n.alarm_id)

    def _post(self, notification, target, conns, lane):
        body = json.dumps(notification.payload(), default=str).encode('utf-8')
        request_id = 'req-' + str(uuid.uuid4())
        head = ('POST %s HTTP/1.1\r\nHost: %s\r\n'
                'content-type: application/json\r\n'
                'content-length: %d\r\nx-openstack-request-id: %s\r\n'
                'user-agent: %s\r\n%s\r\n' % (
                    target.request_path, target.host_header, len(body),
                    request_id, USER_AGENT,
                    'authorization: %s\r\n' % target.auth
                    if target.auth else ''))
        data = head.encode('latin-1') + body
        sent_at = time.monotonic()
        attempts = 0
        status = None
        while True:
            attempts += 1
            retry = True
            try:
                status, reason = self._exchange(target, data, conns, lane)
            except ssl.SSLCertVerificationError as exc:
                error, retry = _describe(exc), False
            except (OSError, http.client.HTTPException) as exc:
                if self._stopped.is_set():
                    error, retry = 'the notifier stopped', False
                else:
                    error = _describe(exc)
            else:
                if 200 <= status < 300:
                    return Delivery(True, status, attempts, sent_at=sent_at,
                                    url=target.masked,
                                    alarm_id=notification.alarm_id,
                                    request_id=request_id)
                error = 'HTTP %d %s' % (status, reason)
                retry = status >= 500
            if not retry or attempts > self._max_retries:
                break
            delay = self._delay(attempts)
            LOG.warning('Notifying alarm %(alarm_id)s at %(url)s failed '
                        '(attempt %(attempt)d of %(total)d): %(error)s; '
                        'retrying in %(delay).3f s',
                        {'alarm_id': notification.alarm_id,
                         'url': target.masked, 'attempt': attempts,
                         'total': self._max_retries + 1, 'error': error,
                         'delay': delay})
            if self._stopped.wait(delay):
                error += '; then the notifier stopped'
                break
        return Delivery(False, status, attempts,
                        error='POST %s: %s' % (target.masked, error),
                        sent_at=sent_at, url=target.masked,
                        alarm_id=notification.alarm_id,
                        request_id=request_id)

    def _delay(self, retry):
        """Backoff before retry number ``retry`` (1, 2, ...), jittered."""
        delay = min(self._backoff_max, self._backoff * (2 ** (retry - 1)))
        return delay / 2 + random.uniform(0, delay / 2)

    def _exchange(self, target, data, conns, lane):
        """One POST on this worker's connection: (status, reason)."""
        key = (target.host, target.port, target.ssl_context)
        conn = conns.get(key)
        if conn is None:
            conn = _Conn(target.host, target.port, target.ssl_context,
                         self._connect_timeout, self._read_timeout)
            conns[key] = conn
            lane.remember(conn)
        if conn.sock is not None:
            try:
                return self._request(conn, data)
            except _STALE_ERRORS:
                # The consumer closed the idle keep-alive connection:
                # reconnect at once, once, without counting an attempt.
                conn.close()
        return self._request(conn, data)

    def _request(self, conn, data):
        try:
            if conn.sock is None:
                try:
                    conn.connect()
                except TimeoutError:
                    raise TimeoutError('no connection within connect_timeout '
                                       '(%s s)' % self._connect_timeout)
            try:
                return conn.exchange(data)
            except TimeoutError:
                raise TimeoutError('no answer within read_timeout (%s s)'
                                   % self._read_timeout)
        except BaseException:
            conn.close()
            raise
