"""Doctor's inspector: host faults and maintenance turned into events.

In: the events of Ceilometer's pipeline (``doctor-inspector://``,
:mod:`.hook`): the monitor's signed host reports, Nova's ``service.update``
and ``compute.instance.*``, ``maintenance.host*``. Out: one fault or
maintenance event per affected instance handed to the evaluator
(``engine.evaluate``), the faulty host fenced in Nova (:mod:`.fencing`),
the administrator told when a host in maintenance is empty. It may touch
Nova (openstacksdk), its own tables in Aodh's database (the instance map,
the fault journal) and the maintenance state files; it imports the
evaluator, the db package and the monitor's signing, never the publisher.

Modules: :mod:`.hook` (publisher face) -> :mod:`.core` (routing) ->
:mod:`.faults` (the work of a fault), :mod:`.changes` (the map's changes to
their followers) -> :mod:`.maintenance`; :mod:`.resource_map`,
:mod:`.instances`, :mod:`.map_loader` (the instance map), :mod:`.journal`,
:mod:`.report_check`, :mod:`.fencing`, :mod:`.maintenance_events`,
:mod:`.maintenance_migration`, :mod:`.maintenance_state`.
"""
