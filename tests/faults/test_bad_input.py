"""Scenario 7: bad input at volume, on the bus and through Aodh's API.

* 10,000 fuzzed notifications (:mod:`tests.faults.fuzz`) mixed with 220
  valid faults, sent on the bus to one agent: the agent stays up, drains
  its queues (no notification is requeued for ever), every valid fault is
  delivered and no fuzzed one notifies anyone; what cannot be converted is
  logged. The same notifications go through Ceilometer's converter in this
  process first, as the reference for what the agent must log.
* Malformed messages put on the queues by hand (not JSON, not UTF-8, too
  deep for the JSON decoder, no oslo.messaging envelope).
* Fuzzed alarm rules created through aodh-api beside valid alarms: the
  valid ones keep firing.
* A poison notification (its publishing always fails, so the agent
  requeues it) between valid faults, with the notification queues as the
  install guide sets them up (quorum queues with a delivery limit, a policy
  naming doctor-ext's dead-letter exchange): the broker dead-letters it
  after the limit, the agent logs it once with its id, a copy is parked,
  and every valid fault around it is delivered.
"""

import collections
import json
import logging
import os
import time
import uuid

from ceilometer.event import converter
from ceilometer import service
import kombu
from stevedore import extension

from doctor_ext.evaluator import events as events_mod
from doctor_ext.evaluator import rules
from doctor_ext_lab import services
from tests.faults import base
from tests.faults import fuzz

FUZZ = 10000
PLUGIN_LINES = ('not a valid', 'Unknown value')


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def reference(notifications, definitions):
    """What Ceilometer's converter makes of each notification here.

    Returns (plugin warning lines, events the evaluator rejects); raises
    if the converter fails on one (the agent would requeue it for ever).
    """
    conf = service.prepare_service(argv=[], config_files=[])
    conf.set_override('definitions_cfg_file', definitions, group='event')
    conv = converter.setup_events(conf, extension.ExtensionManager(
        namespace='ceilometer.event.trait_plugin'))
    lines = _Lines()
    logger = logging.getLogger('doctor_ext.data.trait_plugins')
    logger.addHandler(lines)
    logger.propagate = False
    invalid = 0
    try:
        for i, n in enumerate(notifications):
            if n['priority'] not in ('info', 'error'):
                continue    # the agent's event endpoint drops the others
            body = {'ctxt': n['ctxt'], 'publisher_id': n['publisher_id'],
                    'event_type': n['event_type'], 'payload': n['payload'],
                    'metadata': {'message_id': 'fuzz-%d' % i,
                                 'timestamp': '2026-01-01 00:00:00.000000'}}
            event = conv.to_event(n['priority'], body)
            try:
                events_mod.from_ceilometer(event)
            except events_mod.InvalidEvent:
                invalid += 1
    finally:
        logger.removeHandler(lines)
        logger.propagate = True
    return ([x for x in lines.lines if any(p in x for p in PLUGIN_LINES)],
            invalid)


class TestFuzzedNotifications(base.FaultTest):

    # The fuzz names random hosts down: fencing them is not the point.
    agent_options = {'doctor_inspector': {'fence': 'False'}}

    def test_ten_thousand_bad_notifications(self):
        bad = fuzz.notification_mix(FUZZ)
        warnings, invalid = reference(bad, self.stack.event_definitions)
        host_vms = self.vms(20, hosts=['down-%d' % i for i in range(10)],
                            nova=True)
        nova_vms = self.vms(200, hosts=['compute-%d' % i
                                        for i in range(10)])
        alarms = self.alarm_rows(host_vms)
        alarms.update(self.alarm_rows(nova_vms))
        agent = self.start_agent()

        tally = base.Tally('bad-input', '10,000 fuzzed notifications '
                           'mixed with 220 valid faults')
        tally.expected = set(alarms)
        valid = [('nova', vm, p, h) for vm, (p, h) in nova_vms.items()]
        valid += [('host', None, None, h) for h in sorted(
            {h for _, h in host_vms.values()})]
        every = FUZZ // len(valid)
        started = time.monotonic()
        refused = collections.Counter()
        for i, n in enumerate(bad):
            try:
                self.bus.raw(n['event_type'], n['payload'], n['priority'],
                             n['ctxt'], n['publisher_id'])
            except (TypeError, ValueError, RecursionError) as e:
                # Cannot even be serialized: never reaches the bus.
                refused[type(e).__name__] += 1
            tally.sent += 1
            if i % every == 0 and valid:
                kind, vm, project, host = valid.pop()
                if kind == 'nova':
                    self.bus.instance_update(vm, project, host)
                else:
                    self.reporter.report(host)
                tally.sent += 1
        self.assertEqual([], valid)
        self.wait_alarms(alarms, 240)
        self.wait_drained(240)
        tally.recover = time.monotonic() - started
        tally.recover_what = 'first send -> queues drained'
        self.assertTrue(agent.alive())
        log = self.log_of(agent)
        logged = sum(log.count(p) for p in PLUGIN_LINES)
        dropped = log.count('Dropping event')
        tally.extra = {'not_serializable': dict(refused),
                       'trait_values_rejected': logged,
                       'events_rejected': dropped,
                       'requeued': log.count('Callback raised an exception')}
        self.record(tally.count(self.received()))
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertEqual(0, tally.unexpected)
        # Nothing failed in the agent's endpoint (which would requeue).
        self.assertEqual(0, tally.extra['requeued'])
        # Every value the converter rejects here is logged by the agent.
        self.assertEqual(len(warnings), logged)
        self.assertGreaterEqual(dropped, invalid)
        self.assertGreater(logged, 0)


class TestMalformedMessages(base.FaultTest):
    """Messages no oslo.messaging sender would produce, put by hand.

    Among them envelopes whose ``timestamp`` is missing or not a date, or
    whose ``event_type`` is not a string, and a stock typed trait that is
    not of its type: Ceilometer's converter raises on them before any trait
    plugin runs. Ceilometer's ``event`` pipeline would requeue them for
    ever (``ack_on_event_error = False``); the agent runs ``doctor_event``,
    which drops them: the queues drain.
    """

    def test_malformed_messages_do_not_stop_the_agent(self):
        vms = self.vms(20, hosts=['compute-1'])
        alarms = self.alarm_rows(vms)
        agent = self.start_agent()
        envelope = {'oslo.version': '2.0', 'oslo.message': None}
        deep = '{"a":' * 100000 + '1' + '}' * 100000
        bodies = [
            (b'this is not json', 'application/json'),
            (b'\xff\xfe\xfa\x00 not utf-8', 'application/json'),
            (deep.encode(), 'application/json'),
            (json.dumps([1, 2, 3]).encode(), 'application/json'),
            (json.dumps({'no': 'envelope'}).encode(), 'application/json'),
            (json.dumps(dict(envelope, **{
                'oslo.message': 'not json either'})).encode(),
             'application/json'),
            (json.dumps(dict(envelope, **{'oslo.message': json.dumps(
                {'event_type': 'compute.host.down', 'priority': 'bogus',
                 'payload': 'x', 'message_id': 'm-1',
                 'timestamp': '2026-01-01 00:00:00.000000'})})).encode(),
             'application/json'),
            (json.dumps(dict(envelope, **{'oslo.message': json.dumps(
                {'event_type': 'compute.instance.update',
                 'priority': 'info', 'payload': ['state', 'error'],
                 'message_id': 'm-2', 'publisher_id': {'x': 1},
                 'timestamp': '2026-01-01 00:00:00.000000'})})).encode(),
             'application/json'),
            (b'plain text', 'text/plain'),
        ]
        unconvertible = {
            'no-timestamp': {'timestamp': None},
            'bad-timestamp': {'timestamp': 'yesterday'},
            'event-type-list': {'event_type': ['compute.host.down']},
            'bad-created-at': {'event_type': 'volume.create.end',
                               'payload': {'created_at': 'not a date'}},
        }
        for name, fields in unconvertible.items():
            message = {'event_type': 'compute.instance.update',
                       'priority': 'info', 'publisher_id': 'hand-made',
                       'message_id': name, 'payload': {'state': 'error'},
                       'timestamp': '2026-01-01 00:00:00.000000'}
            message.update(fields)
            message = {k: v for k, v in message.items() if v is not None}
            bodies.append((json.dumps(dict(envelope, **{
                'oslo.message': json.dumps(message)})).encode(),
                'application/json'))
        tally = base.Tally('malformed', '%d hand-made malformed AMQP '
                           'messages, then 20 valid faults' % len(bodies))
        tally.expected = set(alarms)
        url = self.broker.url.replace('rabbit://', 'amqp://', 1)
        with kombu.Connection(url) as conn:
            producer = conn.Producer()
            exchange = kombu.Exchange('nova', type='topic', durable=False)
            for body, content_type in bodies:
                producer.publish(body, exchange=exchange,
                                 routing_key='notifications.info',
                                 content_type=content_type,
                                 content_encoding='binary'
                                 if isinstance(body, bytes) else 'utf-8')
                tally.sent += 1
        started = time.monotonic()
        for vm, (project, host) in vms.items():
            self.bus.instance_update(vm, project, host)
            tally.sent += 1
        self.wait_alarms(alarms, 60)
        self.wait_drained(60)
        tally.recover = time.monotonic() - started
        tally.recover_what = 'valid faults sent -> all notified, drained'
        self.record(tally.count(self.received()))
        self.assertTrue(agent.alive())
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.unexpected)
        log = self.log_of(agent)
        for name in unconvertible:
            self.assertIn('Dropping notification %s ' % name, log)


class TestPoisonMessages(base.FaultTest):
    """A notification requeued for ever without a delivery limit."""

    DELIVERY_LIMIT = 5
    # As the install guide says: quorum queues (durable), and the delivery
    # limit in the broker's policy (the same queue arguments for every
    # service that declares the queues).
    agent_options = {'oslo_messaging_rabbit': {
        'rabbit_quorum_queue': 'True',
        'amqp_durable_queues': 'True'}}

    def poison_pipeline(self):
        """The product's event pipeline, and a sink that always fails.

        Ceilometer's http publisher raises on a refused connection; alone in
        its sink, the error reaches the endpoint, which requeues.
        """
        with open(os.path.join(services.REPO, 'etc', 'ceilometer',
                               'event_pipeline.yaml')) as f:
            text = f.read()
        text = text.replace('sinks:\n    - name: doctor_inspector_sink', (
            '    - name: poison_source\n'
            '      events:\n'
            '          - "poison.*"\n'
            '      sinks:\n'
            '          - poison_sink\n'
            'sinks:\n'
            '    - name: poison_sink\n'
            '      publishers:\n'
            '          - http://127.0.0.1:%d/refused\n'
            '    - name: doctor_inspector_sink') % services.free_port())
        self.assertIn('poison_sink', text)
        path = os.path.join(self.stack.workdir, 'poison_pipeline.yaml')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_poison_dead_lettered_after_the_limit(self):
        # The install guide's policy, on the test's vhost.
        base._ctl('set_policy', '-p', self.broker.vhost, '--apply-to',
                  'queues', 'doctor-ext-dead-letter',
                  '^(notifications|versioned_notifications)\\.',
                  json.dumps({'dead-letter-exchange':
                              'doctor-ext.dead-letter',
                              'delivery-limit': self.DELIVERY_LIMIT}))
        self.stack.event_pipeline = self.poison_pipeline()
        vms = self.vms(20, hosts=['compute-1'])
        alarms = self.alarm_rows(vms)
        agent = self.start_agent()
        tally = base.Tally('poison', 'a notification whose publishing '
                           'always fails, between 20 valid faults')
        tally.expected = set(alarms)
        poison_id = 'poison-%s' % uuid.uuid4().hex[:8]
        # Every service of a cloud on quorum queues says so, nova-compute
        # included.
        self.bus = base.NovaBus(self.broker.url, quorum=True)
        self.addCleanup(self.bus.close)
        started = time.monotonic()
        items = list(vms.items())
        for vm, (project, host) in items[:10]:
            self.bus.instance_update(vm, project, host)
        url = self.broker.url.replace('rabbit://', 'amqp://', 1)
        with kombu.Connection(url) as conn:
            conn.Producer().publish(
                json.dumps({'oslo.version': '2.0', 'oslo.message': json.dumps(
                    {'message_id': poison_id, 'event_type': 'poison.test',
                     'publisher_id': 'fuzz', 'priority': 'INFO',
                     'payload': {'x': 1},
                     'timestamp': '2026-01-01 00:00:00.000000'})}),
                exchange=kombu.Exchange('nova', type='topic', durable=True),
                routing_key='notifications.info',
                content_type='application/json', content_encoding='utf-8')
        for vm, (project, host) in items[10:]:
            self.bus.instance_update(vm, project, host)
        tally.sent = 21
        self.wait_alarms(alarms, 60)
        base.poll(lambda: 'Dead-lettered notification %s ' % poison_id
                  in self.log_of(agent), 60, 'the poison to be dead-lettered')
        self.wait_drained(60)
        tally.recover = time.monotonic() - started
        tally.recover_what = 'sent -> all notified, poison dead-lettered'
        log = self.log_of(agent)
        requeued = log.count('Requeueing notification %s ' % poison_id)
        tally.extra = {'deliveries_of_the_poison': requeued,
                       'delivery_limit': self.DELIVERY_LIMIT}
        self.record(tally.count(self.received()))
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.unexpected)
        # Delivered once, then again up to the limit: never for ever.
        self.assertEqual(self.DELIVERY_LIMIT + 1, requeued)
        self.assertEqual(1, log.count('Dead-lettered notification %s '
                                      '(event_type poison.test, publisher '
                                      'fuzz) from queue notifications.info, '
                                      'reason delivery_limit' % poison_id))
        self.assertEqual((1, 0), self.queues()['doctor-ext.parked'])


class TestFuzzedAlarmRules(base.FaultTest):
    """Alarm rules drawn by Hypothesis, created through aodh-api."""

    def test_fuzzed_rules_do_not_break_other_alarms(self):
        fuzz_consumer = self.consumers['project-c']
        created = []
        refused = collections.Counter()
        for i, rule in enumerate(fuzz.draw(fuzz.event_rules, 150,
                                           batch=10)):
            project = self.PROJECTS[i % 3]
            alarm = {'name': 'fuzz-%d' % i, 'type': 'event',
                     'severity': 'low', 'repeat_actions': False,
                     'alarm_actions': [fuzz_consumer.url('/fuzz')],
                     'event_rule': rule}
            try:
                created.append(self.stack.aodh('POST', '/v2/alarms',
                                               project, alarm))
            except base.services.StackError as e:
                # aodh-api refuses (4xx), or fails on (5xx, e.g. a NUL
                # character in a value) what it cannot store.
                if ' -> 4' not in str(e) and ' -> 5' not in str(e):
                    raise
                refused[str(e).split(' -> ')[1][:3]] += 1
        vms = self.add_vms('compute-1', 30)
        agent = self.start_agent()
        # A fuzzed rule created while the agent runs, too.
        late = self.stack.aodh('POST', '/v2/alarms', 'project-a', {
            'name': 'fuzz-late', 'type': 'event', 'severity': 'low',
            'alarm_actions': [fuzz_consumer.url('/fuzz')],
            'event_rule': {'event_type': 'compute.instance.update',
                           'query': [{'field': 'foo', 'op': 'lt',
                                      'value': 'x', 'type': 'string'}]}})
        base.poll(lambda: late['alarm_id'] in self.log_of(agent), 10,
                  'the agent to see the late alarm')
        tally = base.Tally('bad-alarm-rules', '%d fuzzed alarm rules '
                           'accepted by aodh-api (%d refused) beside 30 '
                           'Doctor alarms' % (len(created) + 1,
                                              sum(refused.values())))
        tally.expected = {a for _, a in vms.values()}
        started = time.monotonic()
        self.reporter.report('compute-1')
        tally.sent = 1
        self.wait_alarms(tally.expected, 20)
        tally.recover = time.monotonic() - started
        tally.recover_what = 'report -> Doctor alarms notified'
        tally.count([r for r in self.received() if r.path != '/fuzz'])
        invalid = 0
        for alarm in created:
            try:
                rules.compile_alarm({'alarm_id': alarm['alarm_id'],
                                     'type': 'event',
                                     'rule': alarm['event_rule']})
            except rules.InvalidAlarm:
                invalid += 1
        log = self.log_of(agent)
        tally.extra = {'accepted': len(created) + 1,
                       'refused': dict(refused),
                       'invalid_for_the_evaluator': invalid + 1,
                       'logged_invalid': log.count(
                           'Ignoring alarm that cannot be evaluated')}
        self.record(tally)
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertEqual(invalid + 1, tally.extra['logged_invalid'])
        self.assertTrue(agent.alive())
