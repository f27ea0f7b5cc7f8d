"""A consumer double: the VNF manager side of alarm notifications.

An HTTP/1.1 keep-alive server on loopback (ephemeral port) that records every
POST it receives (path, parsed JSON body, headers, client address, receive
times) and can be told to misbehave: answer an error status, hang, or refuse
connections. Unit and functional tests, the demo and the benchmark use it::

    consumer = Consumer().start()
    url = consumer.url('/failure')
    ...
    assert consumer.wait_for(1, timeout=5)
    body = consumer.received[0].body
    consumer.stop()

Knobs (global, or for one path):

* :meth:`Consumer.respond` -- answer with a status (for the next ``times``
  requests only, or until changed);
* :meth:`Consumer.hang` / :meth:`Consumer.release` -- hold requests without
  answering, then let them go;
* :meth:`Consumer.refuse` -- close the listening socket and the open
  connections: new connections are refused until :meth:`Consumer.start`.

A request is recorded as soon as it is read, before it hangs, so
:meth:`Consumer.wait_for` tells a test that a hanging request has arrived.
"""

import http.server
import json
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

import fixtures

DEFAULT_PATH = '/failure'


class Received:
    """One request the consumer read."""

    __slots__ = ('method', 'path', 'query', 'raw', 'body', 'headers',
                 'client', 'time', 'monotonic', 'status')

    def __init__(self, method, path, query, raw, body, headers, client,
                 received_time, received_monotonic, status):
        self.method = method
        self.path = path
        self.query = query
        self.raw = raw
        self.body = body
        self.headers = headers
        self.client = client
        self.time = received_time
        self.monotonic = received_monotonic
        self.status = status

    @property
    def client_port(self):
        """The client's source port: one per client connection."""
        return self.client[1]

    def __repr__(self):
        return ('<Received %s %s from %s:%s status=%s>'
                % (self.method, self.path, self.client[0], self.client[1],
                   self.status))


class _Headers(dict):
    """Request headers, names lower-cased (get() is case-insensitive)."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'doctor-ext-consumer'
    disable_nagle_algorithm = True

    def parse_request(self):
        """Lean parsing: the benchmark must measure the notifier, not this.

        The base class parses headers with the email package (about 0.3 ms
        of CPU a request, more than the notifier spends sending it).
        """
        words = self.raw_requestline.decode('latin-1').rstrip('\r\n').split()
        if len(words) != 3 or not words[2].startswith('HTTP/'):
            self.request_version = 'HTTP/0.9'
            self.close_connection = True
            self.send_error(400, 'Bad request line')
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        while True:
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.close_connection = True
                self.send_error(431)
                return False
            if line in (b'\r\n', b'\n', b''):
                break
            name, _, value = line.decode('latin-1').partition(':')
            headers[name.strip().lower()] = value.strip()
        self.headers = headers
        conn = headers.get('connection', '').lower()
        if self.request_version == 'HTTP/1.1':
            self.close_connection = conn == 'close'
        else:
            self.close_connection = conn != 'keep-alive'
        return True

    def setup(self):
        self._tls = None
        context = self.server.consumer.ssl_context
        if context is not None:
            # wrap_socket detaches the accepted socket: track the TLS one.
            consumer = self.server.consumer
            consumer._untrack(self.request)
            self._tls = context.wrap_socket(self.request, server_side=True)
            consumer._track(self._tls)
            self.request = self._tls
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            if self._tls is not None:
                self.server.consumer._untrack(self._tls)
                self._tls.close()

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        received_time = time.time()
        received_monotonic = time.monotonic()
        if 'chunked' in (self.headers.get('Transfer-Encoding') or ''):
            self.close_connection = True
            self._reply(411)
            return
        try:
            length = int(self.headers.get('Content-Length') or 0)
        except ValueError:
            self.close_connection = True
            self._reply(400)
            return
        raw = self.rfile.read(length) if length > 0 else b''
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        split = urllib.parse.urlsplit(self.path)
        record = Received(
            'POST', split.path, split.query, raw, body,
            {name.lower(): value for name, value in self.headers.items()},
            self.client_address[:2], received_time, received_monotonic, None)
        self._reply(self.server.consumer._arrived(record))

    def do_GET(self):
        # A cheap health check; GETs are not recorded.
        self._reply(200, {'received': len(self.server.consumer._received)})

    def _reply(self, status, payload=None):
        body = json.dumps(payload if payload is not None
                          else {'status': status}).encode('ascii')
        reason = self.responses.get(status, ('',))[0]
        head = ('HTTP/1.1 %d %s\r\nServer: %s\r\n'
                'Content-Type: application/json\r\nContent-Length: %d\r\n'
                % (status, reason, self.server_version, len(body)))
        if self.close_connection:
            head += 'Connection: close\r\n'
        # One write: no Nagle / delayed-ACK stall between head and body.
        self.wfile.write(head.encode('latin-1') + b'\r\n' + body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, consumer, address):
        self.consumer = consumer
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (getfqdn): skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        self.consumer._track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.consumer._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, EOFError)):
            return  # a client (or refuse/stop) closed the connection
        super().handle_error(request, client_address)


class Consumer:
    """The consumer double. See the module documentation.

    ``ssl_context``: a server-side ``ssl.SSLContext`` to serve https.
    """

    def __init__(self, host='127.0.0.1', port=0, ssl_context=None):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._cond = threading.Condition(threading.Lock())
        self._received = []
        self._counts = {}
        self._statuses = {}
        self._hangs = {}
        self._delay = 0.0
        self._connections = set()
        self._server = None
        self._thread = None

    # -- life cycle --------------------------------------------------------

    def start(self):
        """Listen (again, on the same port after refuse()); returns self."""
        if self._server is not None:
            raise RuntimeError('consumer already started')
        server = _Server(self, (self.host, self.port))
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={'poll_interval': 0.01},
            name='consumer-%d' % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Release hanging requests, stop listening, close connections."""
        self.release()
        self._close()

    def refuse(self):
        """Close the listening socket and every open connection.

        New connections are refused until :meth:`start` is called again.
        """
        self._close()

    def _close(self):
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            thread.join()
        with self._cond:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def url(self, path=DEFAULT_PATH):
        """The URL of ``path`` on this consumer."""
        if not path.startswith('/'):
            path = '/' + path
        scheme = 'https' if self.ssl_context is not None else 'http'
        return '%s://%s:%d%s' % (scheme, self.host, self.port, path)

    # -- what was received -------------------------------------------------

    @property
    def received(self):
        """A snapshot (list) of the :class:`Received` requests, in order."""
        with self._cond:
            return list(self._received)

    def count(self, path=None):
        """How many requests were received (on ``path``)."""
        with self._cond:
            if path is None:
                return len(self._received)
            return self._counts.get(path, 0)

    def clear(self):
        """Forget the received requests."""
        with self._cond:
            self._received = []
            self._counts = {}

    def wait_for(self, count, timeout=5.0, path=None):
        """Wait until ``count`` requests (on ``path``) were received.

        Returns False if they did not arrive within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = (len(self._received) if path is None
                       else self._counts.get(path, 0))
                if got >= count:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    # -- behaviour knobs ---------------------------------------------------

    def respond(self, status, path=None, times=None):
        """Answer ``status`` (on ``path``, or everywhere).

        ``times``: for the next ``times`` requests only, then back to 200
        (or to the global status, for a path). The status of a request is
        chosen when it arrives.
        """
        with self._cond:
            self._statuses[path] = [status, times]

    def hang(self, path=None):
        """Hold the requests (on ``path``, or all) until :meth:`release`."""
        with self._cond:
            if path not in self._hangs:
                self._hangs[path] = threading.Event()

    def slow(self, seconds):
        """Answer every request ``seconds`` after it arrived (0: at once).

        A slow consumer (a busy VNF manager): the request is recorded on
        arrival, as always.
        """
        with self._cond:
            self._delay = seconds

    def release(self, path=None):
        """Answer the held requests and stop holding new ones.

        ``path=None`` releases everything, global and per-path holds.
        """
        with self._cond:
            if path is None:
                events = list(self._hangs.values())
                self._hangs.clear()
            else:
                event = self._hangs.pop(path, None)
                events = [event] if event is not None else []
        for event in events:
            event.set()

    def reset(self):
        """Back to normal: answer 200 everywhere, release everything."""
        with self._cond:
            self._statuses.clear()
            self._delay = 0.0
        self.release()

    # -- server side -------------------------------------------------------

    def _status(self, path):
        for key in (path, None):
            entry = self._statuses.get(key)
            if entry is None:
                continue
            status, times = entry
            if times is not None:
                times -= 1
                if times <= 0:
                    del self._statuses[key]
                else:
                    entry[1] = times
            return status
        return 200

    def _arrived(self, record):
        with self._cond:
            record.status = self._status(record.path)
            hold = self._hangs.get(record.path) or self._hangs.get(None)
            delay = self._delay
            self._received.append(record)
            self._counts[record.path] = self._counts.get(record.path, 0) + 1
            self._cond.notify_all()
        if hold is not None:
            hold.wait()
        if delay:
            time.sleep(delay)    # the consumer's own work, modelled
        return record.status

    def _track(self, sock):
        with self._cond:
            self._connections.add(sock)

    def _untrack(self, sock):
        with self._cond:
            self._connections.discard(sock)


class ConsumerFixture(fixtures.Fixture):
    """A started :class:`Consumer` (``.consumer``), stopped at cleanup."""

    def __init__(self, **kwargs):
        super().__init__()
        self._kwargs = kwargs
        self.consumer = None

    def _setUp(self):
        self.consumer = Consumer(**self._kwargs)
        self.consumer.start()
        self.addCleanup(self.consumer.stop)

    def url(self, path=DEFAULT_PATH):
        return self.consumer.url(path)
