"""A compute host the monitor can ping, and fail: a network namespace.

The host's address lives inside a network namespace of our own, joined to
this machine by a veth pair on a /30 of 10.254.0.0/16. Taking the inner link
down makes the host stop answering, as a failed host does. Needs root (or
CAP_NET_ADMIN) and iproute2.
"""

import subprocess
import uuid


class FaultyHost:
    """A compute host the monitor can ping: a network namespace of ours."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.ns = 'doctor-%s' % tag
        self.outer, self.inner = 'dx%s0' % tag, 'dx%s1' % tag
        octet = 1 + int(tag[:2], 16) % 250
        self.local_ip = '10.254.%d.1' % octet
        self.address = '10.254.%d.2' % octet
        self.created = False

    @staticmethod
    def _ip(*args):
        subprocess.run(('ip',) + args, check=True, capture_output=True,
                       timeout=20)

    def create(self):
        self._ip('netns', 'add', self.ns)
        self.created = True
        self._ip('link', 'add', self.outer, 'type', 'veth', 'peer', 'name',
                 self.inner)
        self._ip('link', 'set', self.inner, 'netns', self.ns)
        self._ip('addr', 'add', self.local_ip + '/30', 'dev', self.outer)
        self._ip('link', 'set', self.outer, 'up')
        self._ip('netns', 'exec', self.ns, 'ip', 'addr', 'add',
                 self.address + '/30', 'dev', self.inner)
        self._ip('netns', 'exec', self.ns, 'ip', 'link', 'set', self.inner,
                 'up')
        self._ip('netns', 'exec', self.ns, 'ip', 'link', 'set', 'lo', 'up')
        return self

    def fail(self):
        self._ip('netns', 'exec', self.ns, 'ip', 'link', 'set', self.inner,
                 'down')

    def recover(self):
        self._ip('netns', 'exec', self.ns, 'ip', 'link', 'set', self.inner,
                 'up')

    def destroy(self):
        if self.created:
            subprocess.run(['ip', 'link', 'del', self.outer],
                           capture_output=True, timeout=20)
            subprocess.run(['ip', 'netns', 'del', self.ns],
                           capture_output=True, timeout=20)
            self.created = False
