"""The instance map loaded from Nova: at start, then now and again.

In: Nova's list of all servers (through the fencer), and a word from the
inspector when instance events could not be written to the map. Out: the
map replaced with Nova's list (:meth:`replace_all`), and the instances of
a host for a fault (:meth:`MapLoader.instances_of`): the map's, or Nova's
while the map was never loaded. It touches the map and asks Nova; nothing
else.
"""

import threading

from oslo_log import log

from doctor_ext.db import api as db_api
from doctor_ext.inspector import instances as instances_mod
from doctor_ext.inspector import resource_map

LOG = log.getLogger(__name__)


class MapLoader:
    """Loads ``rmap`` from Nova in a thread of its own.

    :param opts: the ``[doctor_inspector]`` options (:mod:`.core`), for
        ``resource_map_resync_interval``.
    """

    def __init__(self, opts, rmap, fencer):
        self._opts = opts
        self.map = rmap
        self.fencer = fencer
        self._stop = threading.Event()
        # Set when an instance event could not be written to the map.
        self._resync_soon = threading.Event()
        self._thread = None

    def start(self):
        """Start loading; False if it was already started."""
        if self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._load_map,
                                        name='doctor-resource-map',
                                        daemon=True)
        self._thread.start()
        return True

    def stop(self):
        self._stop.set()
        self._resync_soon.set()

    def resync_soon(self):
        """Reload from Nova now: instance events were missed."""
        self._resync_soon.set()

    def _load_map(self):
        delay = 0.5
        while not self._stop.is_set():
            try:
                listed_at = db_api.utcnow()
                servers = self.fencer.all_servers()
                self.map.replace_all([resource_map.Instance(
                    s.id, s.project_id, s.user_id, s.host, s.status)
                    for s in servers], **self._as_of(listed_at))
            except Exception as e:
                LOG.warning('Cannot load the instance map from Nova yet, '
                            'retrying in %.1f s: %s', delay, e)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            LOG.info('Instance map loaded from Nova: %d instance(s) on %d '
                     'host(s)', len(self.map), len(self.map.hosts()))
            delay = 0.5
            interval = self._opts.resource_map_resync_interval
            self._resync_soon.wait(interval or None)
            if self._stop.is_set():
                return
            if self._resync_soon.is_set():
                self._resync_soon.clear()
                LOG.info('Reloading the instance map from Nova: instance '
                         'events were missed while the database was down')
            elif not interval:
                return

    def _as_of(self, listed_at):
        # The shared map orders statements by time; the in-process one
        # does not.
        if isinstance(self.map, instances_mod.SharedResourceMap):
            return {'as_of': listed_at}
        return {}

    def instances_of(self, host):
        """The instances on ``host``, or None if they cannot be known yet.

        The shared map answers; only if it was never loaded from Nova (by
        any agent) and knows nothing of the host is Nova asked.
        """
        found = self.map.on_host(host)
        if found or self.map.loaded.is_set():
            return found
        try:
            return [resource_map.Instance(s.id, s.project_id, s.user_id,
                                          s.host, s.status)
                    for s in self.fencer.servers_on_host(host)]
        except Exception as e:
            LOG.error('Instances of host %s unknown: the instance map was '
                      'never loaded and Nova cannot list them: %s', host, e)
            return None
