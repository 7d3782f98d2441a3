"""Every table of the database (SQLAlchemy 2 declarative models, migrated by Alembic: ``generator/db/migrations``).
The queries are :class:`generator.db.store.Store`'s."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Job(Base):
    """One generation run for an audience (a demo, a campaign, an API job)."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    kind: Mapped[str] = mapped_column(String(32), default="campaign")
    campaign_type: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(200))
    adapter: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/running/done/failed
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    messages: Mapped[list[Message]] = relationship(back_populates="job", cascade="all, delete-orphan")


class Message(Base):
    """One generated push for one user (and variant) of a job, with its guardrail verdicts."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("job_id", "user_id", "variant", name="uq_message_job_user_variant"),
                      Index("ix_messages_job_review", "job_id", "review_status"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    variant: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    deep_link: Mapped[str | None] = mapped_column(Text)
    item_ids: Mapped[list[Any]] = mapped_column(default=list)
    prompt: Mapped[str] = mapped_column(Text, default="")
    template: Mapped[str] = mapped_column(String(200))
    adapter: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # passed / flagged / fallback
    guardrails: Mapped[list[Any]] = mapped_column(default=list)  # [{name, passed, reason}]
    candidates: Mapped[list[Any]] = mapped_column(default=list)
    ranked_items: Mapped[list[Any]] = mapped_column(default=list)  # [{item_id, title, price, score, why}]
    ctr_score: Mapped[float | None] = mapped_column(Float)
    review_status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    job: Mapped[Job] = relationship(back_populates="messages")


class JobChunk(Base):
    """One chunk of a job's audience: a unit of queued work, with how often it was delivered."""

    __tablename__ = "job_chunks"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_ids: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/running/done/failed
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; the role decides what it may do."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))  # one of ROLES
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Erasure(Base):
    """A record that a user's personal data was erased: when, by whom, how many rows of each kind. The user is
    kept only as a keyed hash of their id (:func:`generator.db.suppression.user_ref`), so the record holds no personal
    data and nobody without this database's key can test an id against it."""

    __tablename__ = "erasures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_hash: Mapped[str] = mapped_column(String(64), index=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeviceToken(Base):
    """A user's push address on one platform (FCM or APNs token): personal data, erased with the user."""

    __tablename__ = "device_tokens"
    __table_args__ = (UniqueConstraint("platform", "token", name="uq_device_token"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    platform: Mapped[str] = mapped_column(String(16))  # fcm / apns / webhook
    token: Mapped[str] = mapped_column(Text, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    app: Mapped[str | None] = mapped_column(String(200))  # migration 0006: what POST /v1/devices registers
    locale: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime | None]


class ItemEmbedding(Base):
    """Scorer embeddings of item texts, keyed by (encoder, content hash): unchanged items are never re-encoded."""

    __tablename__ = "item_embeddings"
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewEvent(Base):
    """One decision on one message: the audit trail."""

    __tablename__ = "review_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(200))  # the token's name, or "auto-rule"
    actor_role: Mapped[str] = mapped_column(String(32))  # reviewer / admin / rule
    action: Mapped[str] = mapped_column(String(16))  # approve / reject / edit
    old_status: Mapped[str] = mapped_column(String(16))
    new_status: Mapped[str] = mapped_column(String(16))
    old_title: Mapped[str] = mapped_column(Text)
    old_body: Mapped[str] = mapped_column(Text)
    new_title: Mapped[str] = mapped_column(Text)
    new_body: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    checks: Mapped[list[Any]] = mapped_column(default=list)  # an edit's failing checks, "name: reason"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def changed_text(self) -> bool:
        return (self.old_title, self.old_body) != (self.new_title, self.new_body)


class ReviewRule(Base):
    """A job's auto-approve rule: pending copy that passes every check with predicted CTR >= ``min_ctr``."""

    __tablename__ = "review_rules"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    min_ctr: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppSecret(Base):
    """Random keys generated once per database (e.g. the review session signing key), shared by every API
    process that uses the database. Deleting a row rotates the key (and logs every reviewer out)."""

    __tablename__ = "app_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewSession(Base):
    """A logged-in review session, by the SHA-256 of the random id its cookie carries: logging out deletes it, so
    a copied cookie is worthless afterwards; deleting the token deletes its sessions."""

    __tablename__ = "review_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
