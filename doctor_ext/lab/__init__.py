"""doctor_ext.lab."""
