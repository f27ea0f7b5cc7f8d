"""The ``doctor-inspector://`` event-pipeline plugin: Doctor's Inspector.

In: the events of Ceilometer's event pipeline (the sink that lists this
publisher). Out: each event, parsed, to the process's one
:class:`.core.Inspector`, which does the work. Nothing else.
"""

import threading
import time

from ceilometer import publisher
from oslo_log import log

from doctor_ext.evaluator import engine as engine_mod
from doctor_ext.evaluator import events as events_mod
from doctor_ext.inspector import core
from doctor_ext.inspector import fencing
from doctor_ext.inspector import report_check

LOG = log.getLogger(__name__)


class InspectorHook(publisher.ConfigPublisherBase):
    """Ceilometer event publisher ``doctor-inspector://``."""

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        self.inspector = get_inspector(conf)

    def publish_samples(self, samples):
        """Samples are not ours: the inspector takes events."""

    def publish_events(self, events):
        received = time.time()
        faults = []
        for event in events:
            try:
                parsed = events_mod.from_ceilometer(event)
            except events_mod.InvalidEvent as e:
                LOG.error('Dropping event %s: %s',
                          getattr(event, 'message_id', '?'), e)
                continue
            fault = self.inspector.handle(parsed, received)
            if fault is not None:
                faults.append(fault)
        return faults


_INSPECTOR = None
_LOCK = threading.Lock()


def get_inspector(conf):
    global _INSPECTOR
    with _LOCK:
        if _INSPECTOR is None:
            engine = engine_mod.get_engine(conf)
            _INSPECTOR = core.Inspector(
                conf, engine, fencing.NovaFencer(conf),
                check=report_check.get_check(conf, engine))
            _INSPECTOR.start()
        return _INSPECTOR


def reset_inspector():
    global _INSPECTOR
    with _LOCK:
        inspector, _INSPECTOR = _INSPECTOR, None
    if inspector is not None:
        inspector.stop()
