"""doctor-ext's own tables: the state every agent shares.

Several notification agents, each with several workers, handle the faults
of one cloud, and any of them can die at any instant. What must outlive a
process lives in these tables, beside Aodh's in Aodh's database (so that an
alarm's claim and the notifications it owes commit in one transaction):

* ``doctor_instance``: which instance runs on which host, and whose it is
  (:mod:`doctor_ext.inspector.instances`);
* ``doctor_host``, ``doctor_fault`` and ``doctor_fault_instance``: every
  host fault, the instances it affects and how far its fencing got
  (:mod:`doctor_ext.inspector.journal`);
* ``doctor_outbox``: every notification owed to an owner, until it is
  delivered or given up (:mod:`doctor_ext.evaluator.outbox`).

:mod:`.models` declares them; :mod:`.migration` creates and upgrades them
(``doctor-ext-dbsync``). Nothing here alters Aodh's own tables.
"""
