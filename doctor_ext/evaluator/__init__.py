"""The notification-driven evaluator: events in, alarms fired, owners told.

In: parsed events (:mod:`.events`) from the publisher and the inspector,
through :meth:`.engine.Engine.evaluate`. Out: the alarms they fire, each
claimed once across agents in Aodh's database (:mod:`.store`,
:mod:`.claims`), the notifications they owe written to the outbox
(:mod:`.outbox`) and handed to the notifier, Aodh's alarm history
(:mod:`.recorder`). It may touch Aodh's database, the bus (alarm changes,
:mod:`.sync`, :mod:`.subscription`) and the notifier; it imports nothing
from the inspector or the publisher.
"""
