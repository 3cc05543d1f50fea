"""index the ledger for a campaign's overview

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 22:30:00.000000
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# GetCampaign (polled while a campaign sends) counts the campaign's messages by status, held,
# and day handed off: with every column it reads in this index, that is one pass over index
# entries instead of three over the ledger's rows. Its (campaign_id, status) prefix serves
# every lookup the index it replaces did.
COLUMNS = ['campaign_id', 'status', 'held', 'dispatched_at', 'sent_at', 'updated_at']


def upgrade() -> None:
    op.create_index('ix_messages_campaign_overview', 'messages', COLUMNS)
    op.drop_index('ix_messages_campaign_status', table_name='messages')


def downgrade() -> None:
    op.create_index('ix_messages_campaign_status', 'messages', ['campaign_id', 'status'])
    op.drop_index('ix_messages_campaign_overview', table_name='messages')
