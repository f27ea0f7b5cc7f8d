"""Which instance faults the inspector has already told owners about.

The inspector notifies owners at once with a ``compute.instance.update``
(state error) per affected instance (Doctor's "shortcut"). Nova's own
``compute.instance.update`` for the same reset arrives later; the direct
publisher asks this ledger and drops it, so a repeating alarm does not notify
the owner a second time for the same change.
"""

import threading
import time


class ShortcutLedger:
    def __init__(self, ttl=600.0, clock=time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = {}   # (instance_id, state) -> expiry

    def record(self, instance_ids, state):
        expiry = self._clock() + self._ttl
        with self._lock:
            for instance_id in instance_ids:
                self._seen[(instance_id, state)] = expiry
            if len(self._seen) > 100000:
                self._expire()

    def consume(self, instance_id, state):
        """True once if the inspector already sent this (instance, state)."""
        if not self._seen:
            return False
        with self._lock:
            expiry = self._seen.pop((instance_id, state), None)
        return expiry is not None and expiry >= self._clock()

    def _expire(self):
        now = self._clock()
        for key in [k for k, v in self._seen.items() if v < now]:
            del self._seen[key]


LEDGER = ShortcutLedger()
