"""issue 19: each worker's billed seconds charged to jobs or idle

Revision ID: 0006_spend
Revises: 0005_fleet
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_spend"
down_revision = "0005_fleet"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billed_seconds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("charged_to", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("pipeline", sa.String(length=64), nullable=True),
        sa.Column("startup_s", sa.Float(), nullable=False),
        sa.Column("run_s", sa.Float(), nullable=False),
        sa.Column("idle_s", sa.Float(), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
        sa.Column("worker_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_billed_worker_charge", "billed_seconds", ["worker_id", "charged_to"], unique=True
    )
    op.create_index("ix_billed_charge", "billed_seconds", ["charged_to"])
    op.create_index("ix_billed_started", "billed_seconds", ["worker_started_at"])


def downgrade() -> None:
    op.drop_table("billed_seconds")
