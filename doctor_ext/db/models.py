"""The tables of doctor-ext (SQLAlchemy Core), in Aodh's database.

The schema is created and changed only by the migrations in
:mod:`doctor_ext.db.migration` (``doctor-ext-dbsync``); these definitions
are what the code reads and writes, and a unit test checks that the two
agree.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

# Ids are Nova / Keystone / Aodh uuids or message ids; hosts are names.
_ID = 64
_HOST = 255


# Microseconds on MySQL too: rows are ordered by these times.
DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def _ts(name, **kw):
    return sa.Column(name, DATETIME, **kw)


instances = sa.Table(
    'doctor_instance', metadata,
    sa.Column('instance_id', sa.String(_ID), primary_key=True),
    sa.Column('project_id', sa.String(_ID)),
    sa.Column('user_id', sa.String(_ID)),
    sa.Column('host', sa.String(_HOST), index=True),
    sa.Column('state', sa.String(255)),
    # False for a deleted instance, kept so that an older update that
    # arrives late does not bring it back.
    sa.Column('present', sa.Boolean, nullable=False, default=True),
    # When Nova said so (the event's generated time, or the time of the
    # listing): an older statement never overwrites a newer one.
    _ts('as_of', nullable=False),
)

meta = sa.Table(
    'doctor_meta', metadata,
    sa.Column('name', sa.String(64), primary_key=True),
    sa.Column('value', sa.Text),
    _ts('updated_at'),
)

hosts = sa.Table(
    'doctor_host', metadata,
    sa.Column('host', sa.String(_HOST), primary_key=True),
    # The host's current fault, while it is down.
    sa.Column('fault_id', sa.String(36)),
    _ts('down_since'),
)

faults = sa.Table(
    'doctor_fault', metadata,
    sa.Column('fault_id', sa.String(36), primary_key=True),
    sa.Column('host', sa.String(_HOST), nullable=False, index=True),
    # The report's message id: a redelivered report is the same fault.
    sa.Column('message_id', sa.String(_HOST), nullable=False, unique=True),
    sa.Column('event_type', sa.String(_HOST)),
    sa.Column('monitor_event_id', sa.String(_HOST)),
    sa.Column('cause', sa.Text),
    sa.Column('severity', sa.String(255)),
    # resolving (instances not known yet) -> notifying -> notified
    sa.Column('state', sa.String(16), nullable=False),
    # none (the policy does not fence) | pending | done | failed
    sa.Column('fence', sa.String(16), nullable=False),
    # pending | done | failed, once fencing started
    sa.Column('forced_down', sa.String(16)),
    sa.Column('attempts', sa.Integer, nullable=False, default=0),
    sa.Column('error', sa.Text),
    sa.Column('lease_owner', sa.String(_HOST)),
    _ts('lease_until', index=True),
    sa.Column('detected', sa.Float),
    _ts('created_at', nullable=False),
    _ts('updated_at', nullable=False),
)

fault_instances = sa.Table(
    'doctor_fault_instance', metadata,
    sa.Column('fault_id', sa.String(36), primary_key=True),
    sa.Column('instance_id', sa.String(_ID), primary_key=True, index=True),
    sa.Column('project_id', sa.String(_ID)),
    sa.Column('user_id', sa.String(_ID)),
    sa.Column('old_state', sa.String(255)),
    # pending | done | failed: the reset to error in Nova
    sa.Column('reset', sa.String(16), nullable=False),
    # Nova's own update to error, once seen, is not notified again.
    sa.Column('nova_seen', sa.Boolean, nullable=False, default=False),
)

outbox = sa.Table(
    'doctor_outbox', metadata,
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('alarm_id', sa.String(128), nullable=False, index=True),
    sa.Column('project_id', sa.String(_ID)),
    sa.Column('action', sa.Text, nullable=False),
    sa.Column('payload', sa.Text, nullable=False),
    # pending | delivered | given_up
    sa.Column('state', sa.String(16), nullable=False),
    sa.Column('attempts', sa.Integer, nullable=False, default=0),
    sa.Column('error', sa.String(255)),
    sa.Column('lease_owner', sa.String(_HOST)),
    _ts('lease_until'),
    _ts('created_at', nullable=False),
    _ts('updated_at', nullable=False),
    sa.Index('ix_doctor_outbox_state_lease', 'state', 'lease_until'),
)

# The host reports (signed fault and maintenance reports) seen by any agent
# within their time window: a replay that reaches another agent is refused
# there too (doctor_ext.inspector.replays).
reports = sa.Table(
    'doctor_report', metadata,
    # sha256 (hex) of the report's identity: its event type and
    # monitor_event_id, or session, host and state.
    sa.Column('report_key', sa.String(64), primary_key=True),
    # The message that carried it first: the same message redelivered is
    # not a replay.
    sa.Column('message_id', sa.String(_HOST), nullable=False),
    # Past this, the time window refuses the report anyway; the sweep
    # purges the row.
    _ts('expires_at', nullable=False, index=True),
)

fences = sa.Table(
    'doctor_fence', metadata,
    # One row per fault the policy fences (doctor_fault.fault_id).
    sa.Column('fault_id', sa.String(36), primary_key=True),
    sa.Column('host', sa.String(_HOST), nullable=False, index=True),
    # The host's group in the BMC file (the storm guard's X %).
    sa.Column('grp', sa.String(_HOST)),
    # power | logical
    sa.Column('method', sa.String(16), nullable=False),
    # admitted | held | confirmed | powered_off | logical | failed |
    # recovered
    sa.Column('state', sa.String(16), nullable=False),
    sa.Column('attempts', sa.Integer, nullable=False, default=0),
    sa.Column('error', sa.Text),
    # Who confirmed a held power-off (the operator's words).
    sa.Column('confirmed_by', sa.String(_HOST)),
    # When the host may be given back (recovery policy power_on).
    _ts('recover_at', index=True),
    _ts('created_at', nullable=False),
    _ts('updated_at', nullable=False),
)
