"""The tables of the experiments, the global control groups, send times, completion callbacks and the suppression
list (Alembic migrations in ``generator/migrations``); the store's own tables are in :mod:`generator.store`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from generator.store import Base, utcnow


# -- tables (migration 0005_experiments) ---------------------------------------------------------------------
class Experiment(Base):
    """An A/B test of a job's variants: arms with weights, a salt for assignment, send rules."""

    __tablename__ = "experiments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    name: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    salt: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft / running / stopped
    allocation: Mapped[str] = mapped_column(String(16), default="fixed")  # fixed / thompson
    control: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)  # send rules, metric, seed
    phases: Mapped[list[Any]] = mapped_column(default=list)  # [{"weights": {arm: w}, "at": iso, "reason"}]
    winner: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]


class Arm(Base):
    """One arm: a variant of the job's messages, or the holdout (``variant`` None: no push)."""

    __tablename__ = "experiment_arms"
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    variant: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)


class Assignment(Base):
    """Which arm a user is in (and under which allocation phase), stored before anything is sent."""

    __tablename__ = "experiment_assignments"
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    arm: Mapped[str] = mapped_column(String(32))
    phase: Mapped[int] = mapped_column(Integer, default=0)
    unit: Mapped[float] = mapped_column(Float)  # the user's hash in [0, 1)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class Send(Base):
    """One user's push of one experiment (or the record that none went out, and why)."""

    __tablename__ = "sends"
    __table_args__ = (UniqueConstraint("experiment_id", "user_id", name="uq_send_experiment_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    arm: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    adapter: Mapped[str | None] = mapped_column(String(200))  # the adapter version that wrote the copy
    platform: Mapped[str | None] = mapped_column(String(16))
    device_token_id: Mapped[int | None] = mapped_column(ForeignKey("device_tokens.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_id: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class OutcomeEvent(Base):
    """What happened after a send: delivered, opened, clicked, converted (with revenue). Keyed by the client's
    event id, so the same event posted twice is stored once."""

    __tablename__ = "outcome_events"
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"), index=True)
    experiment_id: Mapped[str] = mapped_column(String(36), index=True)
    arm: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(16))
    revenue: Mapped[float | None] = mapped_column(Float)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadToken(Base):
    """A device token the provider declared invalid (FCM UNREGISTERED, APNs Unregistered/BadDeviceToken)."""

    __tablename__ = "dead_device_tokens"
    token_id: Mapped[int] = mapped_column(ForeignKey("device_tokens.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    marked_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoopRun(Base):
    """One pass of the learning loop: what it gathered and which adapter / click-through model it produced."""

    __tablename__ = "loop_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running / done / failed
    adapter: Mapped[str | None] = mapped_column(String(200))
    ctr_model: Mapped[str | None] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class GlobalControl(Base):
    """A brand's global control group: its salt and share, and every change made to them."""

    __tablename__ = "global_controls"
    brand: Mapped[str] = mapped_column(String(200), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    share: Mapped[float] = mapped_column(Float)
    history: Mapped[list[Any]] = mapped_column(default=list)  # [{"at", "share", "salt", "reason"}]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SendTime(Base):
    """When one user of an experiment is to get their push: the timing arm, the local hour, the UTC time."""

    __tablename__ = "send_times"
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    timing: Mapped[str] = mapped_column(String(16))  # optimised / random
    local_hour: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # history / fallback / random
    scheduled_for: Mapped[datetime]


# -- tables (migration 0006_campaign_features) ----------------------------------------------------------------
class CallbackSecret(Base):
    """The signing secret of one API token's callbacks (kept in clear: the server must sign with it)."""

    __tablename__ = "callback_secrets"
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobCallback(Base):
    """A job's completion event in the outbox: ``waiting`` (the job runs), ``pending`` (to send, from
    ``next_attempt_at``), ``delivered`` or ``failed`` (every attempt spent)."""

    __tablename__ = "job_callbacks"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    url: Mapped[str] = mapped_column(Text)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="waiting", index=True)
    body: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class Suppression(Base):
    """An erased user, by keyed hash only: never in an audience again until restored (migration 0006)."""

    __tablename__ = "suppressions"
    user_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
