"""Power a host off (or on) through its BMC, over Redfish, with sushy.

:meth:`RedfishPower.power_off` asks the BMC for ``ForceOff`` and then reads
the system's power state until it says ``Off``: only then is the host
powered off. Each Redfish call is bounded by ``bmc_timeout``; a call that
fails (connection refused, no answer, a 5xx answer) is retried with
exponential backoff (:func:`doctor_ext.retry.attempts`), at most
``bmc_retries`` times; a 4xx answer (wrong credentials, no such system) is
not retried. The outcome is a
:class:`PowerResult` naming what happened; nothing here raises for a BMC
that misbehaves.

sushy's own retries are kept to one try and no delay: the bound and the
backoff are ours, in one place.

No credential is logged: messages name the host, the BMC's address and
the answer's status only.
"""

import dataclasses
import time

from oslo_config import cfg
from oslo_log import log
import sushy
from sushy import exceptions as sushy_exc

from doctor_ext import retry as retry_mod

LOG = log.getLogger(__name__)

GROUP = 'doctor_fencing'
OPTS = [
    cfg.FloatOpt('bmc_timeout', default=10.0, min=0.1,
                 help='Seconds to wait for a BMC to answer one Redfish '
                      'call (connect and read), retries not included.'),
    cfg.IntOpt('bmc_retries', default=3, min=0,
               help='Retries of a Redfish call that failed with a '
                    'connection error, a timeout or a 5xx answer. 4xx '
                    'answers are never retried.'),
    cfg.FloatOpt('bmc_retry_backoff', default=0.5, min=0.0,
                 help='Seconds before the first retry of a Redfish call; '
                      'doubled for each next one.'),
    cfg.FloatOpt('power_confirm_timeout', default=60.0, min=1.0,
                 help='Seconds to wait, after the BMC accepted ForceOff '
                      '(or On), for the system to report that power '
                      'state. A host whose state is not confirmed counts '
                      'as not fenced.'),
    cfg.FloatOpt('power_poll_interval', default=0.5, min=0.01,
                 help='Seconds between two reads of the power state '
                      'while waiting for it to change.'),
]

OFF = 'Off'
ON = 'On'


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


@dataclasses.dataclass
class PowerResult:
    """What a power action came to."""

    ok: bool
    state: str = None   # the last power state read, if any
    reason: str = ''    # why it failed, or how it went
    attempts: int = 0


class _Retry(Exception):
    """A call worth retrying; the message says what failed."""


class _Fatal(Exception):
    """A call not worth retrying; the message says what failed."""


def _describe(exc):
    if isinstance(exc, sushy_exc.HTTPError):
        text = 'HTTP %s' % exc.status_code
        if exc.status_code in (401, 403):
            text += ' (the BMC refused the credentials of the BMC file)'
        elif exc.status_code == 404:
            text += ' (no such system on the BMC)'
        return text
    if isinstance(exc, sushy_exc.ConnectionError):
        cause = str(getattr(exc, 'kwargs', {}).get('error', '')) or str(exc)
        if 'timed out' in cause.lower() or 'timeout' in cause.lower():
            return 'no answer within the BMC timeout'
        if 'refused' in cause.lower():
            return 'connection refused'
        return 'connection failed'
    return '%s' % type(exc).__name__


def _classify(exc):
    """A sushy failure as :class:`_Retry` or :class:`_Fatal`."""
    if isinstance(exc, sushy_exc.ConnectionError):
        return _Retry(_describe(exc))
    if isinstance(exc, sushy_exc.HTTPError):
        status = exc.status_code or 0
        return (_Retry if status >= 500 else _Fatal)(_describe(exc))
    return _Fatal(_describe(exc))


class RedfishPower:
    """Redfish power actions on the BMCs of :mod:`.bmc`. Thread-safe."""

    def __init__(self, conf):
        register_opts(conf)
        self._conf = conf

    @property
    def _opts(self):
        return self._conf[GROUP]

    def _system(self, bmc):
        opts = self._opts
        root = sushy.Sushy(
            bmc.address, username=bmc.username, password=bmc.password,
            verify=bmc.verify, server_side_retries=1,
            server_side_retries_delay=0.01, read_timeout=opts.bmc_timeout,
            connect_timeout=opts.bmc_timeout)
        return root.get_system(bmc.system)

    def _call(self, what, fn):
        """``fn()`` with bounded retries (:func:`doctor_ext.retry.attempts`).

        Returns (result, attempts made).
        """
        opts = self._opts
        tries = []

        def attempt():
            tries.append(1)
            try:
                return fn()
            except sushy_exc.SushyError as e:
                failure = _classify(e)
                failure.attempts = len(tries)
                raise failure from None

        result = retry_mod.attempts(attempt, what, opts.bmc_retries + 1,
                                    opts.bmc_retry_backoff, most=30,
                                    retry_on=_Retry, logger=LOG)
        return result, len(tries)

    def power_off(self, bmc):
        """ForceOff, then wait for the power state to read Off."""
        return self._power(bmc, sushy.ResetType.FORCE_OFF, OFF)

    def power_on(self, bmc):
        """On, then wait for the power state to read On."""
        return self._power(bmc, sushy.ResetType.ON, ON)

    def power_state(self, bmc):
        """The system's power state as the BMC reports it (or raises)."""
        return self._read_state(bmc)

    def _read_state(self, bmc):
        system = self._system(bmc)
        state = system.power_state
        return getattr(state, 'value', state)

    def _power(self, bmc, reset, wanted):
        what = '%s of host %s through BMC %s' % (
            reset.value, bmc.host, bmc.address)
        started = time.monotonic()
        attempts = 0

        def act():
            system = self._system(bmc)
            state = getattr(system.power_state, 'value', system.power_state)
            if state == wanted:
                return state
            system.reset_system(reset)
            return None

        try:
            state, attempts = self._call(what, act)
            deadline = time.monotonic() + self._opts.power_confirm_timeout
            while state != wanted:
                if time.monotonic() >= deadline:
                    return PowerResult(
                        False, state, '%s: the BMC accepted it but the '
                        'power state still reads %s after %.0f s' % (
                            what, state, self._opts.power_confirm_timeout),
                        attempts)
                time.sleep(self._opts.power_poll_interval)
                state, n = self._call('reading the power state of host %s'
                                      % bmc.host,
                                      lambda: self._read_state(bmc))
                attempts += n - 1
        except (_Retry, _Fatal) as e:
            return PowerResult(False, None, '%s failed: %s' % (what, e),
                               attempts + getattr(e, 'attempts', 1))
        except Exception as e:
            LOG.exception('%s failed', what)
            return PowerResult(False, None, '%s failed: %s'
                               % (what, type(e).__name__), attempts)
        return PowerResult(True, state, '%s confirmed (power state %s) in '
                           '%.1f s' % (what, state,
                                       time.monotonic() - started), attempts)
