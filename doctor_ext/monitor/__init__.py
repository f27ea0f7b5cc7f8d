"""doctor_ext.monitor."""
