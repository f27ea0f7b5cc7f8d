"""A TCP proxy on loopback whose flow a test can hold, cut and restore.

The fault suite puts one in front of its database; the real-Nova fixture
(tests/realnova) puts one in front of nova-api, so that the catalog's
compute endpoint can be slowed or refused while Nova itself keeps running.
"""

import selectors
import socket
import threading

from doctor_ext_lab import services


class TcpProxy:
    """A TCP proxy on loopback that can be cut and restored.

    ``cut()`` closes every proxied connection and the listening socket:
    the client sees its connections drop and new ones refused, as when a
    database server goes down. ``hang()`` keeps every connection open but
    forwards nothing (new ones are accepted and held): the server no longer
    answers. ``restore()`` listens again on the same port, and forwards.
    """

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.port = services.free_port()
        self._lock = threading.Lock()
        self._conns = set()
        self._listener = None
        self._thread = None
        self.accepted = 0
        # Connections and chunks that waited for a hang() to end.
        self.held = 0
        self._flowing = threading.Event()
        self.restore()

    def hang(self):
        self._flowing.clear()

    def restore(self):
        self._flowing.set()
        with self._lock:
            if self._listener is not None:
                return
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(('127.0.0.1', self.port))
            sock.listen(64)
            self._listener = sock
        self._thread = threading.Thread(target=self._accept, args=(sock,),
                                        daemon=True, name='tcp-proxy')
        self._thread.start()

    def cut(self):
        with self._lock:
            sock, self._listener = self._listener, None
            conns, self._conns = list(self._conns), set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    stop = cut

    def _hold(self):
        if not self._flowing.is_set():
            with self._lock:
                self.held += 1
        self._flowing.wait()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(listener, client),
                             daemon=True).start()

    def _connect(self, listener, client):
        with self._lock:
            self._conns.add(client)
        self._hold()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            if self._listener is not listener or client not in self._conns:
                client.close()
                upstream.close()
                return
            self._conns.add(upstream)
            self.accepted += 1
        self._pump(client, upstream)

    def _pump(self, a, b):
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    self._hold()
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                with self._lock:
                    self._conns.discard(s)
                try:
                    s.close()
                except OSError:
                    pass
