"""doctor_ext.maintenance."""
