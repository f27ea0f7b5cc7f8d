"""The alarm index: from an event to the few alarms that can match it.

Aodh compares every event with every alarm of its project. Here alarms are
bucketed by project, then by event type (exact types in a dict, wildcard
patterns apart), then by one ``eq`` condition on a string trait (the
instance_id for Doctor's alarms). Looking an event up costs a few dict
lookups plus one fnmatch per distinct wildcard pattern of the project (the
result cached per event type), whatever the number of alarms.

Writers (the alarm sync) hold a lock; readers (the evaluation threads) take
no lock and only ever read snapshots (tuples) of the smallest buckets.
"""

import fnmatch
import threading


class _TypeBucket:
    """Alarms of one project and one event type (or pattern)."""

    __slots__ = ('keyed', 'unkeyed')

    def __init__(self):
        self.keyed = {}      # trait name -> {value: {alarm_id: alarm}}
        self.unkeyed = {}    # alarm_id -> alarm

    # A value with one alarm (an instance id) maps to the alarm itself, one
    # with more to {alarm_id: alarm}: a dict per instance would be a fifth
    # of an alarm's memory.

    def add(self, alarm):
        if alarm.index_key is None:
            self.unkeyed[alarm.alarm_id] = alarm
            return
        trait, value = alarm.index_key
        by_value = self.keyed.setdefault(trait, {})
        there = by_value.get(value)
        if there is None or (type(there) is not dict and
                             there.alarm_id == alarm.alarm_id):
            by_value[value] = alarm
        elif type(there) is dict:
            there[alarm.alarm_id] = alarm
        else:
            by_value[value] = {there.alarm_id: there,
                               alarm.alarm_id: alarm}

    def remove(self, alarm):
        if alarm.index_key is None:
            self.unkeyed.pop(alarm.alarm_id, None)
            return
        trait, value = alarm.index_key
        by_value = self.keyed.get(trait)
        if by_value is None:
            return
        there = by_value.get(value)
        if there is None:
            return
        if type(there) is dict:
            there.pop(alarm.alarm_id, None)
            if len(there) == 1:
                by_value[value], = there.values()
            elif not there:
                del by_value[value]
        elif there.alarm_id == alarm.alarm_id:
            del by_value[value]
        if not by_value:
            del self.keyed[trait]

    def __bool__(self):
        return bool(self.keyed or self.unkeyed)

    def candidates(self, event, out):
        if self.unkeyed:
            out.extend(tuple(self.unkeyed.values()))
        for trait, by_value in tuple(self.keyed.items()):
            value = event.traits.get(trait)
            if value is None:
                continue
            alarms = by_value.get(value)
            if alarms is None:
                continue
            if type(alarms) is dict:
                out.extend(tuple(alarms.values()))
            else:
                out.append(alarms)


class _ProjectBucket:
    __slots__ = ('exact', 'patterns', 'pattern_cache')

    def __init__(self):
        self.exact = {}          # event_type -> _TypeBucket
        self.patterns = {}       # pattern -> _TypeBucket
        self.pattern_cache = {}  # event_type -> tuple of matching buckets

    def buckets_for(self, event_type):
        found = []
        bucket = self.exact.get(event_type)
        if bucket is not None:
            found.append(bucket)
        if self.patterns:
            matching = self.pattern_cache.get(event_type)
            if matching is None:
                matching = tuple(
                    b for p, b in tuple(self.patterns.items())
                    if fnmatch.fnmatchcase(event_type, p))
                if len(self.pattern_cache) > 4096:
                    self.pattern_cache.clear()
                self.pattern_cache[event_type] = matching
            found.extend(matching)
        return found


class AlarmIndex:
    """All enabled event alarms this process evaluates."""

    def __init__(self):
        self._lock = threading.Lock()
        self._alarms = {}     # alarm_id -> Alarm
        self._projects = {}   # project_id -> _ProjectBucket

    def __len__(self):
        return len(self._alarms)

    def __contains__(self, alarm_id):
        return alarm_id in self._alarms

    def get(self, alarm_id):
        return self._alarms.get(alarm_id)

    def alarms(self):
        return tuple(self._alarms.values())

    def _bucket(self, alarm, create):
        project = self._projects.get(alarm.project_id)
        if project is None:
            if not create:
                return None, None
            project = self._projects[alarm.project_id] = _ProjectBucket()
        table = project.patterns if alarm.wildcard else project.exact
        bucket = table.get(alarm.event_type)
        if bucket is None and create:
            bucket = table[alarm.event_type] = _TypeBucket()
            if alarm.wildcard:
                project.pattern_cache = {}
        return project, bucket

    def _add(self, alarm):
        old = self._alarms.get(alarm.alarm_id)
        if old is not None:
            self._remove(old)
        self._alarms[alarm.alarm_id] = alarm
        self._bucket(alarm, create=True)[1].add(alarm)

    def _remove(self, alarm):
        self._alarms.pop(alarm.alarm_id, None)
        project, bucket = self._bucket(alarm, create=False)
        if bucket is None:
            return
        bucket.remove(alarm)
        if not bucket:
            table = project.patterns if alarm.wildcard else project.exact
            table.pop(alarm.event_type, None)
            if alarm.wildcard:
                project.pattern_cache = {}
            if not project.exact and not project.patterns:
                self._projects.pop(alarm.project_id, None)

    def add(self, alarm):
        """Add or replace one alarm."""
        with self._lock:
            self._add(alarm)

    def remove(self, alarm_id):
        """Forget one alarm; returns it, or None if it was not known."""
        with self._lock:
            alarm = self._alarms.get(alarm_id)
            if alarm is not None:
                self._remove(alarm)
            return alarm

    def replace_all(self, alarms):
        """Make the index hold exactly ``alarms`` (a full resync).

        The local state of an alarm that is already known and whose stored
        state did not change is kept: it may be ahead of the database.
        """
        alarms = list(alarms)
        with self._lock:
            keep = {a.alarm_id for a in alarms}
            for alarm_id in [i for i in self._alarms if i not in keep]:
                self._remove(self._alarms[alarm_id])
            for alarm in alarms:
                self._add(alarm)

    def candidates(self, event):
        """Alarms that may match ``event``: its project, type and key."""
        project = self._projects.get(event.project)
        if project is None:
            return []
        out = []
        for bucket in project.buckets_for(event.event_type):
            bucket.candidates(event, out)
        return out

    def match(self, event):
        """Alarms whose event type and every condition match ``event``."""
        return [a for a in self.candidates(event) if a.matches(event)]
