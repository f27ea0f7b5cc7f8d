"""Data files shipped with doctor-ext (package data)."""

import os

DATA_DIR = os.path.dirname(os.path.abspath(__file__))

# doctor-ext's own Ceilometer event definitions (see
# tools/gen_event_definitions.py for the file Ceilometer loads).
EVENT_DEFINITIONS = os.path.join(DATA_DIR, 'doctor_event_definitions.yaml')


def path(name):
    """The path of a data file of doctor-ext."""
    return os.path.join(DATA_DIR, name)
