"""The agent's gate for host reports: each refusal, and what passes.

Reports are signed as the monitor signs them and turned into events by
Ceilometer's own converter with our event definitions.
"""

import datetime
import threading
import time
import uuid

import fixtures
from oslo_config import cfg
from oslo_utils import timeutils
from oslotest import base
import testscenarios

from doctor_ext.evaluator import events
from doctor_ext.evaluator import store as store_mod
from doctor_ext.inspector import replays
from doctor_ext.inspector import report_check
from doctor_ext.monitor import report
from doctor_ext.monitor import signing
from tests import fixtures as doctor_fixtures

load_tests = testscenarios.load_tests_apply_scenarios

SECRET = 'shared-secret'


def signed_down(host='compute-1', secret=SECRET, now=None, **kwargs):
    r = report.build_report(host, monitor_event_id=kwargs.pop(
        'monitor_event_id', str(uuid.uuid4())), **kwargs)
    return signing.sign(secret, r['type'], r, now=now)


def event_of(payload, event_type='compute.host.down', **kwargs):
    return doctor_fixtures.report_event(event_type, payload, **kwargs)


class ReportCheckTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        self.conf([], project='doctor-test')
        report_check.register_opts(self.conf)
        self.conf.set_override('secret', SECRET, report_check.GROUP)
        self.check = report_check.ReportCheck(self.conf)
        # Made before the log fixture: it sets up logging again.
        doctor_fixtures.event_converter()
        self.log = self.useFixture(fixtures.FakeLogger())

    def assertRefused(self, reason, event):
        before = self.check.refused[reason]
        self.assertFalse(self.check.accept(event))
        self.assertEqual(before + 1, self.check.refused[reason])

    def test_signed_report_accepted(self):
        self.assertTrue(self.check.accept(event_of(signed_down())))
        self.assertEqual({}, dict(self.check.refused))
        self.assertEqual('', self.log.output)

    def test_unsigned_refused_and_logged(self):
        r = report.build_report('compute-7', monitor_event_id='mon-7')
        event = event_of(r, publisher_id='doctor-monitor.rogue')
        self.assertRefused(signing.UNSIGNED, event)
        self.assertIn('Refused compute.host.down report from publisher '
                      'doctor-monitor.rogue (host compute-7, monitor ping, '
                      'report mon-7, message %s): unsigned: no signature'
                      % event.message_id, self.log.output)
        self.assertEqual(1, self.log.output.count('Refused'))

    def test_forged_refused(self):
        self.assertRefused(signing.BAD_SIGNATURE,
                           event_of(signed_down(secret='guessed')))
        tampered = signed_down('compute-1')
        tampered['details']['hostname'] = 'compute-2'
        self.assertRefused(signing.BAD_SIGNATURE, event_of(tampered))
        self.assertNotIn(SECRET, self.log.output)

    def test_outside_window_refused(self):
        old = timeutils.utcnow() - datetime.timedelta(seconds=301)
        self.assertRefused(signing.OUT_OF_WINDOW,
                           event_of(signed_down(now=old)))
        self.conf.set_override('window', 600, report_check.GROUP)
        self.assertTrue(self.check.accept(event_of(signed_down(now=old))))

    def test_replay_refused_redelivery_handled(self):
        payload = signed_down()
        first = event_of(payload, message_id='m-1')
        self.assertTrue(self.check.accept(first))
        # The broker delivers the same message again: handled again.
        self.assertTrue(self.check.accept(event_of(payload,
                                                   message_id='m-1')))
        # Another message with the same report: a replay.
        self.assertRefused(signing.REPLAYED,
                           event_of(payload, message_id='m-2'))
        # Even signed again, the monitor_event_id was used.
        again = signing.sign(SECRET, payload['type'], payload)
        self.assertRefused(signing.REPLAYED,
                           event_of(again, message_id='m-3'))
        self.assertIn('replayed: another message carried the same report',
                      self.log.output)

    def test_maintenance_report_states_are_not_replays(self):
        start = {'host': 'compute-2', 'session_id': 's-1',
                 'state': 'IN_MAINTENANCE'}
        for event_type, payload in (
                ('maintenance.host', start),
                ('maintenance.host', dict(start,
                                          state='MAINTENANCE_COMPLETE')),
                ('maintenance.host.end', start)):
            self.assertTrue(self.check.accept(event_of(
                signing.sign(SECRET, event_type, payload),
                event_type=event_type)))
        self.assertRefused(signing.REPLAYED, event_of(
            signing.sign(SECRET, 'maintenance.host', start),
            event_type='maintenance.host'))
        self.assertRefused(signing.NO_ID, event_of(
            signing.sign(SECRET, 'maintenance.host', {'host': 'compute-2'}),
            event_type='maintenance.host'))
        self.assertRefused(signing.UNSIGNED, event_of(
            start, event_type='maintenance.host.end'))

    def test_one_line_and_one_count_per_message(self):
        # The inspector and doctor:// both ask about the same message.
        event = event_of(report.build_report('compute-1'))
        self.assertFalse(self.check.accept(event))
        self.assertFalse(self.check.accept(event))
        self.assertEqual(1, self.check.refused[signing.UNSIGNED])
        self.assertEqual(1, self.log.output.count('Refused'))

    def test_other_events_pass(self):
        self.conf.clear_override('secret', report_check.GROUP)
        for event in (
                events.make_event('compute.instance.update', {
                    'instance_id': 'vm-1', 'state': 'error'}),
                events.make_event('service.update', {
                    'host': 'compute-1', 'forced_down': 1})):
            self.assertTrue(self.check.accept(event))

    def test_no_secret_refuses_every_report(self):
        self.conf.clear_override('secret', report_check.GROUP)
        self.check.warn_if_off()
        self.assertIn('[doctor_reports] secret is not set: every host fault '
                      'and maintenance report', self.log.output)
        self.assertRefused(report_check.NO_SECRET, event_of(signed_down()))

    def test_verify_off_explicitly(self):
        self.check.warn_if_off()
        self.assertEqual('', self.log.output)
        self.conf.set_override('verify', False, report_check.GROUP)
        self.check.warn_if_off()
        self.assertIn('[doctor_reports] verify is off', self.log.output)
        self.assertTrue(self.check.accept(event_of(
            report.build_report('compute-1'))))

    def test_secret_is_masked_in_option_logging(self):
        self.conf.log_opt_values(report_check.LOG.logger, 40)
        self.assertNotIn(SECRET, self.log.output)
        self.assertIn('doctor_reports.secret', self.log.output)


class ReplayMemoryTest(base.BaseTestCase):

    def test_seen_until_it_expires(self):
        now = [100.0]
        memory = report_check.ReplayMemory(clock=lambda: now[0])
        self.assertFalse(memory.seen('k', 'm-1', until=400.0))
        self.assertFalse(memory.seen('k', 'm-1', until=400.0))
        self.assertTrue(memory.seen('k', 'm-2', until=400.0))
        self.assertFalse(memory.seen('other', 'm-3', until=500.0))
        now[0] = 450.0
        # Past its time, the window refuses the report anyway.
        self.assertFalse(memory.seen('k', 'm-2', until=700.0))
        now[0] = 800.0
        memory.seen('new', 'm-4', until=900.0)
        self.assertEqual(1, len(memory))


class SharedReplayTest(base.BaseTestCase):
    """Two agents on one database, on PostgreSQL and MariaDB."""

    scenarios = doctor_fixtures.BACKENDS

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(doctor_fixtures.AodhDatabase(
            self.backend))
        doctor_fixtures.event_converter()
        self.useFixture(fixtures.FakeLogger())
        self.checks = [self.agent(), self.agent()]

    def agent(self):
        conf = doctor_fixtures.store_conf(self.db.url)
        report_check.register_opts(conf)
        conf.set_override('secret', SECRET, report_check.GROUP)
        store = store_mod.AodhStore(conf)
        self.addCleanup(store.dispose)
        return report_check.ReportCheck(
            conf, replays.SharedReplayMemory(store))

    def test_a_replay_is_refused_by_the_other_agent(self):
        signed = signed_down()
        first = event_of(signed)
        self.assertTrue(self.checks[0].accept(first))
        # The same message redelivered to the other agent: not a replay.
        self.assertTrue(self.checks[1].accept(first))
        # The same report in another message, at the other agent.
        self.assertFalse(self.checks[1].accept(event_of(signed)))
        self.assertEqual({signing.REPLAYED: 1}, dict(self.checks[1].refused))
        # Another report is not held up.
        self.assertTrue(self.checks[1].accept(event_of(signed_down())))

    def test_two_agents_at_once_one_accepts(self):
        signed = signed_down()
        events_ = [event_of(signed) for _ in range(2)]
        accepted = []
        start = threading.Barrier(2)

        def agent(n):
            start.wait(10)
            accepted.append(self.checks[n].accept(events_[n]))
        threads = [threading.Thread(target=agent, args=(n,))
                   for n in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual([False, True], sorted(accepted))

    def test_purged_once_the_window_closed(self):
        memory = replays.SharedReplayMemory(self.checks[0].memory._store)
        self.assertFalse(memory.seen(('compute.host.down', 'old'), 'm-1',
                                     until=time.time() - 1))
        self.assertFalse(memory.seen(('compute.host.down', 'new'), 'm-2',
                                     until=time.time() + 300))
        # A report whose window closed, not yet purged: another message
        # carrying it is not held for a replay (its window refuses it).
        self.assertFalse(memory.seen(('compute.host.down', 'old'), 'm-3',
                                     until=time.time() - 1))
        self.assertEqual(1, memory.purge())
        self.assertEqual(1, len(memory))
        self.assertTrue(memory.seen(('compute.host.down', 'new'), 'm-4',
                                    until=time.time() + 300))

    def test_database_down_this_process_memory_only(self):
        conf = doctor_fixtures.store_conf(
            'postgresql://nobody@127.0.0.1:1/none')
        report_check.register_opts(conf)
        conf.set_override('secret', SECRET, report_check.GROUP)
        store = store_mod.AodhStore(conf)
        self.addCleanup(store.dispose)
        check = report_check.ReportCheck(
            conf, replays.SharedReplayMemory(store))
        signed = signed_down()
        # The fault is acted on: owners are told from Nova meanwhile.
        self.assertTrue(check.accept(event_of(signed)))
        # A replay that reaches this process is still refused.
        self.assertFalse(check.accept(event_of(signed)))
        self.assertEqual({signing.REPLAYED: 1}, dict(check.refused))
