"""webhooks and their deliveries (an outbox, like mail_outbox)

webhooks: endpoints owned by a person or an organisation (a CHECK that exactly one is set), the
events they asked for and their signing secret, encrypted. webhook_deliveries: one event for
one endpoint, with the outbox's columns (attempts, lease, sent or given up) and the latest
attempt's status, time and answer.

Revision ID: c3f7a1d9e5b2
Revises: b8e4f2a9c6d1
Create Date: 2026-12-06 23:59:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'c3f7a1d9e5b2'
down_revision = 'b8e4f2a9c6d1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'webhooks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('organization_id', sa.Integer(), nullable=True),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('secret_encrypted', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('disabled_at', sa.DateTime(), nullable=True),
        sa.Column('disabled_reason', sa.String(length=200), nullable=True),
        sa.CheckConstraint('(user_id IS NULL) <> (organization_id IS NULL)',
                           name=op.f('ck_webhooks_one_owner')),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                                name=op.f('fk_webhooks_organization_id_organizations'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_webhooks_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks')),
        sa.UniqueConstraint('public_id', name=op.f('uq_webhooks_public_id')),
    )
    op.create_index('ix_webhooks_user', 'webhooks', ['user_id'])
    op.create_index('ix_webhooks_organization', 'webhooks', ['organization_id'])
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('message_id', sa.String(length=40), nullable=False),
        sa.Column('webhook_id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=40), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=True),
        sa.Column('response_body', sa.String(length=1024), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('claimed_by', sa.String(length=32), nullable=True),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.Column('gave_up_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(['webhook_id'], ['webhooks.id'],
                                name=op.f('fk_webhook_deliveries_webhook_id_webhooks'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
        sa.UniqueConstraint('public_id', name=op.f('uq_webhook_deliveries_public_id')),
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries',
                    ['sent_at', 'gave_up_at', 'next_attempt_at'])
    op.create_index('ix_webhook_deliveries_webhook', 'webhook_deliveries', ['webhook_id', 'id'])


def downgrade():
    op.drop_table('webhook_deliveries')
    op.drop_table('webhooks')
