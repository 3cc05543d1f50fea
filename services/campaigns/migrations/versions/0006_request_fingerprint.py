"""request_id fingerprint: a request_id is bound to its method, target and body

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows stored before this revision have no fingerprint and replay unchecked.
    with op.batch_alter_table('idempotency', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('idempotency', schema=None) as batch_op:
        batch_op.drop_column('fingerprint')
