"""doctor_ext.publisher."""
