"""Experiments: A/B tests of a job's variants (arms, assignments), sends with idempotency keys, outcome events,
dead device tokens and learning-loop runs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, index=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("allocation", sa.String(16), nullable=False),
        sa.Column("control", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("phases", sa.JSON(), nullable=False),
        sa.Column("winner", sa.String(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("stopped_at", TS, nullable=True),
    )
    op.create_table(
        "experiment_arms",
        sa.Column("experiment_id", sa.String(36), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
    )
    op.create_table(
        "experiment_assignments",
        sa.Column("experiment_id", sa.String(36), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("arm", sa.String(32), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("unit", sa.Float(), nullable=False),
        sa.Column("assigned_at", TS, nullable=False),
    )
    op.create_table(
        "sends",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(36), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("user_id", sa.String(200), nullable=False, index=True),
        sa.Column("arm", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
        sa.Column("adapter", sa.String(200), nullable=True),
        sa.Column("platform", sa.String(16), nullable=True),
        sa.Column("device_token_id", sa.Integer(), sa.ForeignKey("device_tokens.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.UniqueConstraint("experiment_id", "user_id", name="uq_send_experiment_user"),
    )
    op.create_table(
        "outcome_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("send_id", sa.Integer(), sa.ForeignKey("sends.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("experiment_id", sa.String(36), nullable=False, index=True),
        sa.Column("arm", sa.String(32), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("revenue", sa.Float(), nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_table(
        "dead_device_tokens",
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("device_tokens.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("marked_at", TS, nullable=False),
    )
    op.create_table(
        "loop_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("adapter", sa.String(200), nullable=True),
        sa.Column("ctr_model", sa.String(200), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )


def downgrade() -> None:
    for table in ("loop_runs", "dead_device_tokens", "outcome_events", "sends", "experiment_assignments",
                  "experiment_arms", "experiments"):
        op.drop_table(table)
