"""NFVI maintenance: owners warned, host emptied, administrator told.

The administrator puts a compute host into maintenance the way operators
already do, and the inspector (:mod:`.core`) hands the events to the
:class:`MaintenanceTracker`:

* Nova's versioned ``service.update`` of a ``nova-compute`` service with
  ``disabled=1`` and a ``disabled_reason`` (``openstack compute service set
  --disable --disable-reason ...``), or Doctor's ``maintenance.host``
  notification, starts the maintenance of the host;
* the owner of every instance on the host is told at once, in the same
  thread and through the same evaluator as a host fault: one
  ``compute.instance.maintenance`` event per instance (traits
  ``instance_id``, ``tenant_id``, ``host``, ``state=maintenance``,
  ``reason``, ``session_id``, ``window_start``, ``window_end`` when known,
  ``migrate_at`` when a deadline applies);
* the ``compute.instance.*`` events that keep the resource map current also
  reach the tracker (:meth:`MaintenanceTracker.follow`): when no instance is
  left on the host, the administrator is told once with a
  ``maintenance.host.empty`` event in the admin project;
* optionally, after ``migrate_after`` seconds, Nova is asked to live-migrate
  what is left (logged, with each refusal);
* re-enabling the service (``service.update`` with ``disabled=0``) or
  ``maintenance.host.end`` ends the maintenance: the administrator gets
  ``maintenance.host.complete`` and the owners of instances still on the
  host a ``compute.instance.maintenance`` with ``state=maintenance_complete``.

The state of each host in maintenance is kept in memory and written to a
small JSON file per host under ``state_dir`` (:mod:`.maintenance_state`,
restored when the agent restarts). ``doctor-maintenance-status``
(:mod:`doctor_ext.cmd.maintenance_status`, also ``python -m
doctor_ext.inspector.maintenance [--config-file FILE] [--json] [HOST...]``)
reads those files.
"""

import re
import sys
import threading
import time

from oslo_config import cfg
from oslo_log import log

from doctor_ext.evaluator import events as events_mod
from doctor_ext.inspector import maintenance_state as state_mod
from doctor_ext.inspector import resource_map

LOG = log.getLogger(__name__)

GROUP = 'doctor_maintenance'
OPTS = [
    cfg.BoolOpt('enabled', default=True,
                help='Follow host maintenance: warn the owners of the '
                     'instances of a host put in maintenance, tell the '
                     'administrator once it is empty.'),
    cfg.StrOpt('admin_project_id',
               help='Project of the events for the administrator '
                    '(maintenance.host.empty, maintenance.host.complete): '
                    'the administrator\'s alarms on them live in this '
                    'project. Unset: the project of the event that started '
                    'the maintenance (the payload project of '
                    'maintenance.host, the request context of Nova\'s '
                    'service.update); with neither, the administrator is '
                    'told in the log only.'),
    cfg.ListOpt('ignore_disabled_reasons',
                default=['^AUTO: ', '^Auto-disabled'],
                help='Regular expressions: a compute service disabled with '
                     'a reason matching one of them is not a maintenance '
                     '(Nova disables services itself with these, e.g. when '
                     'libvirt is lost). A service disabled without a '
                     'reason is not one either.'),
    cfg.FloatOpt('migrate_after', default=0.0, min=0,
                 help='Seconds after the start of a maintenance (when the '
                      'owners are told) after which Nova is asked to '
                      'live-migrate the instances still on the host (0: '
                      'never; the owners and the administrator move '
                      'them).'),
    cfg.DictOpt('project_migrate_after', default={},
                help='migrate_after for some projects, e.g. '
                     '"p1:600,p2:0" (0: never for that project).'),
    cfg.StrOpt('state_dir', default='/var/lib/ceilometer/doctor-maintenance',
               help='Directory of the state files (one JSON file per host '
                    'in maintenance), read by doctor-maintenance-status '
                    'and at agent start. Empty: no state files.'),
    cfg.FloatOpt('check_interval', default=10.0, min=0.05,
                 help='Seconds between checks of the hosts in maintenance '
                      '(emptiness after a resource-map reload, migration '
                      'deadlines).'),
    cfg.BoolOpt('timeline_log', default=False,
                help='Log one doctor-timeline line per maintenance step '
                     '(entered, empty, migrate, complete) with its times.'),
]

NOVA_COMPUTE = 'nova-compute'
OWNER_EVENT = 'compute.instance.maintenance'
HOST_EMPTY_EVENT = 'maintenance.host.empty'
HOST_COMPLETE_EVENT = 'maintenance.host.complete'
IN_MAINTENANCE = state_mod.IN_MAINTENANCE
COMPLETE = 'maintenance_complete'
START_EVENTS = ('maintenance.host',)
END_EVENTS = ('maintenance.host.end',)
END_STATES = ('MAINTENANCE_COMPLETE',)
SOURCE = 'doctor-ext'


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def _flag(value):
    return str(value).strip().lower() in ('1', 'true', 'yes')


class MaintenanceTracker:
    """Hosts in maintenance: who to warn, what is left, when to say so.

    :param engine: the evaluator (``evaluate(events, received=...)``).
    :param rmap: the inspector's :class:`.resource_map.ResourceMap`.
    :param fencer: the :class:`.fencing.NovaFencer` (instances of a host
        when the map is not loaded yet; live migrations).
    """

    def __init__(self, conf, engine, rmap, fencer=None):
        register_opts(conf)
        self._opts = conf[GROUP]
        self.engine = engine
        self.map = rmap
        self.fencer = fencer
        self._hosts = {}      # host -> HostMaintenance
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._ignored = [re.compile(r) for r in
                         self._opts.ignore_disabled_reasons if r]
        self._files = None

    # -- life cycle --------------------------------------------------------
    def start(self):
        """Restore the hosts of the state files; start the periodic check."""
        if not self._opts.enabled or self._thread is not None:
            return
        self._restore()
        self._thread = threading.Thread(target=self._run,
                                        name='doctor-maintenance',
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._wake.set()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                LOG.exception('Checking the hosts in maintenance failed')
            self._wake.wait(self._next_wait())
            self._wake.clear()

    def _next_wait(self):
        wait = self._opts.check_interval
        now = time.time()
        with self._lock:
            records = list(self._hosts.values())
        for rec in records:
            if not rec.ready:
                continue
            for inst in self.map.on_host(rec.host):
                if inst.instance_id in rec.migrations:
                    continue
                at = self._deadline(rec, inst.project_id)
                if at is not None:
                    wait = min(wait, max(at - now, 0.0) + 0.01)
        return wait

    # -- the Python API ------------------------------------------------------
    def in_maintenance(self, host):
        return host in self._hosts

    def hosts(self):
        return sorted(self._hosts)

    def status(self, host=None):
        """The state of the hosts in maintenance (or of one): dicts.

        The same dicts as the state files; ``remaining`` is read from the
        resource map now.
        """
        with self._lock:
            records = [r for h, r in sorted(self._hosts.items())
                       if host in (None, h)]
        return [r.to_dict(self.map.on_host(r.host), self._admin_project(r))
                for r in records]

    # -- events ------------------------------------------------------------
    def handle(self, event, received=None):
        """A service.update or maintenance.host(.end) event.

        Returns the :class:`HostMaintenance` started or ended, else None.
        """
        if not self._opts.enabled:
            return None
        etype = event.event_type
        traits = event.traits
        if etype == 'service.update':
            return self._service_update(event, received)
        if etype not in START_EVENTS + END_EVENTS:
            return None
        host = traits.get('host') or traits.get('hostname')
        if not host:
            LOG.error('Ignoring %s event %s: it names no host', etype,
                      event.message_id)
            return None
        if etype in END_EVENTS or str(
                traits.get('state') or '').upper() in END_STATES:
            return self.end(host, etype, received)
        return self.enter(
            host, traits.get('reason') or 'planned maintenance', etype,
            session_id=traits.get('session_id'), project=event.project,
            window_start=traits.get('window_start'),
            window_end=traits.get('window_end'), received=received)

    def _service_update(self, event, received):
        traits = event.traits
        host = traits.get('host')
        if not host or traits.get('binary', NOVA_COMPUTE) != NOVA_COMPUTE:
            return None
        if traits.get('disabled') is None:
            return None
        if not _flag(traits['disabled']):
            if host in self._hosts:
                return self.end(host, 'nova-compute service enabled',
                                received)
            return None
        if _flag(traits.get('forced_down')):
            return None     # a fault: the inspector's business
        reason = str(traits.get('disabled_reason') or '').strip()
        if not reason or reason == 'None':
            if host not in self._hosts:
                LOG.info('nova-compute of host %s disabled without a '
                         'reason: not a maintenance', host)
            return None
        if any(r.search(reason) for r in self._ignored):
            if host not in self._hosts:
                LOG.info('nova-compute of host %s disabled by Nova (%s): '
                         'not a maintenance', host, reason)
            return None
        return self.enter(host, reason, 'service.update',
                          project=event.project, received=received)

    @property
    def active(self):
        """True while a host is in maintenance (instance moves matter)."""
        return bool(self._hosts)

    def follow(self, event, left):
        """An instance event applied to the map; ``left`` its host before.

        Tells the administrator when it emptied a host in maintenance, and
        the owner when its instance arrived on one.
        """
        if not self._hosts:
            return
        instance_id = event.traits.get('instance_id')
        now_on = self.map.host_of(instance_id) if instance_id else None
        if left == now_on:
            return
        if now_on is not None and now_on in self._hosts:
            self._arrived(now_on, instance_id)
            self._check_empty(now_on)
        if left is not None and left in self._hosts:
            self._save(left)
            self._check_empty(left)

    # -- entering ------------------------------------------------------------
    def enter(self, host, reason, source, session_id=None, project=None,
              window_start=None, window_end=None, received=None):
        """Put ``host`` in maintenance and warn the owners at once."""
        received = received or time.time()
        with self._lock:
            if host in self._hosts:
                LOG.info('Host %s already in maintenance (%s); ignoring %s',
                         host, self._hosts[host].reason, source)
                return None
            rec = state_mod.HostMaintenance(host, reason, source, session_id,
                                            project, window_start,
                                            window_end)
            self._hosts[host] = rec
        rec.times['received'] = received
        instances = self.map.on_host(host)
        if not instances and not self.map.loaded.is_set():
            instances = self._ask_nova(host)
        rec.owners = {i.instance_id: i.project_id for i in instances}
        rec.times['found'] = time.time()
        try:
            self.engine.evaluate(
                [self._owner_event(rec, i, IN_MAINTENANCE)
                 for i in instances], received=received)
        except Exception:
            LOG.exception('Warning the owners of host %s failed', host)
            with self._lock:
                self._hosts.pop(host, None)
            raise
        rec.notified = rec.times['notified'] = time.time()
        rec.ready = True
        LOG.info('Host %s in maintenance (%s, via %s, session %s): owners '
                 'of %d instance(s) of %d project(s) warned in %.1f ms',
                 host, reason, source, rec.session_id, len(instances),
                 len(set(rec.owners.values())),
                 (rec.notified - received) * 1000.0)
        self._timeline(rec, 'entered', instances=len(instances),
                       received=received, notified=rec.notified)
        self._save(host)
        self._check_empty(host)
        self._wake.set()
        return rec

    def _ask_nova(self, host):
        if self.fencer is None:
            return []
        return resource_map.ask_nova(self.fencer, host)

    def _deadline(self, rec, project):
        seconds = self._opts.project_migrate_after.get(project)
        try:
            seconds = float(seconds if seconds is not None
                            else self._opts.migrate_after)
        except ValueError:
            seconds = self._opts.migrate_after
        if seconds <= 0:
            return None
        return rec.started + seconds

    def _owner_event(self, rec, inst, state):
        at = None
        if state == IN_MAINTENANCE:
            at = self._deadline(rec, inst.project_id)
        return events_mod.make_event(OWNER_EVENT, {
            'instance_id': inst.instance_id,
            'tenant_id': inst.project_id,
            'user_id': inst.user_id,
            'host': rec.host,
            'state': state,
            'reason': rec.reason,
            'session_id': rec.session_id,
            'window_start': rec.window_start,
            'window_end': rec.window_end,
            'migrate_at': state_mod.utc(at) if at is not None else None,
            'source': SOURCE,
        })

    def _arrived(self, host, instance_id):
        rec = self._hosts.get(host)
        inst = next((i for i in self.map.on_host(host)
                     if i.instance_id == instance_id), None)
        if rec is not None and inst is not None:
            self._warn_late(rec, [inst], 'arrived on')

    def _warn_late(self, rec, instances, how):
        """Warn the owners of instances found on the host after the start.

        An instance that arrived (an explicit target, an evacuation), or
        that the map did not know when the maintenance started.
        """
        with self._lock:
            if self._hosts.get(rec.host) is not rec or not rec.ready:
                return
            new = [i for i in instances if i.instance_id not in rec.owners]
            for inst in new:
                rec.owners[inst.instance_id] = inst.project_id
        if not new:
            return
        LOG.warning('%d instance(s) %s host %s, which is in maintenance; '
                    'warning their owners: %s', len(new), how, rec.host,
                    ', '.join('%s (project %s)' % (i.instance_id,
                                                   i.project_id)
                              for i in new))
        try:
            self.engine.evaluate([self._owner_event(rec, i, IN_MAINTENANCE)
                                  for i in new])
        except Exception:
            LOG.exception('Warning the owners of %d instance(s) on host %s '
                          'failed; retried at the next check', len(new),
                          rec.host)
            with self._lock:
                for inst in new:
                    rec.owners.pop(inst.instance_id, None)
        self._save(rec.host, force=True)

    # -- host empty ----------------------------------------------------------
    def _check_empty(self, host):
        if not self.map.loaded.is_set():
            return None     # the map cannot tell "empty" yet
        detected = time.time()
        with self._lock:
            rec = self._hosts.get(host)
            if rec is None or not rec.ready:
                return None
            if self.map.on_host(host):
                if rec.admin_notified is not None:
                    # Not empty any more: say so again once it is.
                    LOG.warning('Host %s in maintenance is not empty any '
                                'more; the administrator will be told '
                                'again once it is', host)
                    rec.admin_notified = rec.empty_since = None
                return None
            if rec.admin_notified is not None:
                return None
            rec.admin_notified = rec.empty_since = detected
        admin = self._admin_project(rec)
        LOG.info('Host %s in maintenance is empty (%d instance(s) of %d '
                 'project(s) warned); telling the administrator%s', host,
                 len(rec.owners), len(set(rec.owners.values())),
                 ' (project %s)' % admin if admin else
                 ': no admin project known, set [%s] admin_project_id'
                 % GROUP)
        if admin:
            try:
                self.engine.evaluate([self._admin_event(
                    rec, HOST_EMPTY_EVENT, 'empty', admin, remaining=0)],
                    received=detected)
            except Exception:
                LOG.exception('Telling the administrator that host %s is '
                              'empty failed; retried at the next check',
                              host)
                with self._lock:
                    rec.admin_notified = rec.empty_since = None
                return None
        rec.times['empty'] = detected
        rec.times['admin_notified'] = time.time()
        self._timeline(rec, 'empty', detected=detected,
                       notified=rec.times['admin_notified'])
        self._save(host, force=True)
        return rec

    def _admin_project(self, rec):
        return self._opts.admin_project_id or rec.project or None

    def _admin_event(self, rec, event_type, state, admin, remaining):
        return events_mod.make_event(event_type, {
            'host': rec.host,
            'tenant_id': admin,
            'project_id': admin,
            'state': state,
            'reason': rec.reason,
            'session_id': rec.session_id,
            'window_start': rec.window_start,
            'window_end': rec.window_end,
            'instances': len(rec.owners),
            'projects': len(set(rec.owners.values())),
            'remaining': remaining,
            'source': SOURCE,
        })

    # -- ending ------------------------------------------------------------
    def end(self, host, cause, received=None):
        """End the maintenance of ``host``; tell the admin, the owners left."""
        received = received or time.time()
        with self._lock:
            rec = self._hosts.get(host)
        if rec is None:
            LOG.info('Host %s is not in maintenance; ignoring %s', host,
                     cause)
            return None
        remaining = self.map.on_host(host)
        admin = self._admin_project(rec)
        events = [self._owner_event(rec, i, COMPLETE) for i in remaining]
        if admin:
            events.append(self._admin_event(rec, HOST_COMPLETE_EVENT,
                                            'complete', admin,
                                            remaining=len(remaining)))
        self.engine.evaluate(events, received=received)   # raises: retried
        with self._lock:
            if self._hosts.get(host) is not rec:
                return None
            del self._hosts[host]
        rec.times.update(ended=received, end_notified=time.time())
        LOG.info('Host %s maintenance ended (%s) after %.1f s: %d '
                 'instance(s) still on it; administrator%s told', host,
                 cause, received - rec.started, len(remaining),
                 '' if admin else ' not')
        self._timeline(rec, 'complete', received=received,
                       notified=rec.times['end_notified'],
                       remaining=len(remaining))
        self._remove_state(host)
        return rec

    # -- periodic check: emptiness, deadlines --------------------------------
    def check(self):
        """Check every host in maintenance now (the thread does it too)."""
        with self._lock:
            records = list(self._hosts.values())
        for rec in records:
            if not rec.ready:
                continue
            if self.map.loaded.is_set():
                self._warn_late(rec, self.map.on_host(rec.host),
                                'found on')
            if self._check_empty(rec.host) is None:
                self._save(rec.host)
            self._migrate_due(rec)

    def _migrate_due(self, rec):
        now = time.time()
        due = []
        for inst in self.map.on_host(rec.host):
            if inst.instance_id in rec.migrations:
                continue
            at = self._deadline(rec, inst.project_id)
            if at is not None and at <= now:
                due.append(inst)
        if not due:
            return
        with self._lock:
            if self._hosts.get(rec.host) is not rec:
                return
            for inst in due:
                rec.migrations[inst.instance_id] = 'requested'
            rec.migration_requested = rec.migration_requested or now
        ids = [i.instance_id for i in due]
        LOG.warning('Host %s: maintenance deadline passed; asking Nova to '
                    'live-migrate the %d instance(s) of %d project(s) still '
                    'on it: %s', rec.host, len(ids),
                    len({i.project_id for i in due}), ', '.join(ids))
        if self.fencer is None or not hasattr(self.fencer, 'live_migrate'):
            results = {i: 'no Nova client to live-migrate with'
                       for i in ids}
        else:
            try:
                results = self.fencer.live_migrate(ids)
            except Exception as e:
                results = {i: 'live migration failed: %s' % e for i in ids}
        rec.migrations.update(results)
        failed = {k: v for k, v in results.items() if v != 'ok'}
        if failed:
            LOG.error('Host %s: Nova refused to live-migrate %d of %d '
                      'instance(s); the administrator must move them: %s',
                      rec.host, len(failed), len(ids),
                      '; '.join('%s: %s' % kv for kv in sorted(
                          failed.items())))
        LOG.info('Host %s: Nova accepted the live migration of %d of %d '
                 'instance(s)', rec.host, len(ids) - len(failed), len(ids))
        rec.times['migrate_requested'] = now
        self._timeline(rec, 'migrate', requested=now, done=time.time(),
                       instances=len(ids), failed=len(failed))
        self._save(rec.host, force=True)

    # -- state files ---------------------------------------------------------
    def _state_files(self):
        """The state files of ``[doctor_maintenance] state_dir``, or None."""
        state_dir = self._opts.state_dir
        if not state_dir:
            return None
        if self._files is None or self._files.state_dir != state_dir:
            self._files = state_mod.StateFiles(state_dir)
        return self._files

    def _save(self, host, force=False):
        files = self._state_files()
        if files is None:
            return
        with self._io_lock:
            rec = self._hosts.get(host)
            if rec is None or not rec.ready:
                return
            remaining = self.map.on_host(host)
            ids = frozenset(i.instance_id for i in remaining)
            if not force and rec.saved == ids:
                return
            data = rec.to_dict(remaining, self._admin_project(rec))
            if files.write(host, data):
                rec.saved = ids

    def _remove_state(self, host):
        files = self._state_files()
        if files is None:
            return
        with self._io_lock:
            files.remove(host)

    def _restore(self):
        files = self._state_files()
        if files is None:
            return
        for rec, data in files.restore():
            with self._lock:
                self._hosts.setdefault(rec.host, rec)
            LOG.warning('Host %s still in maintenance since %s (%s; from %s'
                        '): end it by enabling its nova-compute service or '
                        'with maintenance.host.end', rec.host,
                        data.get('started'), rec.reason, data.get('_file'))

    def _timeline(self, rec, step, **values):
        if not self._opts.timeline_log:
            return
        LOG.info('doctor-timeline maintenance=%s host=%s session=%s %s',
                 step, rec.host, rec.session_id,
                 ' '.join('%s=%s' % (k, ('%.6f' % v) if isinstance(v, float)
                                     else v)
                          for k, v in sorted(values.items())))


if __name__ == '__main__':
    # python -m doctor_ext.inspector.maintenance: doctor-maintenance-status.
    from doctor_ext.cmd import maintenance_status
    sys.exit(maintenance_status.main())
