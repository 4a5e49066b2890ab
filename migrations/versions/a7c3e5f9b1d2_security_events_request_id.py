"""security_events.request_id: the request that caused an event, as the access log names it

Revision ID: a7c3e5f9b1d2
Revises: f1a2b3c4d5e6
Create Date: 2026-12-01 15:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'a7c3e5f9b1d2'
down_revision = 'f1a2b3c4d5e6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_column('request_id')
