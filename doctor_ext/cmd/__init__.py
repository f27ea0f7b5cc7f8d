"""The console scripts of doctor-ext, one module each.

``setup.cfg``'s ``console_scripts`` point here and nowhere else:
``doctor-monitor`` and ``doctor-report`` (:mod:`.monitor`),
``doctor-maintenance-status`` (:mod:`.maintenance_status`),
``doctor-ext-dbsync`` (:mod:`.dbsync`). In: command-line arguments and
config files. Out: the work of the package they call, an exit status.
Nothing in the product imports this package. The demo and the benchmark
are the lab's (``lab/``, ``doctor-ext-lab``).
"""
