"""The job store as it was before migrations: jobs, events, scoped idempotency keys, claws, health samples.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("claw_id", sa.String(36), index=True),
        sa.Column("mini", sa.String(128), index=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("callback_url", sa.Text),
        sa.Column("webhook_status", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("cancel_requested", sa.Integer, nullable=False),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False, index=True),
        sa.Column("counter", sa.Integer, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("created", sa.String(40)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.UniqueConstraint("job_id", "counter"),
    )
    op.create_table(
        "idempotency_keys_scoped",
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "claws",
        sa.Column("claw_id", sa.String(36), primary_key=True),
        sa.Column("mini", sa.String(128), index=True),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("present", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "samples",
        sa.Column("mini", sa.String(128), primary_key=True),
        sa.Column("claw_id", sa.String(36), primary_key=True),
        sa.Column("sampled_at", sa.Float, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for name in ("samples", "claws", "idempotency_keys_scoped", "job_events", "jobs"):
        op.drop_table(name)
