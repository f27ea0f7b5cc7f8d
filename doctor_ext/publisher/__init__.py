"""The pipeline face of the evaluator: ``doctor://``.

In: the events of Ceilometer's pipeline. Out: the same events handed to
the in-process evaluator at once (no broker hop), and relayed on the bus
when asked (``relay=``). Host reports pass the inspector's report check
first; Nova's own update of an instance the inspector already reported in
error is recognised (the shortcut ledger of
:mod:`doctor_ext.inspector.journal`). It imports the evaluator and those
two modules of the inspector only.
"""
