"""The pipeline face of the evaluator: ``doctor://``.

In: the events of Ceilometer's pipeline. Out: the same events handed to
the in-process evaluator at once (no broker hop), and relayed on the bus
when asked (``relay=``). Host reports pass the inspector's report check
first. It imports the evaluator and the inspector's report check only.
"""
