"""mail_outbox, key_notices, users.notify_*: e-mail through an outbox, each key notice once

The outbox holds every mail queued in the transaction of the action that caused it (a mail
exists iff that action committed); senders claim rows with a lease (claimed_until) so none is
sent twice and none is lost when a sender dies. key_notices remembers which expiry warnings and
"still presented" notices went, so cron and every worker mail each once. users.notify_expiring
and users.notify_presented are the person's choice to turn off the non-security notices.

Revision ID: a1c4e7f9d2b6
Revises: a9c4e7f1b2d3
Create Date: 2026-12-01 17:40:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'a1c4e7f9d2b6'
down_revision = 'a9c4e7f1b2d3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'mail_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('to_address', sa.String(length=254), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('text_body', sa.Text(), nullable=False),
        sa.Column('html_body', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('claimed_by', sa.String(length=32), nullable=True),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.Column('gave_up_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox')),
    )
    op.create_index('ix_mail_outbox_due', 'mail_outbox',
                    ['sent_at', 'gave_up_at', 'next_attempt_at'], unique=False)
    op.create_table(
        'key_notices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('period', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'],
                                name=op.f('fk_key_notices_key_id_api_keys'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_key_notices')),
        sa.UniqueConstraint('key_id', 'kind', 'period', name=op.f('uq_key_notices_key_id')),
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify_expiring', sa.Boolean(), server_default=sa.true(),
                                      nullable=False))
        batch_op.add_column(sa.Column('notify_presented', sa.Boolean(), server_default=sa.true(),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('notify_presented')
        batch_op.drop_column('notify_expiring')
    op.drop_table('key_notices')
    op.drop_index('ix_mail_outbox_due', table_name='mail_outbox')
    op.drop_table('mail_outbox')
