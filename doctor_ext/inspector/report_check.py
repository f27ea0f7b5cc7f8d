"""Which host reports the agent acts on: signed, recent, not replayed.

A Doctor report (``compute.host.down``/``up``) or a maintenance report
(``maintenance.host``/``.end``) makes the inspector fence a host and tell
the owners of its instances. Anyone with credentials on the bus can send
one, so :class:`ReportCheck` accepts it only when

* it is signed with ``[doctor_reports] secret``, the secret of the monitor
  (:mod:`doctor_ext.monitor.signing`), and the signature matches its
  traits;
* it was signed at most ``window`` seconds away from this host's clock;
* no other message carried the same report (the same ``monitor_event_id``,
  or session, host and state of a maintenance report) within the window.
  The same message delivered again by the broker (same ``message_id``) is
  not a replay: it is checked and handled as the first time.

Each refusal is one ERROR line naming the sender's ``publisher_id`` (the
event's ``service`` trait, as the sender claims it), the host, the report
and the reason, and one count in :attr:`ReportCheck.refused`. Every other
event passes unchecked (Nova's ``service.update`` and ``compute.instance.*``
are trusted: see ``doc/source/security.rst``).

The memory of the reports seen is shared by every agent through Aodh's
database (:class:`doctor_ext.inspector.replays.SharedReplayMemory`), so a
replay is refused by whichever agent receives it; without a database
(tests, tools) it is :class:`ReplayMemory`, this process's own.
"""

import collections
import threading
import time

from oslo_config import cfg
from oslo_log import log
from oslo_utils import timeutils

from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import replays
from doctor_ext.monitor import signing

LOG = log.getLogger(__name__)

GROUP = 'doctor_reports'
OPTS = [
    cfg.StrOpt('secret', secret=True,
               help='Secret the host fault and maintenance reports are '
                    'signed with: the same as [doctor_monitor] secret of '
                    'the monitor and doctor-report. Unset while verify is '
                    'on: every such report is refused.'),
    cfg.BoolOpt('verify', default=True,
                help='Act only on signed, recent, not replayed '
                     'compute.host.* and maintenance.host* reports. Off: '
                     'anyone who can publish on the bus can fence any '
                     'host (the agent warns at start).'),
    cfg.FloatOpt('window', default=300.0, min=1,
                 help='Seconds a report may have been signed before (or, '
                      'clocks being off, after) it is checked. A report '
                      'that waited longer in the queue is refused.'),
]

# The reason of a refusal when this agent has no secret to check with.
NO_SECRET = 'no secret'
# Refusals of one message logged once, though two plugins check it.
LOGGED_MEMORY = 4096
# Seconds between two purges of the shared replay memory.
PURGE_EVERY = 60.0


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class ReplayMemory:
    """The reports seen recently, in this process only.

    ``seen(key, message_id, until)`` is True when another message already
    carried the report ``key``; the memory of it lasts until ``until`` (a
    time.time() value), past which the time window refuses the report
    anyway.
    """

    def __init__(self, clock=time.time):
        self._clock = clock
        self._seen = collections.OrderedDict()   # key -> (message_id, until)
        self._lock = threading.Lock()

    def seen(self, key, message_id, until):
        with self._lock:
            now = self._clock()
            while self._seen:
                first = next(iter(self._seen))
                if self._seen[first][1] >= now:
                    break
                del self._seen[first]
            known = self._seen.get(key)
            if known is not None and known[0] != message_id:
                return True
            self._seen[key] = (message_id, max(until, known[1])
                               if known else until)
            return False

    def __len__(self):
        return len(self._seen)


class ReportCheck:
    """The gate of the inspector and of ``doctor://`` for host reports.

    :param memory: the replay memory; a new :class:`ReplayMemory` if None
    """

    def __init__(self, conf, memory=None):
        register_opts(conf)
        self._opts = conf[GROUP]
        self.memory = memory if memory is not None else ReplayMemory()
        # What this process saw: the fallback while the shared memory (the
        # database) is unavailable.
        self._local = (self.memory if isinstance(self.memory, ReplayMemory)
                       else ReplayMemory())
        # reason -> reports refused, for tests and logs.
        self.refused = collections.Counter()
        self._logged = collections.OrderedDict()
        self._lock = threading.Lock()

    def warn_if_off(self):
        """Say at start what is not checked."""
        if not self._opts.verify:
            LOG.warning('[%s] verify is off: host fault and maintenance '
                        'reports are acted on unsigned; anyone who can '
                        'publish on the bus can fence any host', GROUP)
        elif not self._opts.secret:
            LOG.error('[%s] secret is not set: every host fault and '
                      'maintenance report (%s) will be refused', GROUP,
                      ', '.join(sorted(signing.SIGNED_FIELDS)))

    def accept(self, event):
        """True if ``event`` may be acted on; a refusal is logged here.

        While the shared replay memory (the database) is unavailable, a
        replay is checked against what this process saw only, and a warning
        says so: the fault must still reach its owners (the inspector
        handles it from Nova then).
        """
        if (event.event_type not in signing.SIGNED_FIELDS or
                not self._opts.verify):
            return True
        try:
            self._check(event)
            return True
        except signing.Refused as e:
            refusal = e
        # Logged out of the except clause: oslo.log would add a traceback.
        self._refuse(event, refusal)
        return False

    def _check(self, event):
        secret = self._opts.secret
        if not secret:
            raise signing.Refused(NO_SECRET, '[%s] secret is not set on '
                                  'this agent' % GROUP)
        window = self._opts.window
        now = timeutils.utcnow()
        when = signing.verify(secret, event.event_type, event.traits,
                              window, now=now)
        key = signing.replay_key(event.event_type, event.traits)
        # Remembered while the window would still take the report.
        until = time.time() + window - (now - when).total_seconds()
        replayed = self._local.seen(key, event.message_id, until)
        if self.memory is not self._local:
            try:
                replayed = self.memory.seen(key, event.message_id, until)
            except store_mod.StoreUnavailable as e:
                LOG.warning('Report %s checked for a replay against this '
                            "process's memory only: the shared memory is "
                            'unavailable (%s)', event.message_id, e)
        if replayed:
            raise signing.Refused(signing.REPLAYED, 'another message '
                                  'carried the same report')

    def _refuse(self, event, error):
        with self._lock:
            if event.message_id in self._logged:
                return
            self._logged[event.message_id] = True
            if len(self._logged) > LOGGED_MEMORY:
                self._logged.popitem(last=False)
            self.refused[error.reason] += 1
        traits = event.traits
        LOG.error('Refused %s report from publisher %s (host %s, monitor '
                  '%s, report %s, message %s): %s', event.event_type,
                  traits.get('service') or '(none)',
                  traits.get('hostname') or traits.get('host'),
                  traits.get('monitor') or '-',
                  traits.get('monitor_event_id') or
                  traits.get('session_id') or '-', event.message_id, error)


_CHECK = None
_LOCK = threading.Lock()


def get_check(conf, engine=None):
    """The process-wide check, shared by the inspector and ``doctor://``.

    With the evaluator ``engine`` of an agent whose Aodh database is
    configured, the replay memory is that database's, shared by every
    agent, and the engine's sweeper purges it.
    """
    global _CHECK
    with _LOCK:
        if _CHECK is None:
            memory = None
            if engine is not None and engine.store.configured:
                memory = replays.SharedReplayMemory(engine.store)
                engine.sweeper.add('old report ids', memory.purge,
                                   every=PURGE_EVERY)
            _CHECK = ReportCheck(conf, memory)
            _CHECK.warn_if_off()
        return _CHECK


def reset_check():
    """Forget the process-wide check (tests)."""
    global _CHECK
    with _LOCK:
        _CHECK = None
