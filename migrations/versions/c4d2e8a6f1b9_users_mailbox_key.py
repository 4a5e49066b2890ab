"""users.mailbox_key: one account per mailbox, look-alike addresses compared by their skeleton

Every existing account gets the key of its address (keyvault.mailbox.mailbox_key: the SHA-256
of its Unicode TR39 confusable skeleton), so sign-up can refuse an address that looks like a
taken one. The index is not unique: accounts made before this revision may already share a
mailbox (`аlice@` beside `alice@`). They are kept as they are, never merged, and each group is
reported in this migration's output; `keyvault users doubles` lists them again at any time.

Revision ID: c4d2e8a6f1b9
Revises: a1c4e7f9d2b6
Create Date: 2026-12-06 20:40:00

"""
import logging

import sqlalchemy as sa
from alembic import op

from keyvault.mailbox import mailbox_key

revision = 'c4d2e8a6f1b9'
down_revision = 'a1c4e7f9d2b6'
branch_labels = None
depends_on = None

log = logging.getLogger('alembic.runtime.migration')
users = sa.table('users', sa.column('id', sa.Integer), sa.column('email', sa.String),
                 sa.column('mailbox_key', sa.String))


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mailbox_key', sa.String(length=64), server_default='',
                                      nullable=False))
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)).all()
    keys = {row.id: mailbox_key(row.email) for row in rows}
    if keys:
        connection.execute(
            users.update().where(users.c.id == sa.bindparam('row_id'))
            .values(mailbox_key=sa.bindparam('key')),
            [{'row_id': row_id, 'key': key} for row_id, key in keys.items()])
    op.create_index(op.f('ix_users_mailbox_key'), 'users', ['mailbox_key'], unique=False)
    groups = {}
    for row in rows:
        groups.setdefault(keys[row.id], []).append(row)
    doubles = [group for group in groups.values() if len(group) > 1]
    for group in doubles:
        log.warning('accounts that share one mailbox (kept, not merged): %s', ', '.join(
            f'id {row.id} {ascii(row.email)}' for row in group))
    if doubles:
        log.warning('%d group(s) of accounts share a mailbox; `keyvault users doubles` lists '
                    'them. New sign-ups of those mailboxes are refused.', len(doubles))


def downgrade():
    op.drop_index(op.f('ix_users_mailbox_key'), table_name='users')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('mailbox_key')
