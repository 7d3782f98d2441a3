"""The store: SQLAlchemy 2 models, migrated by Alembic. SQLite by default, PostgreSQL via PUSHGEN_DATABASE_URL.

Writes of generated messages are idempotent, keyed by ``(job_id, user_id, variant)``: writing the same message
twice (a retried task, a redelivered chunk) leaves one row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
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
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from generator.core.config import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ROLES = ("campaign_tool", "reviewer", "admin")
"""What an API token may do: submit and read jobs; read jobs and review copy; everything (erasure included)."""


def may(role: str, *allowed: str) -> bool:
    """Whether a token of ``role`` may do what ``allowed`` roles may (``admin`` may do everything)."""
    return role == "admin" or role in allowed


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


MESSAGE_FIELDS = ("title", "body", "deep_link", "item_ids", "prompt", "template", "adapter", "status",
                  "guardrails", "candidates", "ranked_items", "ctr_score")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free space (erasure)
    cur.close()


class Store:
    """Access to the database: migrations, jobs, messages and the embedding cache."""

    def __init__(self, url: str | None = None, *, migrate: bool = True):
        self.url = url or get_settings().database_url
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(self.url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as s:
            yield s

    # jobs -------------------------------------------------------------------------------------------------
    def create_job(self, **fields: Any) -> Job:
        with self.session() as s:
            job = Job(**fields)
            s.add(job)
        return job

    def get_job(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def set_job_status(self, job_id: str, status: str) -> None:
        with self.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise KeyError(job_id)
            job.status = status
            if status in ("done", "failed", "cancelled"):
                job.finished_at = utcnow()

    # messages ---------------------------------------------------------------------------------------------
    def save_messages(self, job_id: str, messages: Iterable[dict[str, Any]]) -> int:
        """Insert or replace messages keyed by (job_id, user_id, variant) in one transaction; returns count.
        A message updates only the fields it has (the others keep their values, or their defaults when new). On
        SQLite and PostgreSQL the rows go in as batched ``INSERT .. ON CONFLICT DO UPDATE`` statements (one round
        trip per thousand rows, not a query and a write per message). Users erased while their chunk ran are
        skipped (not counted)."""
        messages = list(messages)
        erased = self.suppressed_users({m["user_id"] for m in messages})  # erased while their chunk ran
        messages = [m for m in messages if m["user_id"] not in erased]
        if self.engine.dialect.name in ("sqlite", "postgresql"):
            return self._upsert_messages(job_id, messages)
        with self.session() as s:
            self._save_rows(s, job_id, messages)
        return len(messages)

    @staticmethod
    def _save_rows(s: Session, job_id: str, messages: Iterable[dict[str, Any]]) -> None:
        """Insert or update messages one by one (a query and a write each)."""
        for m in messages:
            variant = int(m.get("variant", 0))
            row = s.scalar(select(Message).where(Message.job_id == job_id, Message.user_id == m["user_id"],
                                                 Message.variant == variant))
            if row is None:
                row = Message(job_id=job_id, user_id=m["user_id"], variant=variant)
                s.add(row)
            for f in MESSAGE_FIELDS:
                if f in m:
                    setattr(row, f, m[f])

    def _upsert_messages(self, job_id: str, messages: Iterable[dict[str, Any]]) -> int:
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        rows: dict[tuple[str, int], dict[str, Any]] = {}  # a message given twice: the later fields win, as before
        n = 0
        for m in messages:
            key = (m["user_id"], int(m.get("variant", 0)))
            rows.setdefault(key, {"job_id": job_id, "user_id": key[0], "variant": key[1]}).update(
                {f: m[f] for f in MESSAGE_FIELDS if f in m})
            n += 1
        by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # one statement per set of fields given
        for row in rows.values():
            by_fields.setdefault(tuple(row), []).append(row)
        required = {c.name for c in Message.__table__.columns
                    if not c.nullable and c.default is None and c.server_default is None and not c.primary_key}
        with self.session() as s:
            for fields, batch in by_fields.items():
                if not required <= set(fields):  # not insertable as given: update row by row, as before
                    self._save_rows(s, job_id, batch)
                    continue
                stmt = insert(Message)
                updated = {f: stmt.excluded[f] for f in fields if f not in ("job_id", "user_id", "variant")}
                stmt = (stmt.on_conflict_do_update(index_elements=["job_id", "user_id", "variant"], set_=updated)
                        if updated else stmt.on_conflict_do_nothing(index_elements=["job_id", "user_id", "variant"]))
                s.execute(stmt, batch)
        return n

    def list_messages(self, job_id: str, *, offset: int = 0, limit: int | None = None) -> list[Message]:
        with self.session() as s:
            q = select(Message).where(Message.job_id == job_id).order_by(Message.user_id, Message.variant)
            if offset:
                q = q.offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return list(s.scalars(q))

    # chunks and tokens -----------------------------------------------------------------------------------
    def add_chunks(self, job_id: str, chunks: Sequence[Sequence[str]]) -> None:
        with self.session() as s:
            for i, users in enumerate(chunks):
                if s.get(JobChunk, (job_id, i)) is None:
                    s.add(JobChunk(job_id=job_id, index=i, user_ids=list(users)))

    def start_chunk(self, job_id: str, index: int) -> JobChunk:
        """Count one more delivery of a chunk (row-locked, so concurrent redeliveries count right)."""
        with self.session() as s:
            chunk = s.scalar(select(JobChunk).where(JobChunk.job_id == job_id, JobChunk.index == index)
                             .with_for_update())
            if chunk is None:
                raise KeyError((job_id, index))
            chunk.deliveries += 1
            chunk.status = "running" if chunk.status != "done" else "done"
            chunk.updated_at = utcnow()
            return chunk

    def finish_chunk(self, job_id: str, index: int, status: str, error: str | None = None) -> None:
        with self.session() as s:
            chunk = s.get(JobChunk, (job_id, index))
            chunk.status, chunk.error, chunk.updated_at = status, error, utcnow()

    def chunk_counts(self, job_id: str) -> dict[str, int]:
        with self.session() as s:
            rows = s.scalars(select(JobChunk).where(JobChunk.job_id == job_id))
            out: dict[str, int] = {}
            for c in rows:
                out[c.status] = out.get(c.status, 0) + 1
            return out

    def chunk_indexes(self, job_id: str, status: str) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(JobChunk.index).where(JobChunk.job_id == job_id, JobChunk.status == status)
                                  .order_by(JobChunk.index)))

    def mark_chunks_queued(self, job_id: str, indexes: Sequence[int]) -> None:
        """Stamp chunks as sent to the broker now (only those not started yet)."""
        if not indexes:
            return
        with self.session() as s:
            s.execute(update(JobChunk).where(JobChunk.job_id == job_id, JobChunk.index.in_(list(indexes)),
                                             JobChunk.status.in_(("pending", "queued")))
                      .values(status="queued", updated_at=utcnow()))

    def claim_lost_chunks(self, older_than: datetime, skip_jobs: Sequence[str],
                          limit: int = 10_000) -> list[tuple[str, int]]:
        """Unfinished chunks (pending, queued or running) last stamped before ``older_than`` whose job's status
        is not in ``skip_jobs``, stamped ``queued`` now and returned as (job id, index). Locked rows are skipped,
        so concurrent callers never claim the same chunk."""
        with self.session() as s:
            rows = list(s.scalars(
                select(JobChunk).join(Job, Job.id == JobChunk.job_id)
                .where(JobChunk.status.in_(("pending", "queued", "running")), JobChunk.updated_at < older_than,
                       Job.status.not_in(list(skip_jobs)))
                .order_by(JobChunk.updated_at).limit(limit).with_for_update(skip_locked=True, of=JobChunk)))
            now = utcnow()
            for c in rows:
                c.status, c.updated_at = "queued", now
            return [(c.job_id, c.index) for c in rows]

    def start_due_jobs(self, now: datetime) -> dict[str, list[int]]:
        """Scheduled jobs whose time (``params['schedule']``) has come: set ``queued``, with their pending chunks
        stamped queued; returns {job id: chunk indexes}. Row-locked like :meth:`claim_lost_chunks`."""
        out: dict[str, list[int]] = {}
        with self.session() as s:
            for job in s.scalars(select(Job).where(Job.status == "scheduled").with_for_update(skip_locked=True)):
                at = job.params.get("schedule")
                if at and datetime.fromisoformat(at) > now:
                    continue
                job.status = "queued"
                chunks = list(s.scalars(select(JobChunk).where(JobChunk.job_id == job.id,
                                                               JobChunk.status == "pending")))
                for c in chunks:
                    c.status, c.updated_at = "queued", utcnow()
                out[job.id] = sorted(c.index for c in chunks)
        return out

    def find_job_by_key(self, key: str) -> Job | None:
        with self.session() as s:
            return s.scalar(select(Job).where(Job.idempotency_key == key))

    def count_messages(self, job_id: str) -> int:
        from sqlalchemy import func

        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(Message).where(Message.job_id == job_id)) or 0)

    def create_token(self, name: str, role: str) -> str:
        """A new random token for ``role`` (one of :data:`ROLES`); returned once, stored only as its hash."""
        if role not in ROLES:
            from generator.core.errors import PushgenError

            raise PushgenError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        import hashlib
        import secrets

        token = "pg_" + secrets.token_urlsafe(32)
        with self.session() as s:
            s.add(ApiToken(name=name, role=role, token_hash=hashlib.sha256(token.encode()).hexdigest()))
        return token

    def list_tokens(self) -> list[ApiToken]:
        with self.session() as s:
            return list(s.scalars(select(ApiToken).order_by(ApiToken.id)))

    def delete_token(self, token_id: int) -> bool:
        """Delete a token (its review sessions go with it); False when there is none with that id."""
        with self.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                return False
            s.delete(row)
            return True

    def role_of(self, token: str) -> str | None:
        import hashlib

        with self.session() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hashlib.sha256(token.encode()).hexdigest()))
            return row.role if row else None

    def suppressed_users(self, user_ids: Iterable[str]) -> set[str]:
        """Those of ``user_ids`` that were erased (the suppression list): never messaged again until restored."""
        from generator.db.suppression import suppressed

        return suppressed(self, user_ids)

    def targetable(self, user_ids: Sequence[str]) -> list[str]:
        """``user_ids`` without the erased ones, in order."""
        erased = self.suppressed_users(user_ids)
        return [u for u in user_ids if u not in erased]

    def add_device_token(self, user_id: str, platform: str, token: str) -> None:
        """Remember where to push to a user (``fcm`` or ``apns``); the same token again is a no-op."""
        with self.session() as s:
            if s.scalar(select(DeviceToken).where(DeviceToken.platform == platform, DeviceToken.token == token)):
                return
            s.add(DeviceToken(user_id=user_id, platform=platform, token=token))

    def device_tokens(self, user_id: str) -> list[DeviceToken]:
        with self.session() as s:
            return list(s.scalars(select(DeviceToken).where(DeviceToken.user_id == user_id)))

    def erasures(self, user_id: str | None = None) -> list[Erasure]:
        """Erasure records, newest first (those of ``user_id`` only, matched by its keyed hash)."""
        from generator.db.suppression import user_ref

        with self.session() as s:
            q = select(Erasure).order_by(Erasure.created_at.desc(), Erasure.id.desc())
            if user_id is not None:
                q = q.where(Erasure.user_hash == user_ref(self, user_id))
            return list(s.scalars(q))

    def token_name(self, token: str) -> str | None:
        """``name (role)`` of a token, for records of who did what."""
        import hashlib

        with self.session() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hashlib.sha256(token.encode()).hexdigest()))
            return f"{row.name} ({row.role})" if row else None

    # embedding cache --------------------------------------------------------------------------------------
    def get_embeddings(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors for those content hashes that have one (queried in chunks)."""
        out: dict[str, np.ndarray] = {}
        with self.session() as s:
            for i in range(0, len(hashes), 500):
                chunk = list(hashes[i:i + 500])
                q = select(ItemEmbedding).where(ItemEmbedding.model == model,
                                                ItemEmbedding.content_hash.in_(chunk))
                for row in s.scalars(q):
                    out[row.content_hash] = np.frombuffer(row.vector, dtype=np.float32).copy()
        return out

    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors (float32) by content hash; existing ones are left alone."""
        if not vectors:
            return
        have = self.get_embeddings(model, list(vectors))
        with self.session() as s:
            for h, v in vectors.items():
                if h not in have:
                    v32 = np.asarray(v, dtype=np.float32)
                    s.add(ItemEmbedding(model=model, content_hash=h, dim=int(v32.shape[-1]), vector=v32.tobytes()))


# The other tables, imported here so that Base.metadata (and Alembic) sees every table.
from generator.db import tables as _tables  # noqa: E402,F401
