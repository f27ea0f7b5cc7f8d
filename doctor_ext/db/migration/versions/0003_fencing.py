"""Power fencing: one row per fenced fault, with the storm guard's count.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    op.create_table(
        'doctor_fence',
        sa.Column('fault_id', sa.String(36), primary_key=True),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('grp', sa.String(255)),
        sa.Column('method', sa.String(16), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('attempts', sa.Integer, nullable=False),
        sa.Column('error', sa.Text),
        sa.Column('confirmed_by', sa.String(255)),
        sa.Column('recover_at', DATETIME),
        sa.Column('created_at', DATETIME, nullable=False),
        sa.Column('updated_at', DATETIME, nullable=False))
    op.create_index('ix_doctor_fence_host', 'doctor_fence', ['host'])
    op.create_index('ix_doctor_fence_recover_at', 'doctor_fence',
                    ['recover_at'])
