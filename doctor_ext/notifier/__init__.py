"""Delivery of alarm notifications to their owners' action URLs.

In: :class:`~doctor_ext.notifier.models.Notification` objects, one per
alarm action, handed to ``HttpNotifier.submit()`` by the evaluator's
engine. Out: for each, a future of a
:class:`~doctor_ext.notifier.models.Delivery` (delivered, or failed,
refused or dropped, with an error naming the masked URL). May touch: the
network (POSTs to consumers, only to addresses the egress policy allows),
Aodh's notifier plugins for other schemes, and at most
``max_delivery_threads`` threads of the agent.

Modules: ``http`` (the notifier and its retries), ``client`` (one
keep-alive HTTP/1.1 connection), ``egress`` (where it may connect),
``lanes`` (bounded, fair queues and the thread pool), ``targets`` (action
URLs parsed), ``masking`` (credentials out of logs), ``models``.
"""
