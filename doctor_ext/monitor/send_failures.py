"""Errors oslo.messaging's notifier logs instead of raising.

oslo.messaging's notifier does not raise when it gives up sending: it logs
the error and returns. :class:`SendFailures` is a handler on its logger
that keeps those records for the threads inside :meth:`SendFailures.watch`,
so that the Reporter (:mod:`.report`) can raise for its own sends.
"""

import contextlib
# stdlib logging: a Handler on oslo.messaging's logger.
import logging
import threading


class SendFailures(logging.Handler):
    """Catch the errors oslo.messaging's notifier logs instead of raising.

    Records are kept only for the threads that are inside :meth:`watch`.
    """

    LOGGER = 'oslo_messaging.notify'

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self._local = threading.local()

    @contextlib.contextmanager
    def watch(self):
        caught = []
        self._local.caught = caught
        try:
            yield caught
        finally:
            self._local.caught = None

    def emit(self, record):
        caught = getattr(self._local, 'caught', None)
        if caught is not None:
            caught.append(record)


_failures = None
_failures_lock = threading.Lock()


def send_failures():
    """The process's one watcher, installed on first use."""
    global _failures
    with _failures_lock:
        if _failures is None:
            _failures = SendFailures()
            logging.getLogger(SendFailures.LOGGER).addHandler(_failures)
        return _failures
