"""Host reports seen by any agent, so that a replay is refused by all.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    op.create_table(
        'doctor_report',
        sa.Column('report_key', sa.String(64), primary_key=True),
        sa.Column('message_id', sa.String(255), nullable=False),
        sa.Column('expires_at', DATETIME, nullable=False))
    op.create_index('ix_doctor_report_expires_at', 'doctor_report',
                    ['expires_at'])
