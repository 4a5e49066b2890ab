"""key_changes: the revocation stream's events; indexes for the expiry sweep

Revision ID: c3d5e7f9a1b2
Revises: c3f7a1d9e5b2
Create Date: 2027-01-05 10:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'c3d5e7f9a1b2'
down_revision = 'c3f7a1d9e5b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'key_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('once', sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_key_changes')),
        sa.UniqueConstraint('once', name=op.f('uq_key_changes_once')),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f('ix_key_changes_at'), 'key_changes', ['at'])
    op.create_index('ix_api_keys_expires_at', 'api_keys', ['expires_at'])
    op.create_index('ix_api_keys_previous_expires_at', 'api_keys', ['previous_expires_at'])


def downgrade():
    op.drop_index('ix_api_keys_previous_expires_at', table_name='api_keys')
    op.drop_index('ix_api_keys_expires_at', table_name='api_keys')
    op.drop_index(op.f('ix_key_changes_at'), table_name='key_changes')
    op.drop_table('key_changes')
