"""suppression ids (RemoveSuppression names an entry by id)

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-12 10:00:00
"""
import uuid

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id', sa.String(length=36), nullable=True))
    _backfill_ids()
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.alter_column('id', existing_type=sa.String(length=36), nullable=False)
        batch_op.create_index('uq_suppressions_id', ['id'], unique=True)


def _backfill_ids() -> None:
    """A fresh UUID for every existing entry, in batches of rows still without one."""
    bind = op.get_bind()
    sup = sa.table('suppressions', sa.column('workspace_id', sa.String),
                   sa.column('channel', sa.Integer), sa.column('address', sa.String),
                   sa.column('id', sa.String))
    while True:
        rows = bind.execute(sa.select(sup.c.workspace_id, sup.c.channel, sup.c.address)
                            .where(sup.c.id.is_(None)).limit(BATCH)).all()
        if not rows:
            return
        bind.execute(sa.update(sup).where(
            sup.c.workspace_id == sa.bindparam('b_ws'), sup.c.channel == sa.bindparam('b_ch'),
            sup.c.address == sa.bindparam('b_addr')).values(id=sa.bindparam('b_id')),
            [{'b_ws': r.workspace_id, 'b_ch': r.channel, 'b_addr': r.address,
              'b_id': str(uuid.uuid4())} for r in rows])


def downgrade() -> None:
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_index('uq_suppressions_id')
        batch_op.drop_column('id')
