"""senders, contact language, custom field names, suppression kind, request fingerprints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 17:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=35), server_default='',
                                      nullable=False))
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='manual',
                                      nullable=False))
    with op.batch_alter_table('recipients_idempotency', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))
    op.create_table('senders',
    sa.Column('channel', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'address')
    )
    with op.batch_alter_table('senders', schema=None) as batch_op:
        batch_op.create_index('ix_senders_ws', ['workspace_id', 'channel', 'address'],
                              unique=False)
    op.create_table('contact_field_names',
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('workspace_id', 'name')
    )
    # Entries the bus consumer wrote carry their kind as the reason's prefix.
    for kind in ('opted_out', 'bounced', 'complained'):
        op.execute(sa.text("UPDATE suppressions SET kind = :k WHERE source = 'event' AND "
                           "reason LIKE :p").bindparams(k=kind, p=f'{kind}%'))
    _backfill_field_names()


def _backfill_field_names() -> None:
    """Names of the custom fields existing contacts carry, read in id-ordered batches."""
    bind = op.get_bind()
    contacts = sa.table('contacts', sa.column('id', sa.String), sa.column('workspace_id', sa.String),
                        sa.column('fields', sa.JSON))
    names = sa.table('contact_field_names', sa.column('workspace_id', sa.String),
                     sa.column('name', sa.String))
    dialect = postgresql if bind.dialect.name == 'postgresql' else sqlite
    after = ''
    while True:
        rows = bind.execute(sa.select(contacts.c.id, contacts.c.workspace_id, contacts.c.fields)
                            .where(contacts.c.id > after).order_by(contacts.c.id)
                            .limit(BATCH)).all()
        if not rows:
            return
        found = {(r.workspace_id, str(k)[:128]) for r in rows for k in (r.fields or {})}
        if found:
            bind.execute(dialect.insert(names).on_conflict_do_nothing(
                index_elements=['workspace_id', 'name']),
                [{'workspace_id': w, 'name': n} for w, n in sorted(found)])
        after = rows[-1].id


def downgrade() -> None:
    op.drop_table('contact_field_names')
    with op.batch_alter_table('senders', schema=None) as batch_op:
        batch_op.drop_index('ix_senders_ws')
    op.drop_table('senders')
    with op.batch_alter_table('recipients_idempotency', schema=None) as batch_op:
        batch_op.drop_column('fingerprint')
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_column('kind')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('language')
