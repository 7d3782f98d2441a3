"""Privacy: device tokens (what a push sender addresses; personal data) and erasures, one row per erasure of a
user's personal data (when, by whom, how many rows of each kind). An erasure keeps the user only as a hash, so
the record itself holds no personal data.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_hash", sa.String(64), nullable=False, index=True),  # SHA-256 of the user id, never the id
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "device_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(200), nullable=False, index=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("platform", "token", name="uq_device_token"),
    )


def downgrade() -> None:
    op.drop_table("device_tokens")
    op.drop_table("erasures")
