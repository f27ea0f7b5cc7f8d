"""Scenario 8: project isolation and signed bus events, on the real stack.

The properties are in tests/unit/evaluator/test_isolation.py; here, a spot
check through the whole path: catch-all alarms (``event_type = *``, no
query) of three projects see the events of their own project only, and
the events ``doctor://?relay=`` puts on the bus for a stock aodh-listener
are signed with ``[publisher] telemetry_secret``.
"""

import os
import threading
import time

from ceilometer.publisher import utils as pub_utils
from oslo_config import cfg
import oslo_messaging

from doctor_ext.monitor import report
from tests.faults import base

SECRET = 'relay-secret-%d' % time.time_ns()


def traits_of(received):
    return {n: v for n, _, v in received.body['reason_data']['event'][
        'traits']}


class TestIsolationSpotCheck(base.FaultTest):

    def test_catch_all_alarms_see_their_project_only(self):
        failing = self.add_vms('compute-1', 6, projects=['project-a'])
        other = self.add_vms('compute-2', 3, projects=['project-b'])
        catch_all = {}
        for project in self.PROJECTS:
            catch_all[project] = self.stack.aodh(
                'POST', '/v2/alarms', project, {
                    'name': 'everything-%s' % project, 'type': 'event',
                    'severity': 'low', 'repeat_actions': True,
                    'alarm_actions': [self.consumers[project].url('/all')],
                    'event_rule': {'event_type': '*', 'query': []}}
            )['alarm_id']
        agent = self.start_agent()
        tally = base.Tally('isolation', 'catch-all alarms of 3 projects; '
                           'a host of project-a fails, project-b has its '
                           'own fault')
        tally.expected = {a for _, a in failing.values()}
        tally.expected |= {a for _, a in other.values()}
        started = time.monotonic()
        self.reporter.report('compute-1')
        for vm in other:
            self.reset_state(vm, 'error')
        tally.sent = 1 + len(other)
        self.wait_alarms(tally.expected, 20)
        # Everything that follows from it (Nova's own updates, its
        # service.update) has reached the agent and been evaluated.
        base.poll(lambda: all(self.nova.server(vm)['status'] == 'ERROR'
                              for vm in failing), 20, 'the resets')
        self.assertTrue(self.nova.flush_notifications(20))
        self.wait_drained()
        tally.recover = time.monotonic() - started
        tally.recover_what = 'report -> all notified, queues drained'
        everything = {p: [r for r in self.consumers[p].received
                          if r.path == '/all'] for p in self.PROJECTS}
        tally.extra = {'catch_all_notifications': {
            p: len(v) for p, v in everything.items()}}
        self.record(tally.count([r for r in self.received()
                                 if r.path != '/all']))
        self.assertEqual(0, tally.lost)
        self.assertEqual(0, tally.duplicated)
        self.assertEqual(0, tally.unexpected)
        for project, got in everything.items():
            for r in got:
                self.assertEqual(catch_all[project], r.body['alarm_id'])
                t = traits_of(r)
                self.assertEqual(project, t.get('tenant_id') or
                                 t.get('project_id'), r.body)
        # project-a heard of each of its instances, project-b of its own
        # faults, project-c of no instance (only of its own alarm's
        # creation, an event of its project); the host-level events (the
        # report, service.update) reached no one.

        def instances(project):
            return {traits_of(r).get('instance_id')
                    for r in everything[project]} - {None}
        self.assertEqual(set(failing), instances('project-a'))
        self.assertEqual(set(other), instances('project-b'))
        self.assertEqual(set(), instances('project-c'))
        self.assertFalse([r for p in self.PROJECTS for r in everything[p]
                          if r.body['reason_data']['event'][
                              'event_type'].startswith(('compute.host',
                                                        'service.'))])
        self.assertTrue(agent.alive())


class _Relayed:
    def __init__(self):
        self.payloads = []
        self.cond = threading.Condition()

    def sample(self, ctxt, publisher_id, event_type, payload, metadata):
        with self.cond:
            self.payloads.append(payload)
            self.cond.notify_all()


class TestRelaySigned(base.FaultTest):
    """The ``relay`` of ``doctor://`` signs what it puts on the bus."""

    agent_options = {'publisher': {'telemetry_secret': SECRET}}

    def test_relayed_events_are_signed(self):
        pipeline = os.path.join(self.stack.workdir, 'event_pipeline.yaml')
        with open(self.stack.event_pipeline) as f:
            text = f.read()
        with open(pipeline, 'w') as f:
            f.write(text.replace('- doctor://', '- doctor://?relay=alarm.all'))
        self.stack.event_pipeline = pipeline
        conf = cfg.ConfigOpts()
        conf([], project='doctor-faults')
        transport = report.get_transport(conf, url=self.broker.url,
                                         exchange='ceilometer')
        self.addCleanup(transport.cleanup)
        relayed = _Relayed()
        listener = oslo_messaging.get_notification_listener(
            transport, [oslo_messaging.Target(topic='alarm.all',
                                              exchange='ceilometer')],
            [relayed], executor='threading')
        listener.start()
        self.addCleanup(listener.wait)
        self.addCleanup(listener.stop)
        vms = self.add_vms('compute-1', 3, projects=['project-a'])
        self.start_agent()
        for vm in vms:
            self.reset_state(vm, 'error')
        self.wait_alarms({a for _, a in vms.values()}, 20)

        def relayed_all():
            events = [e for p in relayed.payloads for e in p]
            return {t[2] for e in events for t in e['traits']
                    if t[0] == 'instance_id'} >= set(vms)
        base.poll(relayed_all, 20, 'the relayed events')
        events = [e for p in relayed.payloads for e in p]
        for event in events:
            self.assertTrue(pub_utils.verify_signature(event, SECRET))
            self.assertFalse(pub_utils.verify_signature(event, SECRET + 'x'))
            # One trait changed (the project, when it has one).
            changed = next((i for i, (n, _, _) in enumerate(event['traits'])
                            if n == 'tenant_id'), 0)
            forged = dict(event, traits=[
                [n, t, ('%s-forged' % v) if i == changed else v]
                for i, (n, t, v) in enumerate(event['traits'])])
            self.assertFalse(pub_utils.verify_signature(forged, SECRET))
