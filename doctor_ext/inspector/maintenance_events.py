"""The events of host maintenance: those that start and end one, and
those it sends.

In: a host's maintenance record (:class:`.maintenance_state.HostMaintenance`)
and, for an owner, the instance. Out: the event the evaluator matches
against the owners' and the administrator's alarms. Nothing else.
"""

from doctor_ext.evaluator import events as events_mod
from doctor_ext.inspector import maintenance_state as state_mod

OWNER_EVENT = 'compute.instance.maintenance'
HOST_EMPTY_EVENT = 'maintenance.host.empty'
HOST_COMPLETE_EVENT = 'maintenance.host.complete'
IN_MAINTENANCE = state_mod.IN_MAINTENANCE
COMPLETE = 'maintenance_complete'
START_EVENTS = ('maintenance.host',)
END_EVENTS = ('maintenance.host.end',)
END_STATES = ('MAINTENANCE_COMPLETE',)
SOURCE = 'doctor-ext'


def owner_event(rec, inst, state, migrate_at=None):
    """The owner's ``compute.instance.maintenance`` of ``inst``."""
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
        'migrate_at': (state_mod.utc(migrate_at) if migrate_at is not None
                       else None),
        'source': SOURCE,
    })


def admin_event(rec, event_type, state, admin, remaining):
    """The administrator's event (in project ``admin``) about the host."""
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
