"""The store: SQLAlchemy 2 models, migrated by Alembic. SQLite by default, PostgreSQL via PUSHGEN_DATABASE_URL.

Writes of generated messages are idempotent, keyed by ``(job_id, user_id, variant)``: writing the same message
twice (a retried task, a redelivered chunk) leaves one row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from generator.core.config import get_settings
from generator.db.tables import (
    ApiToken,
    DeviceToken,
    Erasure,
    ItemEmbedding,
    Job,
    JobChunk,
    Message,
    utcnow,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ROLES = ("campaign_tool", "reviewer", "admin")
"""What an API token may do: submit and read jobs; read jobs and review copy; everything (erasure included)."""


def may(role: str, *allowed: str) -> bool:
    """Whether a token of ``role`` may do what ``allowed`` roles may (``admin`` may do everything)."""
    return role == "admin" or role in allowed




























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

