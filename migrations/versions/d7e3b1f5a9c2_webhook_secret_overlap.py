"""webhooks: the previous signing secret, kept for a grace period after a roll

While `previous_secret_expires_at` is ahead, each delivery is signed with the new secret and
the previous one (two signatures in `webhook-signature`, as Standard Webhooks allows), so a
receiver can switch secrets without dropping an event. Existing endpoints get NULLs: no
previous secret, exactly as before.

Revision ID: d7e3b1f5a9c2
Revises: c5e1a9f3d7b2
Create Date: 2026-12-07 22:30:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'd7e3b1f5a9c2'
down_revision = 'c5e1a9f3d7b2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_secret_encrypted', sa.String(length=255),
                                      nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sa.DateTime(),
                                      nullable=True))


def downgrade():
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_secret_encrypted')
