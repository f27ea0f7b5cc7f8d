"""Helpers of ``doctor-ext-bench`` shared by its modules."""

import time

PIPELINES = ['stock', 'doctor_ext']


def say(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 2)


def process_tree(pid):
    import psutil
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids):
    """CPU seconds of the process trees of ``pids`` (one pid or a list)."""
    if isinstance(pids, int):
        pids = [pids]
    total = 0.0
    for p in [p for pid in pids for p in process_tree(pid)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:
            pass
    return total


def index_bytes_per_alarm(db_url):
    """Python memory the evaluator keeps per alarm once loaded and indexed.

    The agent's own loading path (store, compile, index), run here under
    tracemalloc against the pipeline's database: what the index holds,
    apart from the interpreter, Ceilometer and the allocator's slack that
    the agent's RSS also counts.
    """
    import gc
    import tracemalloc

    from oslo_config import cfg

    from doctor_ext.evaluator import index as index_mod
    from doctor_ext.evaluator import store as store_mod
    from doctor_ext.evaluator import sync as sync_mod
    conf = cfg.ConfigOpts()
    conf([], project='doctor-bench')
    store = store_mod.AodhStore(conf)
    conf.set_override('aodh_connection', db_url, group='doctor_evaluator')
    try:
        # Imports, pool, caches: one page, not a million rows ten at a
        # time.
        rows = store.event_alarms(page=10)
        next(rows, None)
        rows.close()
        gc.collect()
        tracemalloc.start()
        try:
            index = index_mod.AlarmIndex()
            index.replace_all(sync_mod.compile_all(store.event_alarms()))
            gc.collect()
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return round(kept / max(1, len(index)), 1), len(index)
    finally:
        store.dispose()


def rss_bytes(pid):
    """RSS of the worker (largest process of the tree)."""
    best = 0
    for p in process_tree(pid):
        try:
            best = max(best, p.memory_info().rss)
        except Exception:
            pass
    return best
