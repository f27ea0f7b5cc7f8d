"""Options of doctor-ext, listed for oslo-config-generator."""

import itertools


def list_opts():
    """Options read inside ceilometer-agent-notification."""
    from doctor_ext.db import leases
    from doctor_ext.evaluator import engine
    from doctor_ext.evaluator import recorder
    from doctor_ext.evaluator import store
    from doctor_ext.evaluator import sync
    from doctor_ext.inspector import core
    from doctor_ext.inspector import maintenance
    from doctor_ext.inspector import nova_connection
    from doctor_ext.inspector import power_fencing
    from doctor_ext.inspector import recovery
    from doctor_ext.inspector import report_check
    from doctor_ext.notifier import http
    from doctor_ext.pipeline import dead_letter
    from doctor_ext.publisher import direct
    return [
        (core.GROUP, core.OPTS),
        (report_check.GROUP, report_check.OPTS),
        (maintenance.GROUP, maintenance.OPTS),
        (nova_connection.GROUP, list(itertools.chain(
            nova_connection.OPTS, nova_connection.list_auth_opts()))),
        (power_fencing.GROUP, list(itertools.chain(
            power_fencing.list_opts(), recovery.OPTS))),
        (direct.GROUP, direct.OPTS),
        (engine.GROUP, list(itertools.chain(engine.OPTS, store.OPTS,
                                            sync.OPTS, recorder.OPTS))),
        (http.GROUP, http.list_opts()),
        (leases.GROUP, leases.OPTS),
        (dead_letter.GROUP, dead_letter.OPTS),
    ]


def list_monitor_opts():
    """Options of the doctor-monitor process."""
    from doctor_ext.monitor import ping
    from doctor_ext.monitor import report
    return [(report.GROUP, report.OPTS), (ping.GROUP, ping.OPTS)]
