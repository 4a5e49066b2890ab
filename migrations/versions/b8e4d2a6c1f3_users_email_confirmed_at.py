"""users.email_confirmed_at: sign-up confirms the address by mail; existing accounts count as
confirmed (they were made before KeyVault asked, by their owners or by operators)

Revision ID: b8e4d2a6c1f3
Revises: c4d2e8a6f1b9
Create Date: 2026-12-06 21:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'b8e4d2a6c1f3'
down_revision = 'c4d2e8a6f1b9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_confirmed_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE users SET email_confirmed_at = created_at")


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email_confirmed_at')
