"""The events owners alarm on to learn how far fencing went.

Besides Doctor's fault event (``compute.instance.update``, ``state=error``,
whose new ``fencing`` trait says ``pending``, ``logical``, ``powered_off``,
``failed`` or ``none``), the inspector emits, per affected instance:

``compute.instance.fenced``
   when the fencing of its host completes or fails. Traits:
   ``instance_id``, ``tenant_id`` (the owner), ``user_id``, ``host``,
   ``method`` (``power`` or ``logical``), ``outcome`` (``powered_off``,
   ``logical`` or ``failed``), ``monitor_event_id``, ``source``.
``compute.instance.recovered``
   when the host is given back by the recovery policy (powered on and its
   compute service no longer forced down). Same traits; ``outcome`` is
   ``recovered``.

An owner who waits for safety before switching over creates a second Aodh
event alarm on ``compute.instance.fenced`` with ``traits.instance_id`` and
``traits.outcome`` (see the usage guide). Event ids derive from the fault
and the instance, so a fault handled again by another agent gives the same
ids and fires no alarm twice.
"""

import uuid

from doctor_ext.evaluator import events as events_mod

FENCED = 'compute.instance.fenced'
RECOVERED = 'compute.instance.recovered'
NAMESPACE = uuid.UUID('5b0f8a4e-2d6c-4e1a-9f37-7c2e4d9b1a60')


def build(event_type, fault_id, host, instances, method, outcome,
          monitor_event_id=None):
    """One ``event_type`` event per instance (resource_map.Instance)."""
    out = []
    for inst in instances:
        out.append(events_mod.make_event(event_type, {
            'instance_id': inst.instance_id,
            'user_id': inst.user_id,
            'host': host,
            'method': method,
            'outcome': outcome,
            'monitor_event_id': monitor_event_id,
            'source': 'doctor-ext',
            'tenant_id': inst.project_id,
        }, message_id=str(uuid.uuid5(NAMESPACE, '%s/%s/%s/%s' % (
            event_type, fault_id, inst.instance_id, outcome)))))
    return out
