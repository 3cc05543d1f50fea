"""an export's build holds a lease (lease_owner, lease_until) and counts its attempts, so a
build whose process died is taken over instead of staying RUNNING

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 05:50:00.000000
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

QUEUED = 1  # EXPORT_STATUS_QUEUED
RUNNING = 2  # EXPORT_STATUS_RUNNING
# A RUNNING export found here may still be built by a pod of the previous release (it writes
# no lease): it is left that long before another replica takes it over and builds it again.
ROLLOUT_GRACE = timedelta(minutes=15)


def upgrade() -> None:
    with op.batch_alter_table("exports") as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), server_default="", nullable=False))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    # Exports already started were built (or are being built) once. A RUNNING one gets a
    # lease of ROLLOUT_GRACE from now: if its builder is dead it is built again after that.
    op.execute(sa.text(f"UPDATE exports SET attempts = 1 WHERE status <> {QUEUED}"))
    op.execute(sa.text(
        "UPDATE exports SET lease_owner = 'previous-release', lease_until = :until WHERE status = :running"
    ).bindparams(sa.bindparam("until", datetime.now(UTC) + ROLLOUT_GRACE, type_=sa.DateTime(timezone=True)),
                 running=RUNNING))


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
