"""Several replicas: job owner, lease and secrets holder; job locks (one job per Mini and per claw across
replicas), replicas with heartbeats, named leases (the scheduler's leader) and schedule runs.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(128)))
        batch.add_column(sa.Column("lease_until", TZ))
        batch.add_column(sa.Column("secrets_on", sa.String(128)))
        batch.create_index("ix_jobs_owner", ["owner"])
    op.create_table(
        "job_locks",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False, index=True),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("heartbeat_at", TZ, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("until", TZ, nullable=False),
    )
    op.create_table(
        "schedule_runs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_run", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in ("schedule_runs", "leases", "replicas", "job_locks"):
        op.drop_table(name)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_owner")
        for column in ("secrets_on", "lease_until", "owner"):
            batch.drop_column(column)
