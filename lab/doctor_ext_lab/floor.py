"""The floor of the benchmark: one broker hop plus one HTTP POST.

The least any design can do on this machine to tell an owner about a
fault: an oslo.messaging notification listener with nothing else in it
(no Ceilometer, no Aodh, no database), in a process of its own, that POSTs
to the same consumer doubles as the pipelines, over kept-alive
connections. The benchmark runs it on the same broker (a vhost of its
own) in the same run, so that its figures are the yardstick of the
others.

* ``compute.instance.update`` (Nova's legacy update, the benchmark's
  fault): one POST to ``/floor-<client>/<host>`` at the consumer of the VM's
  project, with a body of the size and shape an Aodh alarm notification
  has.
* ``floor.host.down`` (payload ``{'host': name}``): one POST for each VM
  of the host, from the VM list the process was given at start (a real
  design keeps it in memory too), on ``--threads`` threads: the floor of
  a host failure's fan-out.

``--client ours`` POSTs with :class:`doctor_ext.notifier.client.Connection`
(the notifier's client), ``--client urllib3`` with urllib3's connection
pools: the benchmark runs the fan-out with both, which answers the
question "is a maintained client as fast" in the notifier's own shape of
work (1,000 POSTs from one process to ten consumers).

Run by the benchmark as ``python -m doctor_ext_lab.floor``; not a product
command.
"""

import argparse
import concurrent.futures
import json
import sys
import threading
import time
import uuid
import zlib

from oslo_config import cfg
import oslo_messaging

from doctor_ext.notifier import client

HOST_DOWN = 'floor.host.down'


def alarm_body(vm, project, host):
    """An Aodh-like alarm notification body for ``vm`` (about 1 KiB)."""
    traits = [['instance_id', 1, vm], ['state', 1, 'error'],
              ['old_state', 1, 'active'], ['host', 1, host],
              ['project_id', 1, project], ['tenant_id', 1, project],
              ['user_id', 1, 'u'], ['service', 1, 'nova-compute:bench']]
    event = {'message_id': str(uuid.uuid4()),
             'event_type': 'compute.instance.update',
             'generated': time.strftime('%Y-%m-%dT%H:%M:%S.000000'),
             'traits': traits, 'raw': {}, 'message_signature': 'x' * 64}
    return json.dumps({
        'alarm_name': 'doctor-%s' % vm, 'alarm_id': str(uuid.uuid4()),
        'severity': 'critical', 'previous': 'insufficient data',
        'current': 'alarm',
        'reason': 'Event <id=%s,event_type=compute.instance.update> hits '
                  'the query <query=[{"field": "traits.state", "op": "eq", '
                  '"type": "string", "value": "error"}, {"field": '
                  '"traits.instance_id", "op": "eq", "type": "string", '
                  '"value": "%s"}]>.' % (event['message_id'], vm),
        'reason_data': {'type': 'event', 'event': event}}).encode()


class OurPoster:
    """POSTs with the notifier's client.

    One connection per thread and consumer.
    """

    def __init__(self, consumers):
        self.consumers = consumers
        self.local = threading.local()

    def post(self, index, path, body):
        conns = getattr(self.local, 'conns', None)
        if conns is None:
            conns = self.local.conns = {}
        conn = conns.get(index)
        host, port = self.consumers[index]
        if conn is None:
            conn = conns[index] = client.Connection(host, port, None, 1.0,
                                                    5.0)
        head = ('POST %s HTTP/1.1\r\nHost: %s:%d\r\n'
                'content-type: application/json\r\n'
                'content-length: %d\r\n\r\n' % (path, host, port,
                                                len(body)))
        if conn.sock is None:
            conn.connect()
        try:
            return conn.exchange(head.encode('latin-1') + body)[0]
        except client.STALE_ERRORS:
            conn.close()
            conn.connect()
            return conn.exchange(head.encode('latin-1') + body)[0]


class Urllib3Poster:
    """POSTs with urllib3, one keep-alive pool per consumer."""

    HEADERS = {'content-type': 'application/json'}

    def __init__(self, consumers, threads):
        import urllib3
        self.pools = [urllib3.HTTPConnectionPool(
            host, port, maxsize=threads, block=True, retries=False,
            timeout=urllib3.Timeout(connect=1.0, read=5.0))
            for host, port in consumers]

    def post(self, index, path, body):
        return self.pools[index].urlopen(
            'POST', path, body=body, headers=self.HEADERS,
            redirect=False).status


class Endpoint:
    """The bare listener's endpoint: a POST per fault, at once."""

    def __init__(self, poster, consumers, hosts, threads, prefix):
        self.poster = poster
        self.prefix = prefix
        self.count = len(consumers)
        self.hosts = hosts
        self.pool = concurrent.futures.ThreadPoolExecutor(threads)

    def consumer(self, project):
        # Stable over processes (hash() is salted per process).
        return zlib.crc32(project.encode()) % self.count

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        if event_type == 'compute.instance.update':
            host, project = payload['host'], payload['tenant_id']
            self.poster.post(self.consumer(project), self.prefix + host,
                             alarm_body(payload['instance_id'], project,
                                        host))
        elif event_type == HOST_DOWN:
            host = payload['host']
            path = self.prefix + host
            futures = [self.pool.submit(
                self.poster.post, self.consumer(project), path,
                alarm_body(vm, project, host))
                for vm, project in self.hosts.get(host, ())]
            for f in futures:
                f.result()
        return oslo_messaging.NotificationResult.HANDLED


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m doctor_ext_lab.floor',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--transport-url', required=True)
    p.add_argument('--consumer', action='append', required=True,
                   metavar='HOST:PORT')
    p.add_argument('--hosts', metavar='FILE',
                   help='JSON {host: [[vm, project], ...]} for host faults')
    p.add_argument('--client', choices=['ours', 'urllib3'], default='ours')
    p.add_argument('--threads', type=int, default=16,
                   help='POST threads of a host fault (the notifier has '
                        'up to 16 connections per consumer)')
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    consumers = [(c.rsplit(':', 1)[0], int(c.rsplit(':', 1)[1]))
                 for c in a.consumer]
    hosts = {}
    if a.hosts:
        with open(a.hosts) as f:
            hosts = json.load(f)
    poster = (OurPoster(consumers) if a.client == 'ours'
              else Urllib3Poster(consumers, a.threads))
    conf = cfg.ConfigOpts()
    conf([], project='doctor-floor', default_config_files=[],
         default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(
        conf, url=a.transport_url)
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic='notifications',
                                          exchange='nova')],
        [Endpoint(poster, consumers, hosts, a.threads,
                  '/floor-%s/' % a.client)],
        executor='threading')
    listener.start()
    print('floor listener ready', flush=True)
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        listener.wait()
    return 0


if __name__ == '__main__':
    sys.exit(main())
