"""Consumers that never answer, and what the agent recorded for them.

A greedy tenant's alarms in the tenant-bounds fault scenario and the
benchmark's ``neighbour`` scenario POST to endpoints nobody serves:

* :class:`Tarpit` -- a listener that never accepts, its accept queue full,
  so that every connection to it times out (on any loopback address:
  127.x.y.z reaches it);
* :func:`loopback_urls` -- distinct loopback URLs of one port (the
  tarpit's, or a consumer double's on 0.0.0.0);
* :func:`link_local_urls` -- distinct link-local URLs, refused by the
  agent's egress policy;
* :func:`outbox_states` -- a project's outbox rows by state, to see every
  notification given up.
"""

import socket


class Tarpit:
    """A TCP listener, on every address, whose connections time out."""

    def __init__(self, connect_timeout):
        self._timeout = connect_timeout
        self._socks = []
        self.port = None

    def start(self):
        sock = socket.socket()
        self._socks.append(sock)
        sock.bind(('0.0.0.0', 0))
        sock.listen(0)
        self.port = sock.getsockname()[1]
        # Fill the accept queue: a connection that completed would wait
        # for the agent's read timeout instead.
        while True:
            filler = socket.socket()
            self._socks.append(filler)
            filler.settimeout(self._timeout)
            try:
                filler.connect(('127.0.0.1', self.port))
            except OSError:
                return self

    def stop(self):
        for sock in self._socks:
            sock.close()
        self._socks = []


def loopback_urls(port, first, count, path='/failure'):
    """``count`` distinct URLs on loopback addresses 127.1.x.y:``port``.

    From address number ``first``; a listener on 0.0.0.0 gets them all.
    """
    return ['http://127.1.%d.%d:%d%s' % (n // 250, n % 250 + 1, port, path)
            for n in range(first, first + count)]


def link_local_urls(first, count, path='/latest'):
    """``count`` distinct link-local URLs, from number ``first``."""
    return ['http://169.254.%d.%d%s' % (n // 250, n % 250 + 1, path)
            for n in range(first, first + count)]


def outbox_states(db_url, project):
    """``{state: rows}`` of ``project``'s rows in the agent's outbox."""
    import sqlalchemy as sa

    from doctor_ext.db import models
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(
                models.outbox.c.state, sa.func.count()).where(
                models.outbox.c.project_id == project).group_by(
                models.outbox.c.state)).all())
    finally:
        engine.dispose()
