"""Lanes: the thread cap, fairness, queue bounds, idle consumers."""

import socket
import threading
import time

from oslotest import base

from doctor_ext.notifier import http as notifier_http
from doctor_ext.notifier import lanes
from doctor_ext.notifier import models
from doctor_ext_lab import consumer as lab_consumer
from tests import fixtures as doctor_fixtures

poll = doctor_fixtures.poll


def delivery_threads():
    return sum(t.name == 'doctor-notify' for t in threading.enumerate())


class Work:
    """Deliveries that block until released; records their order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = []
        self.done = []
        self.dropped = []
        self.gates = {}
        self.hold_all = threading.Event()
        self.hold_all.set()

    def gate(self, payload):
        with self.lock:
            return self.gates.setdefault(payload, threading.Event())

    def deliver(self, payload, pool):
        with self.lock:
            self.started.append(payload)
        if not self.hold_all.is_set():
            self.gate(payload).wait(30)
        with self.lock:
            self.done.append(payload)
        return None

    def drop(self, payload, reason):
        with self.lock:
            self.dropped.append((payload, reason))

    def release(self, *payloads):
        for p in payloads:
            self.gate(p).set()


class LanesTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.options = self.useFixture(doctor_fixtures.NotifierConf())
        self.work = Work()

    def lanes(self, **options):
        self.options.set(**options)
        result = lanes.Lanes(self.options.conf, self.work.deliver,
                             self.work.drop)
        self.addCleanup(self._stop, result)
        return result

    def _stop(self, lanes_):
        lanes_.stop()
        for gate in list(self.work.gates.values()):
            gate.set()
        self.work.hold_all.set()
        lanes_.join(time.monotonic() + 10)

    def hold(self):
        self.work.hold_all.clear()

    def started(self, count):
        poll(lambda: len(self.work.started) >= count, 10,
             '%d deliveries to start' % count)


class TestThreads(LanesTestCase):

    def test_thread_cap_shared_by_all_consumers(self):
        self.hold()
        lane = self.lanes(max_delivery_threads=4, max_threads_per_project=4)
        for i in range(100):
            self.assertTrue(lane.put('p', ('http', 'h%d' % i, 80), i))
        self.started(4)
        stats = lane.stats()
        self.assertEqual(4, stats['threads'])
        self.assertEqual(96, stats['queued'])
        self.assertEqual(4, len(self.work.started))
        self.work.hold_all.set()
        self.work.release(*range(100))
        poll(lambda: len(self.work.done) == 100, 10, 'all deliveries')
        self.assertEqual(set(range(100)), set(self.work.done))

    def test_project_cap_leaves_threads_to_the_others(self):
        self.hold()
        lane = self.lanes(max_delivery_threads=4, max_threads_per_project=2)
        for i in range(50):
            lane.put('greedy', ('http', 'h%d' % i, 80), 'greedy-%d' % i)
        self.started(2)
        lane.put('other', ('http', 'vnfm', 80), 'other-1')
        lane.put('other', ('http', 'vnfm', 80), 'other-2')
        self.started(4)
        # The greedy project holds two threads, its 48 others wait; the
        # other project got its two without waiting for them.
        self.assertEqual({'greedy-0', 'greedy-1', 'other-1', 'other-2'},
                         set(self.work.started))
        self.assertEqual(4, lane.stats()['threads'])

    def test_consumer_cap(self):
        self.hold()
        lane = self.lanes(max_delivery_threads=8,
                          max_connections_per_consumer=2)
        for i in range(6):
            lane.put('p', ('http', 'vnfm', 80), i)
        lane.put('p', ('http', 'other', 80), 'x')
        self.started(3)
        self.assertEqual({0, 1, 'x'}, set(self.work.started))
        self.work.release(0)
        self.started(4)
        self.assertEqual(2, self.work.started[3])

    def test_projects_and_consumers_take_turns(self):
        lane = self.lanes(max_delivery_threads=1)
        self.hold()
        lane.put('a', ('http', 'c1', 80), 'block')
        self.started(1)
        for i in range(3):
            lane.put('a', ('http', 'c1', 80), 'a-c1-%d' % i)
            lane.put('a', ('http', 'c2', 80), 'a-c2-%d' % i)
        lane.put('b', ('http', 'c3', 80), 'b-c3-0')
        self.work.hold_all.set()
        self.work.release('block')
        poll(lambda: len(self.work.done) == 8, 10, 'all deliveries')
        self.assertEqual(['block', 'a-c1-0', 'b-c3-0', 'a-c2-0', 'a-c1-1',
                          'a-c2-1', 'a-c1-2', 'a-c2-2'], self.work.done)


class TestQueueBounds(LanesTestCase):

    def test_oldest_dropped_at_the_consumer_bound(self):
        self.hold()
        lane = self.lanes(max_delivery_threads=1, max_queued_per_consumer=3)
        lane.put('p', ('http', 'vnfm', 80), 'in-flight')
        self.started(1)
        for i in range(5):
            lane.put('p', ('http', 'vnfm', 80), i)
        self.assertEqual([0, 1], [p for p, _ in self.work.dropped])
        for _, reason in self.work.dropped:
            self.assertIn('dropped: queue full', reason)
            self.assertIn('max_queued_per_consumer = 3', reason)
        self.work.hold_all.set()
        self.work.release('in-flight')
        poll(lambda: len(self.work.done) == 4, 10, 'the kept ones')
        self.assertEqual(['in-flight', 2, 3, 4], self.work.done)

    def test_oldest_of_the_project_dropped_at_the_project_bound(self):
        self.hold()
        lane = self.lanes(max_delivery_threads=1, max_queued_per_project=2)
        lane.put('p', ('http', 'c0', 80), 'in-flight')
        self.started(1)
        lane.put('p', ('http', 'c1', 80), 'old')
        lane.put('p', ('http', 'c2', 80), 'mid')
        lane.put('q', ('http', 'c1', 80), 'other-project')
        lane.put('p', ('http', 'c3', 80), 'new')
        self.assertEqual([('old', 'dropped: queue full ([doctor_notifier] '
                                  'max_queued_per_project = 2 reached)')],
                         self.work.dropped)
        self.work.hold_all.set()
        self.work.release('in-flight')
        poll(lambda: len(self.work.done) == 4, 10, 'the kept ones')
        self.assertEqual({'in-flight', 'mid', 'new', 'other-project'},
                         set(self.work.done))

    def test_put_after_stop_refused_and_queued_returned(self):
        self.hold()
        lane = self.lanes(max_delivery_threads=1)
        lane.put('p', ('http', 'vnfm', 80), 'in-flight')
        self.started(1)
        lane.put('p', ('http', 'vnfm', 80), 'queued')
        self.assertEqual(['queued'], lane.stop())
        self.assertFalse(lane.put('p', ('http', 'vnfm', 80), 'late'))


class TestIdleConsumers(LanesTestCase):

    def test_consumer_forgotten_while_its_emptied_queue_waits(self):
        self.hold()
        self.work.release('other')
        lane = self.lanes(max_delivery_threads=2, max_threads_per_project=1,
                          max_queued_per_project=1, consumer_idle_timeout=0)
        lane.put('p', ('http', 'c0', 80), 'a')
        self.started(1)
        lane.put('p', ('http', 'c1', 80), 'b')
        lane.put('p', ('http', 'c2', 80), 'c')   # drops b: c1's queue empty
        # Another project's work starts a second thread, which then
        # forgets the idle consumers, c1 among them.
        lane.put('q', ('http', 'c3', 80), 'other')
        poll(lambda: lane.stats()['consumers'] == 2, 10,
             'c1 and c3 to be forgotten')
        lane.put('p', ('http', 'c1', 80), 'd')   # drops c
        self.work.hold_all.set()
        self.work.release('a', 'd')
        poll(lambda: len(self.work.done) == 3, 10, 'all deliveries')
        self.assertEqual(['other', 'a', 'd'], self.work.done)
        self.assertEqual(['b', 'c'], [p for p, _ in self.work.dropped])
        poll(lambda: lane.stats()['consumers'] == 0, 10,
             'every consumer to be forgotten')
        self.assertEqual(0, lane.stats()['queued'])


class NotifierLanesTest(base.BaseTestCase):
    """The lanes under HttpNotifier, with real connections."""

    def setUp(self):
        super().setUp()
        self.options = self.useFixture(doctor_fixtures.NotifierConf())
        self.options.set(egress_allow=['127.0.0.0/8'])

    def notifier(self, **options):
        self.options.set(**options)
        notifier = notifier_http.HttpNotifier(self.options.conf)
        self.addCleanup(notifier.stop)
        return notifier

    def note(self, url, alarm_id, project):
        return notifier_http.Notification(url, alarm_id, 'n', 'critical',
                                          'ok', 'alarm', 'r', {}, project)

    def test_dropped_delivery_and_counter(self):
        consumer = self.useFixture(lab_consumer.ConsumerFixture()).consumer
        consumer.hang()
        notifier = self.notifier(max_connections_per_consumer=1,
                                 max_queued_per_consumer=1)
        first = notifier.submit(self.note(consumer.url(), 'a0', 'p'))
        self.assertTrue(consumer.wait_for(1))
        old = notifier.submit(self.note(consumer.url(), 'a1', 'p'))
        new = notifier.submit(self.note(consumer.url(), 'a2', 'p'))
        delivery = old.result(10)
        self.assertEqual((False, models.DROPPED, 0),
                         (delivery.ok, delivery.outcome, delivery.attempts))
        self.assertIn('dropped: queue full', delivery.error)
        self.assertIn(consumer.url(), delivery.error)
        self.assertEqual(1, notifier.stats()[models.DROPPED])
        consumer.release()
        self.assertTrue(first.result(10).ok)
        self.assertTrue(new.result(10).ok)
        self.assertEqual(['a0', 'a2'],
                         [r.body['alarm_id'] for r in consumer.received])

    def test_idle_consumers_closed_and_forgotten(self):
        consumers = [self.useFixture(lab_consumer.ConsumerFixture()).consumer
                     for _ in range(3)]
        notifier = self.notifier(consumer_idle_timeout=0.05)
        for i, consumer in enumerate(consumers):
            self.assertTrue(notifier.submit(self.note(
                consumer.url(), 'a%d' % i, 'p')).result(10).ok)
        poll(lambda: notifier.stats()['consumers'] == 0, 10,
             'the idle consumers to be forgotten')
        self.assertEqual(0, notifier.stats()['idle_connections'])
        # Closed on our side: each consumer sees its connection end.
        for consumer in consumers:
            poll(lambda: not consumer._connections, 10,
                 'the connection to close')

    def test_kept_connections_bounded(self):
        consumers = [self.useFixture(lab_consumer.ConsumerFixture()).consumer
                     for _ in range(5)]
        notifier = self.notifier(max_delivery_threads=1)
        for i, consumer in enumerate(consumers):
            self.assertTrue(notifier.submit(self.note(
                consumer.url(), 'a%d' % i, 'p')).result(10).ok)
        self.assertEqual(2, notifier.stats()['idle_connections'])

    def test_ten_thousand_endpoints_of_one_project(self):
        # Every endpoint of the greedy project accepts no connection in
        # time (a listener that never accepts, reached through 10,000
        # loopback addresses); the other project's consumer is healthy.
        tarpit = socket.socket()
        tarpit.bind(('0.0.0.0', 0))
        tarpit.listen(0)
        self.addCleanup(tarpit.close)
        port = tarpit.getsockname()[1]
        healthy = self.useFixture(lab_consumer.ConsumerFixture()).consumer
        notifier = self.notifier(max_delivery_threads=8,
                                 max_threads_per_project=4,
                                 connect_timeout=30, read_timeout=30,
                                 max_retries=0)
        greedy = [notifier.submit(self.note(
            'http://127.1.%d.%d:%d/x' % (i // 250, i % 250 + 1, port),
            'g%d' % i, 'greedy')) for i in range(10000)]
        self.assertLessEqual(delivery_threads(), 8)
        poll(lambda: notifier.stats()['threads'] >= 4, 10,
             'the greedy project to hold its threads')
        good = [notifier.submit(self.note(healthy.url(), 'h%d' % i, 'good'))
                for i in range(20)]
        for future in good:
            self.assertTrue(future.result(30).ok)
        # Delivered while every greedy notification still waits.
        self.assertFalse(any(f.done() for f in greedy))
        self.assertLessEqual(delivery_threads(), 8)
        self.assertEqual(10001, notifier.stats()['consumers'])
        notifier.stop(timeout=10)
        outcomes = [f.result(10) for f in greedy]
        self.assertFalse(any(d.ok for d in outcomes))
        self.assertTrue(all('stopped' in d.error for d in outcomes))
