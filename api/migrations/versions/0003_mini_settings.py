"""Mini settings: status and capacity set through the API (PATCH /v1/minis/{name}), over the inventory's.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mini_settings",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16)),
        sa.Column("max_claws", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mini_settings")
