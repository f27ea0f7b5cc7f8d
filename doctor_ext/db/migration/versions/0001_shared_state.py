"""The shared state of active/active agents.

The instance map, host faults with their fencing journal, and the outbox
of owed notifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    op.create_table(
        'doctor_instance',
        sa.Column('instance_id', sa.String(64), primary_key=True),
        sa.Column('project_id', sa.String(64)),
        sa.Column('user_id', sa.String(64)),
        sa.Column('host', sa.String(255)),
        sa.Column('state', sa.String(32)),
        sa.Column('present', sa.Boolean, nullable=False),
        sa.Column('as_of', DATETIME, nullable=False))
    op.create_index('ix_doctor_instance_host', 'doctor_instance', ['host'])
    op.create_table(
        'doctor_meta',
        sa.Column('name', sa.String(64), primary_key=True),
        sa.Column('value', sa.Text),
        sa.Column('updated_at', DATETIME))
    op.create_table(
        'doctor_host',
        sa.Column('host', sa.String(255), primary_key=True),
        sa.Column('fault_id', sa.String(36)),
        sa.Column('down_since', DATETIME))
    op.create_table(
        'doctor_fault',
        sa.Column('fault_id', sa.String(36), primary_key=True),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('message_id', sa.String(255), nullable=False,
                  unique=True),
        sa.Column('event_type', sa.String(255)),
        sa.Column('monitor_event_id', sa.String(255)),
        sa.Column('cause', sa.Text),
        sa.Column('severity', sa.String(32)),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('fence', sa.String(16), nullable=False),
        sa.Column('forced_down', sa.String(16)),
        sa.Column('attempts', sa.Integer, nullable=False),
        sa.Column('error', sa.Text),
        sa.Column('lease_owner', sa.String(255)),
        sa.Column('lease_until', DATETIME),
        sa.Column('detected', sa.Float),
        sa.Column('created_at', DATETIME, nullable=False),
        sa.Column('updated_at', DATETIME, nullable=False))
    op.create_index('ix_doctor_fault_host', 'doctor_fault', ['host'])
    op.create_index('ix_doctor_fault_lease_until', 'doctor_fault',
                    ['lease_until'])
    op.create_table(
        'doctor_fault_instance',
        sa.Column('fault_id', sa.String(36), primary_key=True),
        sa.Column('instance_id', sa.String(64), primary_key=True),
        sa.Column('project_id', sa.String(64)),
        sa.Column('user_id', sa.String(64)),
        sa.Column('old_state', sa.String(32)),
        sa.Column('reset', sa.String(16), nullable=False),
        sa.Column('nova_seen', sa.Boolean, nullable=False))
    op.create_index('ix_doctor_fault_instance_instance_id',
                    'doctor_fault_instance', ['instance_id'])
    op.create_table(
        'doctor_outbox',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('alarm_id', sa.String(128), nullable=False),
        sa.Column('project_id', sa.String(64)),
        sa.Column('action', sa.Text, nullable=False),
        sa.Column('payload', sa.Text, nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('attempts', sa.Integer, nullable=False),
        sa.Column('error', sa.String(255)),
        sa.Column('lease_owner', sa.String(255)),
        sa.Column('lease_until', DATETIME),
        sa.Column('created_at', DATETIME, nullable=False),
        sa.Column('updated_at', DATETIME, nullable=False))
    op.create_index('ix_doctor_outbox_alarm_id', 'doctor_outbox',
                    ['alarm_id'])
    op.create_index('ix_doctor_outbox_state_lease', 'doctor_outbox',
                    ['state', 'lease_until'])
