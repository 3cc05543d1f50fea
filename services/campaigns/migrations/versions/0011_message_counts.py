"""count each campaign's messages by status, held, sent and day, kept by triggers

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

from services.campaigns.schema import count_backfill, count_triggers, drop_count_triggers

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# GetCampaign's progress and overview, ListCampaigns' progress and the tab counts read these
# counters instead of a pass over the campaign's ledger. The triggers and the backfill run in
# this migration's transaction: on PostgreSQL creating a trigger locks the ledger against
# writes until the commit, so no change falls between the backfill and the first trigger.
# The trigger text is the schema's (services.campaigns.schema); a later change to it comes
# with its own migration replacing the triggers.


def upgrade() -> None:
    op.create_table(
        "message_counts",
        sa.Column("campaign_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "status", "held", "sent", "day", "slot"),
    )
    dialect = op.get_bind().dialect.name
    for ddl in count_triggers(dialect):
        op.execute(ddl)
    op.execute(count_backfill(dialect))


def downgrade() -> None:
    for ddl in drop_count_triggers(op.get_bind().dialect.name):
        op.execute(ddl)
    op.drop_table("message_counts")
