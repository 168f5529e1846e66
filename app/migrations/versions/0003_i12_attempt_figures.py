"""issue 12: each attempt's worker, timings, cost and outcome

Revision ID: 0003_i12
Revises: 0002_i9
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_i12"
down_revision = "0002_i9"
branch_labels = None
depends_on = None

COLUMNS = (
    ("worker_id", sa.String(length=128)),
    ("started_at", sa.DateTime(timezone=True)),
    ("finished_at", sa.DateTime(timezone=True)),
    ("delay_ms", sa.Integer()),
    ("execution_ms", sa.Integer()),
    ("cost_usd", sa.Float()),
    ("outcome", sa.String(length=16)),
)


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
