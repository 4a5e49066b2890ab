"""passkeys and webauthn_challenges: WebAuthn credentials for logging in without a password,
and the server-side, single-use challenges of the ceremonies that register and use them

Revision ID: a9c4e7f1b2d3
Revises: a9d3f7b2c1e8
Create Date: 2026-12-01 17:40:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'a9c4e7f1b2d3'
down_revision = 'a9d3f7b2c1e8'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'passkeys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.String(length=1400), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('sign_count', sa.Integer(), nullable=False),
        sa.Column('transports', sa.JSON(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.Column('backup_eligible', sa.Boolean(), nullable=False),
        sa.Column('backed_up', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_passkeys_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_passkeys')),
        sa.UniqueConstraint('credential_id', name=op.f('uq_passkeys_credential_id')),
    )
    op.create_index('ix_passkeys_user_created', 'passkeys', ['user_id', 'created_at'])
    op.create_table(
        'webauthn_challenges',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('purpose', sa.String(length=20), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_webauthn_challenges_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webauthn_challenges')),
        sa.UniqueConstraint('digest', name=op.f('uq_webauthn_challenges_digest')),
    )
    op.create_index(op.f('ix_webauthn_challenges_created_at'), 'webauthn_challenges',
                    ['created_at'])


def downgrade():
    op.drop_index(op.f('ix_webauthn_challenges_created_at'), table_name='webauthn_challenges')
    op.drop_table('webauthn_challenges')
    op.drop_index('ix_passkeys_user_created', table_name='passkeys')
    op.drop_table('passkeys')
