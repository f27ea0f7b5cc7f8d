"""Which instances run on which host, and whose they are.

Filled from Nova once at start (in the background, retried until Nova
answers) and kept current from the ``compute.instance.*`` events that
already flow through the notification agent, so that a host failure is
turned into the list of affected instances and owners without asking Nova.
"""

import threading

from oslo_log import log

LOG = log.getLogger(__name__)

DELETED_STATES = ('deleted', 'soft-delete', 'soft_deleted')
# Events whose payload.host is not where the instance is when they arrive:
# the source compute sends live_migration._post.end after the destination
# has taken the instance (and sent post.dest.end with its own host), from
# its stale copy of the instance that still names the source.
STALE_HOST_EVENTS = frozenset(['compute.instance.live_migration._post.end'])


class Instance:
    __slots__ = ('instance_id', 'project_id', 'user_id', 'host', 'state')

    def __init__(self, instance_id, project_id, user_id=None, host=None,
                 state=None):
        self.instance_id = instance_id
        self.project_id = project_id
        self.user_id = user_id
        self.host = host
        self.state = state

    def __repr__(self):
        return '<Instance %s project=%s host=%s>' % (
            self.instance_id, self.project_id, self.host)


def ask_nova(fencer, host):
    """The instances Nova lists on ``host``, for a map not loaded yet.

    Returns [] (and logs why) if Nova cannot tell.
    """
    try:
        return [Instance(s.id, s.project_id, s.user_id, s.host, s.status)
                for s in fencer.servers_on_host(host)]
    except Exception as e:
        LOG.error('Instance map not loaded and Nova cannot list the '
                  'instances of %s: %s', host, e)
        return []


class ResourceMap:
    def __init__(self):
        self._lock = threading.Lock()
        self._instances = {}   # instance_id -> Instance
        self._hosts = {}       # host -> {instance_id: Instance}
        self.loaded = threading.Event()

    def __len__(self):
        return len(self._instances)

    def _place(self, inst):
        old = self._instances.get(inst.instance_id)
        if old is not None and old.host != inst.host:
            on_old = self._hosts.get(old.host)
            if on_old is not None:
                on_old.pop(inst.instance_id, None)
                if not on_old:
                    del self._hosts[old.host]
        self._instances[inst.instance_id] = inst
        if inst.host:
            self._hosts.setdefault(inst.host, {})[inst.instance_id] = inst

    def set(self, instance_id, project_id, host, user_id=None, state=None):
        with self._lock:
            self._place(Instance(instance_id, project_id, user_id, host,
                                 state))

    def remove(self, instance_id):
        with self._lock:
            inst = self._instances.pop(instance_id, None)
            if inst is not None and inst.host in self._hosts:
                self._hosts[inst.host].pop(instance_id, None)
                if not self._hosts[inst.host]:
                    del self._hosts[inst.host]
            return inst

    def replace_all(self, instances):
        """Load the map from Nova's list; later events win over it."""
        with self._lock:
            self._instances = {}
            self._hosts = {}
            for inst in instances:
                self._place(inst)
        self.loaded.set()

    def on_host(self, host):
        """The instances on ``host`` (a snapshot list)."""
        return list(self._hosts.get(host, {}).values())

    def host_of(self, instance_id):
        inst = self._instances.get(instance_id)
        return inst.host if inst is not None else None

    def hosts(self):
        return list(self._hosts)

    def apply(self, event):
        """Follow a ``compute.instance.*`` event; True if it changed the map.

        See :func:`statement` for the traits it reads.
        """
        said = statement(event)
        if said is None:
            return False
        instance_id, inst = said
        if inst is None:
            return self.remove(instance_id) is not None
        self.set(instance_id, inst.project_id, inst.host, inst.user_id,
                 inst.state)
        return True


def statement(event):
    """What a ``compute.instance.*`` event says about its instance.

    Returns ``(instance_id, Instance)``, ``(instance_id, None)`` for an
    instance deleted, or None when the event names no instance, host or
    owner, or names a host the instance has left
    (:data:`STALE_HOST_EVENTS`). Uses the traits of our event definitions:
    instance_id, tenant_id, user_id, host (the instance's compute host, from
    payload.host), state.
    """
    traits = event.traits
    instance_id = traits.get('instance_id')
    if not instance_id:
        return None
    state = traits.get('state')
    if (event.event_type.endswith('delete.end') or
            state in DELETED_STATES):
        return instance_id, None
    if event.event_type in STALE_HOST_EVENTS:
        return None
    host = traits.get('host')
    project = traits.get('tenant_id') or traits.get('project_id')
    if not host or not project:
        return None
    return instance_id, Instance(instance_id, project, traits.get('user_id'),
                                 host, state)
