"""Minis as data: the Minis registered through POST /v1/minis (address, tunnel id, capacity, base port, timezone,
status), beside those of the operator's inventory file.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "minis",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("address", sa.String(255)),
        sa.Column("tunnel_id", sa.String(36)),
        sa.Column("max_claws", sa.Integer, nullable=False),
        sa.Column("base_port", sa.Integer, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("minis")
