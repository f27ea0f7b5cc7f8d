"""doctor_ext.inspector."""
