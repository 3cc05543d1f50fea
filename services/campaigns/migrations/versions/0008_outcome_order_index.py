"""index the ledger by campaign and time of the last status change

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 21:00:00.000000
"""
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# The auto-pause check reads a sending campaign's latest outcomes on every dispatcher tick
# (ORDER BY updated_at DESC LIMIT n): without this index that sorted the campaign's whole
# ledger each time, a cost growing with the audience.


def upgrade() -> None:
    op.create_index('ix_messages_campaign_updated', 'messages', ['campaign_id', 'updated_at'])


def downgrade() -> None:
    op.drop_index('ix_messages_campaign_updated', table_name='messages')
