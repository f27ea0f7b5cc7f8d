"""The consumer double and its knobs, driven by a plain http.client."""

import http.client
import json
import socket
import threading
import time

from oslotest import base

from doctor_ext_lab import consumer as lab_consumer


class ConsumerTestCase(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.fixture = self.useFixture(lab_consumer.ConsumerFixture())
        self.consumer = self.fixture.consumer

    def connect(self):
        conn = http.client.HTTPConnection('127.0.0.1', self.consumer.port,
                                          timeout=10)
        self.addCleanup(conn.close)
        return conn

    def post(self, path='/failure', body=None, conn=None, headers=None):
        """POST on ``conn`` (a new connection if None): (status, body)."""
        conn = conn or self.connect()
        raw = body if isinstance(body, bytes) else json.dumps(
            body if body is not None else {'alarm_id': 'a'}).encode()
        conn.request('POST', path, raw, dict(
            {'Content-Type': 'application/json'}, **(headers or {})))
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    def post_in_thread(self, path='/failure'):
        """POST from another thread; returns an Event set on the answer."""
        answered = threading.Event()
        result = []

        def run():
            try:
                result.append(self.post(path))
            except Exception as exc:
                result.append(exc)
            answered.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        return answered, result


class TestRecording(ConsumerTestCase):

    def test_records_post(self):
        conn = self.connect()
        before_time, before_mono = time.time(), time.monotonic()
        status, answer = self.post('/failure?x=1', {'alarm_id': 'a1'}, conn,
                                   {'X-Openstack-Request-Id': 'req-1'})
        after_time, after_mono = time.time(), time.monotonic()
        self.assertEqual((200, {'status': 200}), (status, answer))
        [received] = self.consumer.received
        self.assertEqual(('POST', '/failure', 'x=1', {'alarm_id': 'a1'}),
                         (received.method, received.path, received.query,
                          received.body))
        self.assertEqual(b'{"alarm_id": "a1"}', received.raw)
        self.assertEqual('application/json',
                         received.headers['content-type'])
        self.assertEqual('req-1', received.headers['x-openstack-request-id'])
        self.assertEqual(conn.sock.getsockname()[1], received.client_port)
        self.assertEqual(200, received.status)
        self.assertTrue(before_time <= received.time <= after_time)
        self.assertTrue(before_mono <= received.monotonic <= after_mono)

    def test_keep_alive(self):
        conn = self.connect()
        for _ in range(3):
            self.assertEqual(200, self.post(conn=conn)[0])
        ports = {r.client_port for r in self.consumer.received}
        self.assertEqual({conn.sock.getsockname()[1]}, ports)
        self.post()  # another connection
        self.assertEqual(2, len({r.client_port
                                 for r in self.consumer.received}))

    def test_non_json_body(self):
        self.post(body=b'not json')
        [received] = self.consumer.received
        self.assertIsNone(received.body)
        self.assertEqual(b'not json', received.raw)

    def test_received_is_a_snapshot(self):
        self.post()
        snapshot = self.consumer.received
        self.post()
        self.assertEqual(1, len(snapshot))
        self.assertEqual(2, len(self.consumer.received))

    def test_clear_and_count(self):
        self.post('/a')
        self.post('/a')
        self.post('/b')
        self.assertEqual((3, 2, 1, 0), (self.consumer.count(),
                                        self.consumer.count('/a'),
                                        self.consumer.count('/b'),
                                        self.consumer.count('/c')))
        self.consumer.clear()
        self.assertEqual((0, 0), (self.consumer.count(),
                                  self.consumer.count('/a')))

    def test_url(self):
        port = self.consumer.port
        self.assertNotEqual(0, port)
        self.assertEqual('http://127.0.0.1:%d/failure' % port,
                         self.consumer.url())
        self.assertEqual('http://127.0.0.1:%d/x' % port,
                         self.consumer.url('x'))
        self.assertEqual(self.consumer.url('/y'), self.fixture.url('/y'))

    def test_get_is_a_health_check(self):
        self.post()
        conn = self.connect()
        conn.request('GET', '/')
        response = conn.getresponse()
        self.assertEqual((200, {'received': 1}),
                         (response.status, json.loads(response.read())))
        self.assertEqual(1, self.consumer.count())

    def test_many_posts_from_several_connections(self):
        errors = []

        def run():
            try:
                conn = http.client.HTTPConnection(
                    '127.0.0.1', self.consumer.port, timeout=10)
                for i in range(300):
                    conn.request('POST', '/load', b'{"i": %d}' % i,
                                 {'Content-Type': 'application/json'})
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        errors.append(response.status)
                conn.close()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        self.assertTrue(self.consumer.wait_for(1200, timeout=30))
        for thread in threads:
            thread.join(10)
        self.assertEqual([], errors)
        received = self.consumer.received
        self.assertEqual(1200, len(received))
        self.assertEqual(4, len({r.client_port for r in received}))
        self.assertEqual(set(range(300)), {r.body['i'] for r in received})


class TestWaitFor(ConsumerTestCase):

    def test_times_out(self):
        self.assertFalse(self.consumer.wait_for(1, timeout=0.05))

    def test_already_there(self):
        self.post()
        self.assertTrue(self.consumer.wait_for(1, timeout=0))

    def test_woken_by_arrival(self):
        answered, _result = self.post_in_thread()
        self.assertTrue(self.consumer.wait_for(1, timeout=10))
        self.assertTrue(answered.wait(10))

    def test_per_path(self):
        self.post('/other')
        self.assertFalse(self.consumer.wait_for(1, timeout=0.05,
                                                path='/failure'))
        self.post('/failure')
        self.assertTrue(self.consumer.wait_for(1, timeout=0,
                                               path='/failure'))


class TestKnobs(ConsumerTestCase):

    def test_slow_answers_late_records_at_once(self):
        self.consumer.slow(5)
        answered, _ = self.post_in_thread()
        # Recorded on arrival, not answered yet.
        self.assertTrue(self.consumer.wait_for(1, timeout=10))
        self.assertFalse(answered.is_set())
        self.consumer.slow(0)
        self.assertEqual(200, self.post('/b')[0])

    def test_respond_global(self):
        self.consumer.respond(500)
        self.assertEqual(500, self.post('/a')[0])
        self.assertEqual(500, self.post('/b')[0])
        self.consumer.reset()
        self.assertEqual(200, self.post('/a')[0])
        self.assertEqual([500, 500, 200],
                         [r.status for r in self.consumer.received])

    def test_respond_per_path(self):
        self.consumer.respond(404, path='/a')
        self.consumer.respond(503)
        self.assertEqual(404, self.post('/a')[0])
        self.assertEqual(503, self.post('/b')[0])

    def test_respond_times(self):
        self.consumer.respond(500, times=2)
        self.assertEqual([500, 500, 200, 200],
                         [self.post()[0] for _ in range(4)])

    def test_respond_times_per_path_falls_back_to_global(self):
        self.consumer.respond(502)
        self.consumer.respond(404, path='/a', times=1)
        self.assertEqual([404, 502], [self.post('/a')[0] for _ in range(2)])

    def test_error_answer_keeps_connection(self):
        self.consumer.respond(500, times=1)
        conn = self.connect()
        self.assertEqual(500, self.post(conn=conn)[0])
        self.assertEqual(200, self.post(conn=conn)[0])
        self.assertEqual(1, len({r.client_port
                                 for r in self.consumer.received}))

    def test_hang_and_release(self):
        self.consumer.hang()
        answered, result = self.post_in_thread()
        self.assertTrue(self.consumer.wait_for(1))
        # Recorded on arrival, but not answered while held.
        self.assertFalse(answered.wait(0.2))
        self.consumer.release()
        self.assertTrue(answered.wait(10))
        self.assertEqual([(200, {'status': 200})], result)
        # Released: new requests are answered at once.
        self.assertEqual(200, self.post()[0])

    def test_hang_per_path(self):
        self.consumer.hang('/slow')
        held, _result = self.post_in_thread('/slow')
        self.assertTrue(self.consumer.wait_for(1, path='/slow'))
        self.assertEqual(200, self.post('/fast')[0])
        self.assertFalse(held.is_set())
        self.consumer.release('/other')
        self.assertFalse(held.wait(0.1))
        self.consumer.release('/slow')
        self.assertTrue(held.wait(10))

    def test_hang_answers_the_status_chosen_on_arrival(self):
        self.consumer.respond(503, times=1)
        self.consumer.hang()
        answered, result = self.post_in_thread()
        self.assertTrue(self.consumer.wait_for(1))
        self.consumer.release()
        self.assertTrue(answered.wait(10))
        self.assertEqual(503, result[0][0])

    def test_stop_releases_hanging_requests(self):
        self.consumer.hang()
        answered, result = self.post_in_thread()
        self.assertTrue(self.consumer.wait_for(1))
        self.consumer.stop()
        self.assertTrue(answered.wait(10))

    def test_refuse_and_start_again(self):
        port = self.consumer.port
        conn = self.connect()
        self.assertEqual(200, self.post(conn=conn)[0])
        self.consumer.refuse()
        # New connections are refused ...
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          ('127.0.0.1', port), 5)
        # ... and the open one was closed.
        self.assertRaises((ConnectionError, http.client.HTTPException),
                          self.post, conn=conn)
        self.consumer.start()
        self.assertEqual(port, self.consumer.port)
        self.assertEqual(200, self.post()[0])
        self.assertEqual(2, self.consumer.count())


class TestFixture(base.BaseTestCase):

    def test_started_then_stopped(self):
        fixture = lab_consumer.ConsumerFixture()
        fixture.setUp()
        port = fixture.consumer.port
        socket.create_connection(('127.0.0.1', port), 5).close()
        fixture.cleanUp()
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          ('127.0.0.1', port), 5)

    def test_start_twice_is_an_error(self):
        consumer = self.useFixture(lab_consumer.ConsumerFixture()).consumer
        self.assertRaises(RuntimeError, consumer.start)
