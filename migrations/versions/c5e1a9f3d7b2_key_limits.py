"""key_limits: a rate and a refilling usage quota on a key, or on a service account's pool

Revision ID: c5e1a9f3d7b2
Revises: c2f8a4d6e1b7
Create Date: 2027-01-10 10:00:00

Existing keys get no row: they stay without limits, exactly as they were.
"""
import sqlalchemy as sa
from alembic import op


revision = 'c5e1a9f3d7b2'
down_revision = 'c2f8a4d6e1b7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'key_limits',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('api_key_id', sa.Integer(), nullable=True),
        sa.Column('service_account_id', sa.Integer(), nullable=True),
        sa.Column('rate_limit', sa.Integer(), nullable=True),
        sa.Column('rate_window', sa.Integer(), nullable=True),
        sa.Column('remaining', sa.BigInteger(), nullable=True),
        sa.Column('quota', sa.BigInteger(), nullable=True),
        sa.Column('refill_amount', sa.BigInteger(), nullable=True),
        sa.Column('refill_interval', sa.String(length=8), nullable=True),
        sa.Column('refill_day', sa.Integer(), nullable=True),
        sa.Column('period', sa.String(length=10), nullable=False),
        sa.Column('warned_period', sa.String(length=10), nullable=True),
        sa.Column('used_up_period', sa.String(length=10), nullable=True),
        sa.CheckConstraint('(api_key_id IS NULL) <> (service_account_id IS NULL)',
                           name=op.f('ck_key_limits_one_holder')),
        sa.CheckConstraint('remaining IS NULL OR remaining >= 0',
                           name=op.f('ck_key_limits_remaining_not_negative')),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'],
                                name=op.f('fk_key_limits_api_key_id_api_keys'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['service_account_id'], ['service_accounts.id'],
                                name=op.f('fk_key_limits_service_account_id_service_accounts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_key_limits')),
        sa.UniqueConstraint('api_key_id', name=op.f('uq_key_limits_api_key_id')),
        sa.UniqueConstraint('service_account_id', name=op.f('uq_key_limits_service_account_id')),
    )


def downgrade():
    op.drop_table('key_limits')
