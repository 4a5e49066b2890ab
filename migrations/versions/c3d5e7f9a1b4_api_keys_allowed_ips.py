"""api_keys.allowed_ips: a key may be restricted to address ranges

A JSON list of canonical CIDRs (keyvault.addresses); NULL means the key works from any address,
so every existing key keeps working exactly as before.

Revision ID: c3d5e7f9a1b4
Revises: c3d5e7f9a1b2
Create Date: 2026-12-10 10:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'c3d5e7f9a1b4'
down_revision = 'c3d5e7f9a1b2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allowed_ips', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('allowed_ips')
