"""key_usage_daily: per-key, per-day counts of presentations by verdict, for the key page's chart

Revision ID: e5b7c9d1a2f4
Revises: e5b9c3a7d1f2
Create Date: 2026-12-01 14:30:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'e5b7c9d1a2f4'
down_revision = 'e5b9c3a7d1f2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'key_usage_daily',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=True),
        sa.Column('last_address', sa.String(length=45), nullable=True),
        sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'],
                                name=op.f('fk_key_usage_daily_key_id_api_keys'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_key_usage_daily')),
        sa.UniqueConstraint('key_id', 'day', 'outcome',
                            name=op.f('uq_key_usage_daily_key_id')),
    )


def downgrade():
    op.drop_table('key_usage_daily')
