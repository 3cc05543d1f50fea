"""initial recipients schema

Tables: contacts, categories, contact_categories, suppressions, recipients_idempotency.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 16:41:48.056734
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('categories',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workspace_id', 'name', name='uq_categories_ws_name')
    )
    op.create_table('contacts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('last_name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workspace_id', 'external_id', name='uq_contacts_ws_external')
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index('ix_contacts_ws_created', ['workspace_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_contacts_ws_email', ['workspace_id', 'email'], unique=False)
        batch_op.create_index('ix_contacts_ws_phone', ['workspace_id', 'phone'], unique=False)

    op.create_table('recipients_idempotency',
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('response', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('workspace_id', 'method', 'request_id')
    )
    op.create_table('suppressions',
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.Column('source', sa.String(length=16), server_default='api', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('workspace_id', 'channel', 'address')
    )
    op.create_table('contact_categories',
    sa.Column('contact_id', sa.String(length=36), nullable=False),
    sa.Column('category_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contact_id', 'category_id')
    )
    with op.batch_alter_table('contact_categories', schema=None) as batch_op:
        batch_op.create_index('ix_contact_categories_category', ['category_id', 'contact_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('contact_categories', schema=None) as batch_op:
        batch_op.drop_index('ix_contact_categories_category')

    op.drop_table('contact_categories')
    op.drop_table('suppressions')
    op.drop_table('recipients_idempotency')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_ws_phone')
        batch_op.drop_index('ix_contacts_ws_email')
        batch_op.drop_index('ix_contacts_ws_created')

    op.drop_table('contacts')
    op.drop_table('categories')
