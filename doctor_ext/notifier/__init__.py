"""doctor_ext.notifier."""
