"""The targets of the benchmark, as ratios measured in one run.

Absolute times on a shared machine move by 2x from day to day, so every
target is a ratio of two figures of the same run: against stock, or
against the floor (:mod:`doctor_ext_lab.floor`). :func:`evaluate` reads a
run's scenario entries and gives one row per target: the figure, the
value, the target and whether it is met (None when the run did not
measure it).
"""


def _find(results, prefix):
    for r in results:
        if r['name'].startswith(prefix):
            return r
    return None


def _all(results, prefix):
    return [r for r in results if r['name'].startswith(prefix)]


def _ratio(a, b):
    if a is None or not b:
        return None
    return round(a / b, 2)


def _row(figure, value, target, ok, detail=None):
    return {'figure': figure, 'value': value, 'target': target,
            'met': None if ok is None else bool(ok), 'detail': detail}


def _check(value, limit, at_most=True):
    if value is None:
        return None
    return value <= limit if at_most else value >= limit


def evaluate(results, vms_max, scale_max):
    rows = []
    one = _find(results, 'one instance fault')
    if one:
        d, f = one['doctor_ext'], one.get('floor', {})
        r50 = _ratio(d.get('p50_ms'), f.get('p50_ms'))
        r99 = _ratio(d.get('p99_ms'), f.get('p99_ms'))
        rows.append(_row('one fault p50 vs floor', r50, '<= 1.5x',
                         _check(r50, 1.5),
                         '%s vs %s ms' % (d.get('p50_ms'), f.get('p50_ms'))))
        rows.append(_row('one fault p99 vs floor', r99, '<= 2x',
                         _check(r99, 2.0),
                         '%s vs %s ms' % (d.get('p99_ms'), f.get('p99_ms'))))
    cold = _find(results, 'cold fault')
    if cold:
        d = cold['doctor_ext']
        rows.append(_row('cold fault vs warm p50', d.get('cold_vs_warm'),
                         '<= 2x', _check(d.get('cold_vs_warm'), 2.0),
                         '%s vs %s ms after %s s idle' % (
                             d.get('cold_ms'), d.get('warm_p50_ms'),
                             d.get('idle_s'))))
    for r in _all(results, 'host failure, %d VMs' % vms_max):
        d, f = r['doctor_ext'], r.get('floor', {})
        rows.append(_row('%s: vs stock' % r['name'], r['ratio'], '>= 60x',
                         _check(r['ratio'], 60, at_most=False),
                         '%s vs %s ms' % (d.get('last_ms'),
                                          r['stock'].get('last_ms'))))
        vs = _ratio(d.get('last_ms'), f.get('last_ms'))
        rows.append(_row('%s: vs floor fan-out' % r['name'], vs, '<= 2x',
                         _check(vs, 2.0), '%s vs %s ms' % (
                             d.get('last_ms'), f.get('last_ms'))))
    rack = _find(results, 'rack,')
    if rack:
        rows.append(_row('rack, last owner vs stock', rack['ratio'],
                         '>= 60x', _check(rack['ratio'], 60, at_most=False),
                         '%s vs %s ms (floor %s ms)' % (
                             rack['doctor_ext'].get('last_ms'),
                             rack['stock'].get('last_ms'),
                             rack.get('floor', {}).get('last_ms'))))
    burst = _find(results, 'burst of')
    if burst:
        d, f = burst['doctor_ext'], burst.get('floor', {})
        vs = _ratio(d.get('events_per_s'), f.get('events_per_s'))
        ok = _check(vs, 0.7, at_most=False)
        if ok is not None and d.get('lost'):
            ok = False
        rows.append(_row('burst events/s vs floor, 0 lost', vs, '>= 0.7x',
                         ok, '%s vs %s events/s, %s lost' % (
                             d.get('events_per_s'), f.get('events_per_s'),
                             d.get('lost'))))
    levels = _all(results, 'alarm scale,')
    top = _find(results, 'alarm scale, %d alarms' % scale_max)
    if top and levels:
        d = top['doctor_ext']
        base = levels[0]['doctor_ext']
        rows.append(_row('%d alarms: index bytes/alarm' % scale_max,
                         d.get('index_bytes_per_alarm'), '<= 600 B',
                         _check(d.get('index_bytes_per_alarm'), 600),
                         'tracemalloc over %s alarms' % d.get(
                             'index_alarms')))
        vs = _ratio(d.get('p50_ms'), base.get('p50_ms'))
        rows.append(_row('%d alarms: p50 vs %d alarms' % (
            scale_max, base.get('alarms') or 0), vs, '<= 1.5x',
            _check(vs, 1.5), '%s vs %s ms' % (
                d.get('p50_ms'), base.get('p50_ms'))))
        first, first0 = d.get('restart_first_ms'), base.get(
            'restart_first_ms')
        extra = None if first is None or first0 is None else round(
            (first - first0) / 1000.0, 2)
        rows.append(_row('%d alarms: first event after a restart, beyond '
                         'the restart with %d alarms (s)' % (
                             scale_max, base.get('alarms') or 0), extra,
                         '<= 1 s', _check(extra, 1.0),
                         'restart to first owner %s ms (%s ms with %s '
                         'alarms)' % (first, first0, base.get('alarms'))))
    neighbour = _find(results, 'neighbour:')
    if neighbour:
        d = neighbour['doctor_ext']
        vs = _ratio(d.get('beside_p50_ms'), d.get('alone_p50_ms'))
        rows.append(_row('neighbour: last healthy owner beside a greedy '
                         'project vs alone', vs, '<= 1.5x', _check(vs, 1.5),
                         '%s vs %s ms (p50 of %s samples, %s greedy '
                         'notifications)' % (
                             d.get('beside_p50_ms'), d.get('alone_p50_ms'),
                             d.get('samples'),
                             d.get('greedy_notifications'))))
    return rows


def rst_lines(rows):
    """The target rows as a reStructuredText table."""
    table = [('Target', 'Value', 'Goal', 'Met', 'Figures')]
    for r in rows:
        table.append((r['figure'], str(r['value']), r['target'],
                      {True: 'yes', False: 'no', None: 'n/a'}[r['met']],
                      r['detail'] or ''))
    widths = [max(len(t[i]) for t in table) for i in range(5)]
    sep = '  '.join('=' * w for w in widths)
    lines = [sep]
    for i, t in enumerate(table):
        lines.append('  '.join(c.ljust(w) for c, w in zip(t, widths))
                     .rstrip())
        if i == 0:
            lines.append(sep)
    lines.append(sep)
    return lines
