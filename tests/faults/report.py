"""Print the reliability table from the fault suite's results.

Usage::

    DOCTOR_FAULTS_RESULTS=/tmp/faults.jsonl tox -e faults
    python -m tests.faults.report /tmp/faults.jsonl

The latest record of each scenario is used, in the order of ORDER.
"""

import json
import sys

from tests.faults import base

ORDER = ('broker-connections', 'agent-sigkill', 'agent-sigkill-hang',
         'agent-sigkill-hang-default', 'two-agents', 'ha-2x2',
         'ha-sigkill-after-the-report', 'ha-sigkill-after-claims',
         'ha-sigkill-mid-delivery', 'ha-sigkill-mid-fencing',
         'ha-3-agents-chaos', 'consumers',
         'nova-503', 'nova-slow', 'nova-down', 'nova-policy',
         'real-nova-held', 'real-nova-refused',
         'database-down', 'database-hang', 'bad-input', 'malformed',
         'bad-alarm-rules', 'isolation')
HEADERS = ('Fault injected', 'Sent', 'Expected', 'Delivered', 'Duplicated',
           'Lost', 'Time to recover')


def load(path):
    latest = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                record = json.loads(line)
                latest[record['scenario']] = record
    return [latest[s] for s in ORDER if s in latest] + [
        r for s, r in latest.items() if s not in ORDER]


def recover(record):
    if record['recover_s'] is None:
        return record['recover_what'] or '-'
    return '%.2f s (%s)' % (record['recover_s'], record['recover_what'])


def table(records):
    rows = [HEADERS] + [
        (r['fault'], str(r['sent']), str(r['expected']),
         str(r['delivered']), str(r['duplicated']), str(r['lost']),
         recover(r)) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    rule = '  '.join('=' * w for w in widths)
    lines = [rule, '  '.join(h.ljust(w) for h, w in zip(HEADERS, widths)),
             rule]
    for row in rows[1:]:
        lines.append('  '.join(c.ljust(w) for c, w in zip(row, widths)))
    lines.append(rule)
    return '\n'.join(line.rstrip() for line in lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    records = load(argv[0] if argv else base.RESULTS)
    print(table(records))
    extras = [r for r in records if r['extra']]
    if extras:
        # A literal block: the figures read as the JSON they are.
        print('\nThe ``extra`` figures of each scenario::\n')
    for r in extras:
        figures = json.dumps(r['extra'], sort_keys=True)
        print('    %s: %s' % (r['scenario'], figures))
    return 0


if __name__ == '__main__':
    sys.exit(main())
