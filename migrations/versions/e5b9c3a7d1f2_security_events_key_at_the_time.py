"""security_events: the key's label and mask at the time, and the key that acted (API calls)

Revision ID: e5b9c3a7d1f2
Revises: a7c3e5f9b1d2
Create Date: 2026-12-01 14:20:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'e5b9c3a7d1f2'
down_revision = 'a7c3e5f9b1d2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_label', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('key_mask', sa.String(length=48), nullable=True))
        batch_op.add_column(sa.Column('actor_key_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('actor_label', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('actor_mask', sa.String(length=48), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_security_events_actor_key_id_api_keys'),
                                    'api_keys', ['actor_key_id'], ['id'], ondelete='SET NULL')
        batch_op.create_index('ix_security_events_key_created', ['key_id', 'created_at', 'id'],
                              unique=False)
    # Events written before this revision: the key's label and mask now are the best record
    # there is of what they were then.
    op.execute(
        "UPDATE security_events SET "
        "key_label = (SELECT label FROM api_keys WHERE api_keys.id = security_events.key_id), "
        "key_mask = (SELECT mask FROM api_keys WHERE api_keys.id = security_events.key_id) "
        "WHERE key_id IS NOT NULL"
    )


def downgrade():
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index('ix_security_events_key_created')
        batch_op.drop_constraint(batch_op.f('fk_security_events_actor_key_id_api_keys'),
                                 type_='foreignkey')
        batch_op.drop_column('actor_mask')
        batch_op.drop_column('actor_label')
        batch_op.drop_column('actor_key_id')
        batch_op.drop_column('key_mask')
        batch_op.drop_column('key_label')
