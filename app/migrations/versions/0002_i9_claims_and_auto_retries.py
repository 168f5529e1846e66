"""per-attempt claims, automatic retries and server-side admin sessions (issue 9)

Revision ID: 0002_i9
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_i9"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("claimed_runpod_id", sa.String(length=128), nullable=True))
    op.add_column("attempts", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "jobs", sa.Column("auto_retries", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("failure_kind", sa.String(length=32), nullable=True))
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("admin_sessions")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("failure_kind")
        batch.drop_column("auto_retries")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_runpod_id")
