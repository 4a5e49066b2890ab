"""users.session_epoch: ending a user's browser sessions (deactivation) for good

Revision ID: b3f1c2d4e5a6
Revises: 6d61edbc09c8
Create Date: 2026-11-26 17:45:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'b3f1c2d4e5a6'
down_revision = '6d61edbc09c8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
