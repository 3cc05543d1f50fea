"""an export's file in chunks (export_chunks), so a large export is built and downloaded
in flat memory

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 04:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Exports built before keep their file in exports.content and still download from there.


def upgrade() -> None:
    op.create_table(
        "export_chunks",
        sa.Column("export_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("export_id", "seq"),
    )


def downgrade() -> None:
    op.drop_table("export_chunks")
