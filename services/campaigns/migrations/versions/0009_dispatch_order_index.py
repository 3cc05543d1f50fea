"""index the ledger in dispatch order

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 22:00:00.000000
"""
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# The dispatcher reads a campaign's next waiting messages in audience order (dispatched_at
# IS NULL ORDER BY created_at, id LIMIT n) on every tick: on (campaign_id, dispatched_at)
# alone that sorted every waiting message each time, a cost growing with the audience. The
# wider index serves every query the old one did, so it replaces it.


def upgrade() -> None:
    op.create_index('ix_messages_dispatch_order', 'messages',
                    ['campaign_id', 'dispatched_at', 'created_at', 'id'])
    op.drop_index('ix_messages_dispatch', table_name='messages')


def downgrade() -> None:
    op.create_index('ix_messages_dispatch', 'messages', ['campaign_id', 'dispatched_at'])
    op.drop_index('ix_messages_dispatch_order', table_name='messages')
