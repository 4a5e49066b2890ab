"""services, their scopes and verify keys; keys restricted to services or organisations

services and service_scopes are new. api_keys gains service_id (a service's own verify key: a
third kind of owner, so the one_owner CHECK now counts three columns) and restricted_to (null:
the key works everywhere). Every existing key has a user or a service account, no service and no
restriction: it passes the new CHECK and verifies exactly as before.

Revision ID: c2f8a4d6e1b7
Revises: c3d5e7f9a1b4
Create Date: 2027-01-12 10:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'c2f8a4d6e1b7'
down_revision = 'c3d5e7f9a1b4'
branch_labels = None
depends_on = None

THREE_OWNERS = " + ".join(f"(CASE WHEN {c} IS NULL THEN 0 ELSE 1 END)" for c in (
    "user_id", "service_account_id", "service_id")) + " = 1"


def upgrade():
    op.create_table(
        'services',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('audience', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('scopes', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                                name=op.f('fk_services_organization_id_organizations'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_services')),
        sa.UniqueConstraint('public_id', name=op.f('uq_services_public_id')),
        sa.UniqueConstraint('name', name=op.f('uq_services_name')),
        sa.UniqueConstraint('audience', name=op.f('uq_services_audience')),
    )
    op.create_index(op.f('ix_services_organization_id'), 'services', ['organization_id'])
    op.create_table(
        'service_scopes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['service_id'], ['services.id'],
                                name=op.f('fk_service_scopes_service_id_services'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_service_scopes')),
        sa.UniqueConstraint('name', name=op.f('uq_service_scopes_name')),
    )
    op.create_index(op.f('ix_service_scopes_service_id'), 'service_scopes', ['service_id'])
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('service_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('restricted_to', sa.JSON(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_api_keys_service_id_services'), 'services',
                                    ['service_id'], ['id'], ondelete='CASCADE')
        batch_op.drop_constraint(op.f('ck_api_keys_one_owner'), type_='check')
        batch_op.create_check_constraint('one_owner', THREE_OWNERS)


def downgrade():
    # A service's verify keys cannot be kept without their service.
    op.execute('DELETE FROM api_keys WHERE service_id IS NOT NULL')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_one_owner'), type_='check')
        batch_op.create_check_constraint(
            'one_owner', '(user_id IS NULL) <> (service_account_id IS NULL)')
        batch_op.drop_constraint(op.f('fk_api_keys_service_id_services'), type_='foreignkey')
        batch_op.drop_column('restricted_to')
        batch_op.drop_column('service_id')
    op.drop_index(op.f('ix_service_scopes_service_id'), table_name='service_scopes')
    op.drop_table('service_scopes')
    op.drop_index(op.f('ix_services_organization_id'), table_name='services')
    op.drop_table('services')
