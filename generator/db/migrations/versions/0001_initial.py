"""Initial schema: jobs, messages, item embedding cache.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("campaign_type", sa.String(64), nullable=False),
        sa.Column("template", sa.String(200), nullable=False),
        sa.Column("adapter", sa.String(200), nullable=True),
        sa.Column("locale", sa.String(16), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("deep_link", sa.Text(), nullable=True),
        sa.Column("item_ids", sa.JSON(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("template", sa.String(200), nullable=False),
        sa.Column("adapter", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("ranked_items", sa.JSON(), nullable=False),
        sa.Column("ctr_score", sa.Float(), nullable=True),
        sa.Column("review_status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("job_id", "user_id", "variant", name="uq_message_job_user_variant"),
    )
    op.create_index("ix_messages_job_id", "messages", ["job_id"])
    op.create_index("ix_messages_user_id", "messages", ["user_id"])
    op.create_table(
        "item_embeddings",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("item_embeddings")
    op.drop_index("ix_messages_user_id", "messages")
    op.drop_index("ix_messages_job_id", "messages")
    op.drop_table("messages")
    op.drop_table("jobs")
