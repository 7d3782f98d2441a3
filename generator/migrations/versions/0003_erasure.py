"""Privacy erasures: one row per erasure of a user's personal data (when, by whom, how many
rows of each kind); the user is kept only as a hash, so the record itself holds no personal data.

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


def downgrade() -> None:
    op.drop_table("erasures")
