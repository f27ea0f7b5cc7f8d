"""doctor_ext.evaluator."""
