"""Scenario 4: consumers that hang, answer 500 or refuse connections.

One host with 60 instances fails: 30 of them belong to the healthy
consumers of the three projects, 10 to each failing consumer (one hangs,
one answers 500, one refuses connections; they serve the same projects as
the healthy ones, so only the per-consumer lanes keep them apart). The
failing consumers' action URLs carry ``user:password@``.
"""

import collections
import re
import time
import urllib.parse

from doctor_ext_lab import consumer as consumer_mod
from tests.faults import base

PASSWORD = 'S3cret-pa55-%s' % time.time_ns()
RETRIES = 3
BACKOFF = 0.1
BACKOFF_MAX = 0.4
READ_TIMEOUT = 1.0


def with_credentials(url):
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc='vnfm:%s@%s' % (PASSWORD, parts.netloc)
                          ).geturl()


class TestFailingConsumers(base.FaultTest):

    agent_options = {'doctor_notifier': {
        'max_retries': str(RETRIES), 'retry_backoff': str(BACKOFF),
        'retry_backoff_max': str(BACKOFF_MAX),
        'read_timeout': str(READ_TIMEOUT), 'connect_timeout': '0.5'}}

    def test_failing_consumers_do_not_delay_the_others(self):
        bad = {}
        for kind in ('hang', 'error', 'refuse'):
            bad[kind] = self.useFixture(
                consumer_mod.ConsumerFixture()).consumer
        bad['hang'].hang()
        bad['error'].respond(500)
        good_vms = self.add_vms('compute-1', 30)
        bad_alarms = {}
        for kind, consumer in bad.items():
            for i in range(10):
                project = self.PROJECTS[i % 3]
                vm = self.nova.add_server('compute-1', project)
                alarm = self.stack.create_doctor_alarm(
                    project, vm, with_credentials(consumer.url('/' + kind)))
                bad_alarms[alarm['alarm_id']] = kind
        agent = self.start_agent()
        bad['refuse'].refuse()

        tally = base.Tally('consumers', 'consumers hang, answer 500, '
                           'refuse (10 notifications each) beside healthy '
                           'ones (30)')
        tally.expected = {a for _, a in good_vms.values()}
        sent, last = self.report_down(tally, 'compute-1', 10)
        # Every failing notification gives up, within its retry bound.
        base.poll(lambda: self.log_of(agent).count(
            'Failed to notify alarm') >= len(bad_alarms), 60,
            'the failing notifications to give up')
        tally.recover = time.time() - sent
        tally.recover_what = 'report -> every failing notification gave up'
        tally.count(self.received())
        attempts = {kind: c.count() for kind, c in bad.items()}
        tally.extra = {'healthy_last_ms': round((last - sent) * 1000, 1),
                       'attempts': attempts}
        self.record(tally)

        # The healthy consumers, on time.
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        # Retries: bounded, with growing delays.
        self.assertEqual(10 * (RETRIES + 1), attempts['error'])
        self.assertEqual(10 * (RETRIES + 1), attempts['hang'])
        self.assertEqual(0, attempts['refuse'])
        by_alarm = collections.defaultdict(list)
        for r in bad['error'].received:
            by_alarm[r.body['alarm_id']].append(r.monotonic)
        for times in by_alarm.values():
            gaps = [b - a for a, b in zip(times, times[1:])]
            for n, gap in enumerate(gaps):
                delay = min(BACKOFF_MAX, BACKOFF * 2 ** n)
                self.assertGreaterEqual(gap, delay / 2 * 0.95, gaps)
        # Logged with the alarm and the masked URL, never the password.
        log = self.log_of(agent)
        self.assertNotIn(PASSWORD, log)
        for alarm_id, kind in bad_alarms.items():
            port = bad[kind].port
            self.assertRegex(log, re.escape(
                'Failed to notify alarm %s at http://vnfm:***@127.0.0.1:%d/%s'
                % (alarm_id, port, kind)))
        with open(agent.log_file[:-len('.log')] + '.out',
                  errors='replace') as f:
            self.assertNotIn(PASSWORD, f.read())
