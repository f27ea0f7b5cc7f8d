"""One retry policy: exponential backoff, capped, stopped with the service.

In: a call that may fail for a while (Nova or the database not answering
yet), what it is for the log, the first and the longest wait, and the
event that stops the service. Out: the call's result once it succeeds
(:func:`until_done`, with tenacity), the call's result or its last error
after at most n attempts (:func:`attempts`, with tenacity: a Nova or
Redfish call), or the wait before retry number n (:func:`backoff`) for
retries that are scheduled rather than slept in a loop (a fault whose
instances are unknown yet, the recorder's writes) or that sit on the
notification path. It touches nothing but the log.

The notifier's per-delivery retries use :func:`backoff`, not tenacity: a
call through ``tenacity.Retrying`` cost about 50 us more than a plain call
even when it succeeded at once (timeit, 20000 calls, tenacity 9.2.1, on the
development machine), which a fault of 1000 instances would pay 1000 times
on the way to its owners.
"""

import random

from oslo_log import log
import tenacity

LOG = log.getLogger(__name__)


class _Stopped(Exception):
    """The service stopped while waiting to retry."""


def backoff(attempt, first, most, jitter=False):
    """The wait before retry number ``attempt`` (1, 2, ...), in seconds.

    ``first`` doubled at each retry, at most ``most``; with ``jitter``,
    drawn between half of it and all of it.
    """
    delay = min(most, first * 2 ** (attempt - 1))
    if jitter:
        return delay / 2 + random.uniform(0, delay / 2)
    return delay


def until_done(call, what, stop, first, most, retry_on=Exception):
    """``call()`` until it returns; None if ``stop`` is set first.

    A failure raising ``retry_on`` is logged at WARNING (``what``, the wait,
    the error) and retried after :func:`backoff` (``first``, ``most``);
    another exception is raised.

    :param stop: a :class:`threading.Event`; setting it ends a wait.
    """
    def sleep(seconds):
        if stop.wait(seconds):
            raise _Stopped()

    def log_retry(state):
        LOG.warning('%s, retrying in %.1f s: %s', what,
                    state.next_action.sleep, state.outcome.exception())

    if stop.is_set():
        return None
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=tenacity.wait_exponential(multiplier=first, max=most),
        sleep=sleep, before_sleep=log_retry, reraise=True)
    try:
        return retrying(call)
    except _Stopped:
        return None


def attempts(call, what, tries, first, most=None, retry_on=Exception,
             logger=None):
    """``call()`` at most ``tries`` times; its result, or its last error.

    A failure raising ``retry_on`` is logged at WARNING on ``logger`` (the
    caller's; None: this module's) with ``what``, the error, which retry of
    how many and the wait, and retried after a wait of ``first`` doubled at
    each retry, at most ``most`` (None: no bound), slept in the calling
    thread. After ``tries`` attempts the last error is raised; another
    exception is raised at once.
    """
    logger = logger or LOG

    def log_retry(state):
        logger.warning('%s: %s; retry %d of %d in %.2f s', what,
                       state.outcome.exception(), state.attempt_number,
                       tries - 1, state.next_action.sleep)

    bound = {} if most is None else {'max': most}
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        stop=tenacity.stop_after_attempt(tries),
        wait=tenacity.wait_exponential(multiplier=first, **bound),
        before_sleep=log_retry, reraise=True)
    return retrying(call)
