"""Micro-benchmark of the notifier's hot path, in one process.

``python tools/notifier_microbench.py``: N notifications (1,000) to C lab
consumers (10) over P projects (10) through ``HttpNotifier``; wall time
from the first submit() to the last Delivery and the process's CPU time
over the same span (the consumer doubles' included), median of R rounds
after one warm-up round.

``--client``: CPU per POST of one thread on one keep-alive connection to
one lab consumer, urllib3's pool against ``notifier.client.Connection``
(median of 5 rounds of 1,000 POSTs).
"""

import argparse
import json
import statistics
import time

from oslo_config import cfg

from doctor_ext.notifier import client
from doctor_ext.notifier import http
from doctor_ext_lab import consumer as consumer_mod

BODY = json.dumps({'alarm_name': 'n', 'alarm_id': 'a', 'severity': 'critical',
                   'previous': 'ok', 'current': 'alarm', 'reason': 'r',
                   'reason_data': {'x': 1}}).encode()


def notifier_run(a):
    consumers = [consumer_mod.Consumer().start() for _ in range(a.consumers)]
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[], default_config_dirs=[])
    http.register_opts(conf)
    conf.set_override('egress_allow', ['127.0.0.0/8'], group=http.GROUP)
    notifier = http.HttpNotifier(conf)
    walls, cpus = [], []
    for r in range(a.rounds + 1):
        notes = [http.Notification(
            consumers[i % a.consumers].url('/failure'), 'alarm-%d' % i,
            'n', 'critical', 'ok', 'alarm', 'r', {'x': i},
            project_id='p%d' % (i % a.projects))
            for i in range(a.notifications)]
        cpu, wall = time.process_time(), time.perf_counter()
        futures = [notifier.submit(n) for n in notes]
        if not all(f.result(60).ok for f in futures):
            raise SystemExit('a notification failed')
        if r:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    notifier.stop()
    for c in consumers:
        c.stop()
    print('%d notifications, %d consumers, %d projects, %d rounds: wall '
          'median %.1f ms, CPU median %.1f ms' % (
              a.notifications, a.consumers, a.projects, a.rounds,
              statistics.median(walls) * 1000,
              statistics.median(cpus) * 1000))


def client_run():
    import urllib3
    consumer = consumer_mod.Consumer().start()
    headers = {'content-type': 'application/json'}
    pool = urllib3.HTTPConnectionPool('127.0.0.1', consumer.port, maxsize=1,
                                      retries=False,
                                      timeout=urllib3.Timeout(1, 5))
    conn = client.Connection('127.0.0.1', consumer.port, None, 1.0, 5.0)
    request = ('POST /failure HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n'
               'content-type: application/json\r\ncontent-length: %d\r\n'
               '\r\n' % (consumer.port, len(BODY))).encode() + BODY

    def with_urllib3():
        pool.urlopen('POST', '/failure', body=BODY, headers=headers,
                     redirect=False)

    def with_connection():
        if conn.sock is None:
            conn.connect()
        conn.exchange(request)

    for name, post in (('urllib3', with_urllib3),
                       ('client.Connection', with_connection)):
        for _ in range(100):
            post()
        cpus = []
        for _ in range(5):
            cpu = time.thread_time()
            for _ in range(1000):
                post()
            cpus.append(time.thread_time() - cpu)
        print('%s: %.1f us of CPU per POST (median)'
              % (name, statistics.median(cpus) * 1000))
    consumer.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--client', action='store_true')
    p.add_argument('--notifications', type=int, default=1000)
    p.add_argument('--consumers', type=int, default=10)
    p.add_argument('--projects', type=int, default=10)
    p.add_argument('--rounds', type=int, default=15)
    a = p.parse_args()
    if a.client:
        client_run()
    else:
        notifier_run(a)


if __name__ == '__main__':
    main()
