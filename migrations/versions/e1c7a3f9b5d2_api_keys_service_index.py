"""api_keys (service_id, created_at, id): a service's verify keys found without a full scan

The organisation events of the revocation stream (key_changes) look up the live keys of an
organisation's services, and deleting a service cascades to its keys: without an index on
`service_id` each read the whole table, inside the writer's transaction. The index has the
same shape as the person's and the service account's, so a service's key list reads it in
order too.

Revision ID: e1c7a3f9b5d2
Revises: d7e3b1f5a9c2
Create Date: 2026-12-08 02:30:00

"""
from alembic import op


revision = 'e1c7a3f9b5d2'
down_revision = 'd7e3b1f5a9c2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_api_keys_service_created', 'api_keys',
                    ['service_id', 'created_at', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_api_keys_service_created', table_name='api_keys')
