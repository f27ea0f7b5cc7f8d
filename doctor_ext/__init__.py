"""doctor-ext: OPNFV Doctor fault management as Ceilometer/Aodh plugins."""
