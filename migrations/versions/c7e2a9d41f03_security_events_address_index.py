"""security_events (ip_address, event, created_at): counting an address's failed logins

Revision ID: c7e2a9d41f03
Revises: b3f1c2d4e5a6
Create Date: 2026-11-27 01:05:00

"""
from alembic import op


revision = 'c7e2a9d41f03'
down_revision = 'b3f1c2d4e5a6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.create_index('ix_security_events_address_event_created',
                              ['ip_address', 'event', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index('ix_security_events_address_event_created')
