"""Ceilometer's event pipeline, kept from looping on bad notifications.

In: the notifications ceilometer-agent-notification receives. Out: their
events to the sinks' publishers (``doctor-inspector://``, ``doctor://``),
a notification that cannot be converted dropped once (logged), a poison one
dead-lettered by the broker. It touches the bus (:mod:`doctor_ext.broker`)
and nothing else of doctor_ext.
"""
