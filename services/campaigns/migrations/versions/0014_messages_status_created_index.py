"""index a campaign's messages by status in creation order (ListMessages' status filters)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 05:40:00.000000
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# A status filter's page in created order was read through (campaign_id, status, held, ...)
# and sorted, or through (campaign_id, created_at, id) skipping the other statuses: which one
# the planner took depended on its statistics of the status column, taken when the campaign
# was built (every message QUEUED), so a DELIVERED page sorted the whole campaign's deliveries
# on every call (PostgreSQL, 100,000 messages: ~0.2-0.9 s a page instead of ~2 ms). This index
# yields the page's rows in order for any status. The overview index it replaces served
# ReconcileCampaign's scan (now a walk of this prefix) and the counts the counters answer now.
COLUMNS = ["campaign_id", "status", "created_at", "id"]
OVERVIEW = ["campaign_id", "status", "held", "dispatched_at", "sent_at", "updated_at"]


def upgrade() -> None:
    op.create_index("ix_messages_campaign_status_created", "messages", COLUMNS)
    op.drop_index("ix_messages_campaign_overview", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_campaign_overview", "messages", OVERVIEW)
    op.drop_index("ix_messages_campaign_status_created", table_name="messages")
