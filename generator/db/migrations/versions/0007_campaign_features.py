"""Campaign features: device details (app, locale, last registration), completion callbacks (a durable outbox
with per-token signing secrets), per-user send times, and per-brand global control groups.

Revision ID: 0007_campaign_features
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_campaign_features"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("device_tokens") as batch:
        batch.add_column(sa.Column("app", sa.String(200), nullable=True))
        batch.add_column(sa.Column("locale", sa.String(16), nullable=True))
        batch.add_column(sa.Column("updated_at", TS, nullable=True))
        batch.create_index("ix_device_tokens_token", ["token"])
    op.create_table(
        "callback_secrets",
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "job_callbacks",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
    )
    op.create_table(
        "send_times",
        sa.Column("experiment_id", sa.String(36), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("timing", sa.String(16), nullable=False),
        sa.Column("local_hour", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("scheduled_for", TS, nullable=False),
    )
    op.create_table(
        "global_controls",
        sa.Column("brand", sa.String(200), primary_key=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("global_controls", "send_times", "job_callbacks", "callback_secrets"):
        op.drop_table(table)
    with op.batch_alter_table("device_tokens") as batch:
        batch.drop_index("ix_device_tokens_token")
        batch.drop_column("updated_at")
        batch.drop_column("locale")
        batch.drop_column("app")
