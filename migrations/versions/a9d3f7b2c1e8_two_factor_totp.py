"""two-factor: totp_credentials and recovery_codes; password_attempts.kind

The login's second step (service.second_factor) needs each user's authenticator secret (stored
encrypted, with the last accepted time step so a code is never taken twice) and their single-use
recovery codes (stored as keyed digests). Wrong codes are counted like wrong passwords
(service.guessing), in the same table, told apart by `kind` so each has its own limit.

Revision ID: a9d3f7b2c1e8
Revises: e5b7c9d1a2f4
Create Date: 2026-12-01 17:30:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'a9d3f7b2c1e8'
down_revision = 'e5b7c9d1a2f4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'totp_credentials',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('secret_encrypted', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('enabled_at', sa.DateTime(), nullable=True),
        sa.Column('last_step', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_totp_credentials_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_totp_credentials')),
        sa.UniqueConstraint('user_id', name=op.f('uq_totp_credentials_user_id')),
    )
    op.create_table(
        'recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_recovery_codes_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes')),
        sa.UniqueConstraint('user_id', 'digest', name=op.f('uq_recovery_codes_user_id')),
    )
    with op.batch_alter_table('password_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='password'))


def downgrade():
    with op.batch_alter_table('password_attempts', schema=None) as batch_op:
        batch_op.drop_column('kind')
    op.drop_table('recovery_codes')
    op.drop_table('totp_credentials')
