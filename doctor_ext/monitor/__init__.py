"""The Doctor monitor: a process of its own that watches compute hosts.

In: ICMP echo replies of the hosts it pings (:mod:`.ping`), or one report
given by hand (``doctor-report``). Out: signed host-fault reports
(``compute.host.down``/``up``, :mod:`.signing`) on the bus as
oslo.messaging notifications (:mod:`.report`). It may touch the network
(ICMP, the bus) and nothing of the agent: it imports nothing else of
doctor_ext; the inspector imports :mod:`.signing` to verify its reports.
"""
