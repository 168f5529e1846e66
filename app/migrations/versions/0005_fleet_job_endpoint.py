"""issue 18: each job records the name of the endpoint that serves its pipeline

Rows made before several endpoints existed were all sent to the one endpoint, which the
app now calls "default".

Revision ID: 0005_fleet
Revises: 0004_api
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_fleet"
down_revision = "0004_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("endpoint", sa.String(length=64), nullable=False, server_default="default")
        )
        batch.create_index("ix_jobs_endpoint_status", ["endpoint", "status"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_endpoint_status")
        batch.drop_column("endpoint")
