"""The ICMP echo probe of the ping monitor (:mod:`.ping`).

The probe is a plain ICMP echo over a socket opened once per thread: an
unprivileged ``SOCK_DGRAM``/``IPPROTO_ICMP`` socket where the
``net.ipv4.ping_group_range`` sysctl lets our group use one, else a
``SOCK_RAW`` socket (root or CAP_NET_RAW). No process is started per probe.
Prefer the datagram sockets for many hosts: every raw ICMP socket gets a copy
of every ICMP packet of the machine, so with raw sockets each host's thread
also reads (and drops) the replies of all the others.
"""

import errno
import ipaddress
import os
import random
import select
import socket
import struct
import threading
import time

from oslo_log import log

LOG = log.getLogger(__name__)


class ProbeUnavailable(RuntimeError):
    """No ICMP socket can be opened here."""


ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

# A sendto() failing with one of these means the host cannot be reached: a
# miss. Any other error is ours (a firewall, no buffer...), not the host's.
UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
               errno.ENETDOWN, errno.EADDRNOTAVAIL)


def checksum(data):
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def open_icmp_socket(family=socket.AF_INET):
    """Open an ICMP socket; return (socket, is_raw).

    Tries an unprivileged datagram ICMP socket first, then a raw one.

    :raises ProbeUnavailable: neither can be opened
    """
    proto = (socket.IPPROTO_ICMP if family == socket.AF_INET
             else socket.IPPROTO_ICMPV6)
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except OSError as e:
        dgram_error = e
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), True
    except OSError as e:
        raise ProbeUnavailable(
            'cannot open an ICMP socket: unprivileged ICMP (SOCK_DGRAM) '
            'failed (%s; net.ipv4.ping_group_range must include group %d) '
            'and a raw socket failed (%s; it needs root or CAP_NET_RAW)'
            % (dgram_error, os.getgid(), e))


class _Endpoint:
    """One ICMP socket, used by one thread at a time."""

    def __init__(self, family):
        self.family = family
        self.sock, self.raw = open_icmp_socket(family)
        self.sock.setblocking(False)
        self.v6 = family == socket.AF_INET6
        self.request = ICMPV6_ECHO_REQUEST if self.v6 else ICMP_ECHO_REQUEST
        self.reply = ICMPV6_ECHO_REPLY if self.v6 else ICMP_ECHO_REPLY
        # A datagram socket gets the identifier of its port from the kernel,
        # and only the replies to it; a raw socket sees every ICMP packet of
        # the host, so the identifier and the token tell ours.
        self.ident = random.randrange(1, 0x10000)
        self.seq = random.randrange(0, 0x10000)
        self.token = os.urandom(16)

    def close(self):
        self.sock.close()

    def _drain(self):
        while True:
            try:
                self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return

    def ping(self, sockaddr, timeout):
        self.seq = (self.seq + 1) & 0xffff
        payload = self.token + struct.pack('!d', time.time())
        header = struct.pack('!BBHHH', self.request, 0, 0, self.ident,
                             self.seq)
        if not self.v6:
            # The kernel computes the ICMPv6 checksum itself.
            header = struct.pack('!BBHHH', self.request, 0,
                                 checksum(header + payload), self.ident,
                                 self.seq)
        self._drain()
        try:
            self.sock.sendto(header + payload, sockaddr)
        except OSError as e:
            if e.errno in UNREACHABLE:
                LOG.debug('ICMP echo to %s: %s', sockaddr[0], e)
                return False
            raise
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                return False
            try:
                data, source = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                continue
            if self._is_reply(data, source, sockaddr, payload):
                return True

    def _is_reply(self, data, source, sockaddr, payload):
        if self.raw and not self.v6:
            data = data[(data[0] & 0x0f) * 4:] if data else data
        if len(data) < 8:
            return False
        kind, _code, _sum, ident, seq = struct.unpack('!BBHHH', data[:8])
        if kind != self.reply or seq != self.seq or data[8:] != payload:
            return False
        if self.raw and ident != self.ident:
            return False
        return _same_address(source[0], sockaddr[0])


def _same_address(a, b):
    try:
        return ipaddress.ip_address(a.split('%')[0]) == ipaddress.ip_address(
            b.split('%')[0])
    except ValueError:
        return a == b


class IcmpProbe:
    """``probe(address, timeout) -> bool``: one ICMP echo, True on reply.

    Thread-safe: each thread gets sockets of its own. ``close()`` closes
    them all.
    """

    def __init__(self):
        self._local = threading.local()
        self._lock = threading.Lock()
        self._endpoints = []
        self._sockaddrs = {}

    def sockaddr(self, address):
        """(family, sockaddr) of an address, resolved once.

        :raises ValueError: the address cannot be resolved
        """
        found = self._sockaddrs.get(address)
        if found is None:
            try:
                infos = socket.getaddrinfo(address, None, socket.AF_UNSPEC,
                                           socket.SOCK_RAW)
            except socket.gaierror as e:
                raise ValueError('cannot resolve %r: %s' % (address, e))
            infos = [i for i in infos
                     if i[0] in (socket.AF_INET, socket.AF_INET6)]
            if not infos:
                raise ValueError('%r has no IPv4 or IPv6 address' % address)
            found = (infos[0][0], infos[0][4])
            self._sockaddrs[address] = found
        return found

    def _endpoint(self, family):
        endpoints = getattr(self._local, 'endpoints', None)
        if endpoints is None:
            endpoints = self._local.endpoints = {}
        endpoint = endpoints.get(family)
        if endpoint is None:
            endpoint = _Endpoint(family)
            with self._lock:
                self._endpoints.append(endpoint)
            endpoints[family] = endpoint
        return endpoint

    def check(self, address):
        """Resolve ``address`` and open a socket for it, or raise.

        :raises ValueError: the address cannot be resolved
        :raises ProbeUnavailable: no ICMP socket can be opened
        """
        family, _ = self.sockaddr(address)
        self._endpoint(family)

    def __call__(self, address, timeout):
        family, sockaddr = self.sockaddr(address)
        return self._endpoint(family).ping(sockaddr, timeout)

    def close(self):
        with self._lock:
            endpoints, self._endpoints = self._endpoints, []
        for endpoint in endpoints:
            endpoint.close()
        self._local = threading.local()
