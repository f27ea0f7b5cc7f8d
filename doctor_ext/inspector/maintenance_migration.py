"""Live migration of what is left on a host in maintenance, at a deadline.

In: a host's maintenance record and the instances still on it; the
options ``migrate_after`` and ``project_migrate_after`` of
``[doctor_maintenance]`` (:mod:`.maintenance`). Out: when each instance's
deadline falls, which are due, and Nova's answer to the live migration of
those (through the fencer's ``live_migrate``), each refusal logged. It
asks Nova; nothing else.
"""

from oslo_log import log

LOG = log.getLogger(__name__)


class Migrations:
    """Deadlines and live-migration requests of hosts in maintenance."""

    def __init__(self, opts, fencer):
        self._opts = opts
        self.fencer = fencer

    def deadline(self, rec, project):
        """When ``project``'s instances on the host are migrated, or None."""
        seconds = self._opts.project_migrate_after.get(project)
        try:
            seconds = float(seconds if seconds is not None
                            else self._opts.migrate_after)
        except ValueError:
            seconds = self._opts.migrate_after
        if seconds <= 0:
            return None
        return rec.started + seconds

    def next_wait(self, rec, instances, wait, now):
        """``wait``, shortened to the next deadline of ``instances``."""
        for inst in instances:
            if inst.instance_id in rec.migrations:
                continue
            at = self.deadline(rec, inst.project_id)
            if at is not None:
                wait = min(wait, max(at - now, 0.0) + 0.01)
        return wait

    def due(self, rec, instances, now):
        """The instances whose deadline passed, not requested yet."""
        due = []
        for inst in instances:
            if inst.instance_id in rec.migrations:
                continue
            at = self.deadline(rec, inst.project_id)
            if at is not None and at <= now:
                due.append(inst)
        return due

    def request(self, host, due):
        """Ask Nova to live-migrate ``due``: {instance_id: answer}."""
        ids = [i.instance_id for i in due]
        LOG.warning('Host %s: maintenance deadline passed; asking Nova to '
                    'live-migrate the %d instance(s) of %d project(s) still '
                    'on it: %s', host, len(ids),
                    len({i.project_id for i in due}), ', '.join(ids))
        if self.fencer is None or not hasattr(self.fencer, 'live_migrate'):
            results = {i: 'no Nova client to live-migrate with'
                       for i in ids}
        else:
            try:
                results = self.fencer.live_migrate(ids)
            except Exception as e:
                results = {i: 'live migration failed: %s' % e for i in ids}
        failed = {k: v for k, v in results.items() if v != 'ok'}
        if failed:
            LOG.error('Host %s: Nova refused to live-migrate %d of %d '
                      'instance(s); the administrator must move them: %s',
                      host, len(failed), len(ids),
                      '; '.join('%s: %s' % kv for kv in sorted(
                          failed.items())))
        LOG.info('Host %s: Nova accepted the live migration of %d of %d '
                 'instance(s)', host, len(ids) - len(failed), len(ids))
        return results
