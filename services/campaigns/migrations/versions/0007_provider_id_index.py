"""index the ledger by provider message id (durable receipt fallback)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The same expression as schema.PROVIDER_KEY and ledger.provider_key: SMSCs change an id's
# case and leading zeros between submit_sm_resp and the receipt, so the ledger is looked up
# by the normalised id. SQLite (3.9+) and PostgreSQL both index expressions.
EXPRESSION = "lower(ltrim(provider_message_id, '0'))"


def upgrade() -> None:
    op.create_index('ix_messages_provider_key', 'messages', [sa.text(EXPRESSION)])


def downgrade() -> None:
    op.drop_index('ix_messages_provider_key', table_name='messages')
