"""The resource map's changes, told to those who follow them.

In: each event the inspector applies to its resource map: an instance
event (``compute.instance.*``, :meth:`MapFeed.apply`) or an event about a
host's state (a compute service's ``service.update``,
``maintenance.host``, ``maintenance.host.end``: :meth:`MapFeed.host_state`).
Out: to each :class:`Follower`, what changed: an instance arrived on a
host, an instance left a host, a host's state. Followers (host maintenance,
:mod:`.maintenance`) see nothing else of the inspector, and the inspector
knows nothing of them but this interface. It touches the map only: where an
instance was is read only while a follower watches the moves.
"""

HOST_STATE_EVENTS = ('service.update', 'maintenance.host',
                     'maintenance.host.end')


class Follower:
    """What a follower of the map's changes may implement."""

    def watching(self):
        """True while instance moves matter (each costs a map read)."""
        return False

    def arrived(self, host, instance_id):
        """``instance_id`` is now on ``host`` (it was elsewhere or unknown)."""

    def left(self, host, instance_id):
        """``instance_id`` is no longer on ``host`` (moved or deleted)."""

    def host_state(self, event, received):
        """An event about the state of a host (:data:`HOST_STATE_EVENTS`).

        May raise: the event is then not acknowledged (it is requeued).
        """


class MapFeed:
    """The resource map, written through here so that followers hear."""

    def __init__(self, rmap):
        self.map = rmap
        self._followers = []

    def add(self, follower):
        self._followers.append(follower)

    def apply(self, event):
        """Apply an instance event to the map; tell the followers.

        Raises what the map's ``apply`` raises (nothing is told then).
        """
        watching = [f for f in self._followers if f.watching()]
        instance_id = event.traits.get('instance_id')
        was_on = self.map.host_of(instance_id) if watching else None
        self.map.apply(event)
        if not watching:
            return
        now_on = self.map.host_of(instance_id) if instance_id else None
        if was_on == now_on:
            return
        for follower in watching:
            if now_on is not None:
                follower.arrived(now_on, instance_id)
            if was_on is not None:
                follower.left(was_on, instance_id)

    def host_state(self, event, received):
        """Tell the followers of an event about a host's state."""
        if event.event_type not in HOST_STATE_EVENTS:
            return
        for follower in self._followers:
            follower.host_state(event, received)
