"""A lean keep-alive HTTP/1.1 client connection for consumer POSTs.

:class:`Connection` sends a request formatted by the caller and reads the
answer's status with bytes operations. It exists because the hot path is
one POST per affected VM: measured on this machine (one thread, keep-alive,
1,000 POSTs to the lab consumer, ``tools/notifier_microbench.py
--client``), it costs about 11-12 us of CPU per POST where urllib3 2.8
costs about 106-112 us (http.client parses every answer's headers with the
email package). It connects only to the socket addresses
its ``resolve`` callable returns (the egress policy's checked addresses),
follows no redirect, and raises http.client's exceptions, so that retry
rules can be written against them.
"""

import http.client
import socket

# Longest consumer answer body read; a longer one closes the connection.
MAX_RESPONSE_BODY = 64 * 1024
MAX_RESPONSE_HEAD = 64 * 1024
# Errors of a reused keep-alive connection the consumer closed meanwhile:
# reconnect once at once, without counting an attempt.
STALE_ERRORS = (BrokenPipeError, ConnectionAbortedError,
                ConnectionResetError, http.client.RemoteDisconnected)


def _resolve(host, port):
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class Connection:
    """One keep-alive HTTP/1.1 connection to a consumer, kept lean.

    http.client parses every response's headers with the email package,
    two thirds of its CPU per POST; here the request head is formatted once
    per POST and the response read with bytes operations. TLS goes through
    the target's SSL context. Protocol errors raise http.client's
    exceptions, so the retry rules are the same.
    """

    __slots__ = ('host', 'port', 'ssl_context', 'connect_timeout',
                 'read_timeout', 'resolve', 'sock', '_buf', '_connecting')

    def __init__(self, host, port, ssl_context, connect_timeout,
                 read_timeout, resolve=None):
        self.host = host
        self.resolve = resolve or _resolve
        self.port = port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.sock = None
        self._buf = b''
        self._connecting = None

    def connect(self):
        """Connect to the first address that answers.

        The addresses are those ``resolve(host, port)`` returns: checked
        by the egress policy, and not resolved a second time.
        """
        error = None
        for family, type_, proto, _name, address in self.resolve(
                self.host, self.port):
            sock = socket.socket(family, type_, proto)
            self._connecting = sock
            try:
                sock.settimeout(self.connect_timeout)
                sock.connect(address)
                break
            except OSError as exc:
                sock.close()
                sock, error = None, exc
            finally:
                self._connecting = None
        else:
            raise error or OSError('%s resolves to no address' % self.host)
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

    def shutdown(self):
        """Cut the connection under a POST in flight (from any thread).

        A connect in progress is aborted too (Linux ends a connect whose
        socket is shut down).
        """
        for sock in (self._connecting, self.sock):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

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
