"""PostgreSQL alone after an idle spell: the database's part of a cold fault.

``python tools/pg_idle_probe.py --idle 90 --cycles 4``: one connection
(autocommit) idles ``--idle`` seconds, then a ``SELECT 1`` and a committed
one-row ``UPDATE`` are timed, then the median of 20 more of each (warm),
``--cycles`` times. ``--keepalive S`` pings the connection every S seconds
while it idles, to tell whether a pool keep-alive would take the idle
penalty away. The table is a scratch one of its own (``--table``), dropped
at the end.
"""

import argparse
import statistics
import time

import psycopg
from psycopg import sql


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--dsn', default='host=127.0.0.1 user=postgres '
                                    'dbname=postgres')
    p.add_argument('--idle', type=float, default=90.0)
    p.add_argument('--cycles', type=int, default=4)
    p.add_argument('--keepalive', type=float, default=0.0,
                   help='seconds between pings while idle (0: none)')
    p.add_argument('--table', default='pg_idle_probe')
    a = p.parse_args()
    conn = psycopg.connect(a.dsn, autocommit=True)
    table = sql.Identifier(a.table)
    conn.execute(sql.SQL(
        'CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, v int)').format(
            table))
    conn.execute(sql.SQL(
        'INSERT INTO {} VALUES (1, 0) ON CONFLICT DO NOTHING').format(table))
    update = sql.SQL('UPDATE {} SET v = v + 1 WHERE id = 1').format(
        table)

    def timed(statement):
        start = time.perf_counter()
        conn.execute(statement)
        return (time.perf_counter() - start) * 1000.0

    try:
        for cycle in range(a.cycles):
            end = time.monotonic() + a.idle
            while a.keepalive and time.monotonic() + a.keepalive < end:
                time.sleep(a.keepalive)
                timed('SELECT 1')
            time.sleep(max(0.0, end - time.monotonic()))
            ping, write = timed('SELECT 1'), timed(update)
            warm_ping = statistics.median(timed('SELECT 1')
                                          for _ in range(20))
            warm_write = statistics.median(timed(update) for _ in range(20))
            print('cycle %d (idle %g s, keepalive %g s): SELECT 1 %.2f ms '
                  '(warm %.2f), UPDATE committed %.2f ms (warm %.2f)'
                  % (cycle, a.idle, a.keepalive, ping, warm_ping, write,
                     warm_write), flush=True)
    finally:
        conn.execute(sql.SQL('DROP TABLE {}').format(table))
        conn.close()


if __name__ == '__main__':
    main()
