"""password_attempts: exact password-guessing limits per address, account and known device

Revision ID: f1a2b3c4d5e6
Revises: d4a8e1f2b3c5
Create Date: 2026-12-01 14:45:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'f1a2b3c4d5e6'
down_revision = 'd4a8e1f2b3c5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'password_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('ip_address', sa.String(length=45), nullable=True),
        sa.Column('account', sa.String(length=64), nullable=False),
        sa.Column('device', sa.String(length=32), nullable=True),
        sa.Column('failed', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_password_attempts')),
    )
    with op.batch_alter_table('password_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_attempts_created_at'), ['created_at'],
                              unique=False)
        batch_op.create_index('ix_password_attempts_address_created',
                              ['ip_address', 'created_at'], unique=False)
        batch_op.create_index('ix_password_attempts_account_created',
                              ['account', 'created_at'], unique=False)
        batch_op.create_index('ix_password_attempts_device_created',
                              ['device', 'created_at'], unique=False)


def downgrade():
    op.drop_table('password_attempts')
