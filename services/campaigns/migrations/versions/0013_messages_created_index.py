"""index a campaign's messages in creation order (ListMessages' keyset pages, exports)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 04:05:00.000000
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# ListMessages pages and an export's batches read in created order by keyset: with this index a
# page reads the entries after the token's position (a status filter skips the others on the
# way) instead of every matching row of the campaign, sorted, on every page or batch.
COLUMNS = ["campaign_id", "created_at", "id"]


def upgrade() -> None:
    op.create_index("ix_messages_campaign_created", "messages", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_messages_campaign_created", table_name="messages")
