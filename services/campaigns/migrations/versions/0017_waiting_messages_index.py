"""index only the messages still to dispatch (a partial index), so the dispatcher's next page
does not step over every message already dispatched

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 10:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# PostgreSQL read the next page of waiting messages through an index that also held every
# dispatched message, ahead of the waiting ones: each page stepped over all of them (100,000
# messages: 4 ms for the first page, 22 ms half-way, 47 ms for the last; 5.1 s of the
# database's time in all, 0.7 s with this index). Pacing counts the undispatched messages
# from it too. Building it reads the ledger once: run the migration before the rollout.
WAITING = "dispatched_at IS NULL"


def upgrade() -> None:
    op.create_index("ix_messages_waiting", "messages", ["campaign_id", "created_at", "id"],
                    sqlite_where=sa.text(WAITING), postgresql_where=sa.text(WAITING))
    op.drop_index("ix_messages_dispatch_order", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_dispatch_order", "messages",
                    ["campaign_id", "dispatched_at", "created_at", "id"])
    op.drop_index("ix_messages_waiting", table_name="messages")
