"""organizations, members, invitations, service accounts; keys owned by a person or a service account

api_keys.user_id becomes nullable and api_keys.service_account_id is added, with a CHECK that
exactly one of the two is set: every existing key keeps its user_id (and so passes the check)
and verifies exactly as before. security_events.organization_id puts an event in an
organisation's log.

Revision ID: b8e4f2a9c6d1
Revises: b8e4d2a6c1f3
Create Date: 2026-12-10 10:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'b8e4f2a9c6d1'
down_revision = 'b8e4d2a6c1f3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'organizations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('is_active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('max_key_lifetime_days', sa.Integer(), nullable=True),
        sa.Column('allowed_scopes', sa.JSON(), nullable=True),
        sa.Column('revoke_unused_after_days', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_organizations')),
        sa.UniqueConstraint('public_id', name=op.f('uq_organizations_public_id')),
    )
    op.create_table(
        'organization_members',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                                name=op.f('fk_organization_members_organization_id_organizations'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_organization_members_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_organization_members')),
        sa.UniqueConstraint('organization_id', 'user_id',
                            name=op.f('uq_organization_members_organization_id')),
    )
    op.create_index('ix_organization_members_user', 'organization_members', ['user_id'])
    op.create_table(
        'organization_invitations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('invited_by_id', sa.Integer(), nullable=True),
        sa.Column('accepted_at', sa.DateTime(), nullable=True),
        sa.Column('accepted_by_id', sa.Integer(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['organization_id'], ['organizations.id'],
            name=op.f('fk_organization_invitations_organization_id_organizations'),
            ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['invited_by_id'], ['users.id'],
                                name=op.f('fk_organization_invitations_invited_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['accepted_by_id'], ['users.id'],
                                name=op.f('fk_organization_invitations_accepted_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_organization_invitations')),
        sa.UniqueConstraint('public_id', name=op.f('uq_organization_invitations_public_id')),
    )
    op.create_index('ix_organization_invitations_org_created', 'organization_invitations',
                    ['organization_id', 'created_at', 'id'])
    op.create_table(
        'service_accounts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                                name=op.f('fk_service_accounts_organization_id_organizations'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'],
                                name=op.f('fk_service_accounts_created_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_service_accounts')),
        sa.UniqueConstraint('public_id', name=op.f('uq_service_accounts_public_id')),
    )
    op.create_index('ix_service_accounts_org_created', 'service_accounts',
                    ['organization_id', 'created_at', 'id'])
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('service_account_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_api_keys_service_account_id_service_accounts'),
                                    'service_accounts', ['service_account_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_index('ix_api_keys_service_account_created',
                              ['service_account_id', 'created_at', 'id'])
        batch_op.create_check_constraint(
            'one_owner', '(user_id IS NULL) <> (service_account_id IS NULL)')
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('organization_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_security_events_organization_id_organizations'),
                                    'organizations', ['organization_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_security_events_organization_created',
                              ['organization_id', 'created_at', 'id'])


def downgrade():
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index('ix_security_events_organization_created')
        batch_op.drop_constraint(op.f('fk_security_events_organization_id_organizations'),
                                 type_='foreignkey')
        batch_op.drop_column('organization_id')
    # Service accounts' keys cannot be kept without an owner.
    op.execute('DELETE FROM api_keys WHERE service_account_id IS NOT NULL')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_one_owner'), type_='check')
        batch_op.drop_index('ix_api_keys_service_account_created')
        batch_op.drop_constraint(op.f('fk_api_keys_service_account_id_service_accounts'),
                                 type_='foreignkey')
        batch_op.drop_column('service_account_id')
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=False)
    op.drop_index('ix_service_accounts_org_created', table_name='service_accounts')
    op.drop_table('service_accounts')
    op.drop_index('ix_organization_invitations_org_created',
                  table_name='organization_invitations')
    op.drop_table('organization_invitations')
    op.drop_index('ix_organization_members_user', table_name='organization_members')
    op.drop_table('organization_members')
    op.drop_table('organizations')
