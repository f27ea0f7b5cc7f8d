"""doctor_ext_lab."""
