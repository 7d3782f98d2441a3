"""Queries of generated messages: save (idempotent), list, count.

Writes are keyed by ``(job_id, user_id, variant)``: writing the same message twice (a retried task, a redelivered
chunk) leaves one row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from generator.db.store import Store
from generator.db.suppression import suppressed
from generator.db.tables import Message

MESSAGE_FIELDS = ("title", "body", "deep_link", "item_ids", "prompt", "template", "adapter", "status",
                  "guardrails", "candidates", "ranked_items", "ctr_score")


def save_messages(store: Store, job_id: str, messages: Iterable[dict[str, Any]]) -> int:
    """Insert or replace messages keyed by (job_id, user_id, variant) in one transaction; returns count.
    A message updates only the fields it has (the others keep their values, or their defaults when new). On
    SQLite and PostgreSQL the rows go in as batched ``INSERT .. ON CONFLICT DO UPDATE`` statements (one round
    trip per thousand rows, not a query and a write per message). Users erased while their chunk ran are
    skipped (not counted)."""
    messages = list(messages)
    erased = suppressed(store, {m["user_id"] for m in messages})  # erased while their chunk ran
    messages = [m for m in messages if m["user_id"] not in erased]
    if store.engine.dialect.name in ("sqlite", "postgresql"):
        return _upsert(store, job_id, messages)
    with store.session() as s:
        _save_rows(s, job_id, messages)
    return len(messages)


def list_messages(store: Store, job_id: str, *, offset: int = 0, limit: int | None = None) -> list[Message]:
    """A job's messages by user and variant (a page of them with ``offset`` and ``limit``)."""
    with store.session() as s:
        q = select(Message).where(Message.job_id == job_id).order_by(Message.user_id, Message.variant)
        if offset:
            q = q.offset(offset)
        if limit is not None:
            q = q.limit(limit)
        return list(s.scalars(q))


def count_messages(store: Store, job_id: str) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Message).where(Message.job_id == job_id)) or 0)


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


def _upsert(store: Store, job_id: str, messages: Iterable[dict[str, Any]]) -> int:
    """Batched ``INSERT .. ON CONFLICT DO UPDATE``, one statement per set of fields given."""
    if store.engine.dialect.name == "sqlite":
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
    by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows.values():
        by_fields.setdefault(tuple(row), []).append(row)
    required = {c.name for c in Message.__table__.columns
                if not c.nullable and c.default is None and c.server_default is None and not c.primary_key}
    with store.session() as s:
        for fields, batch in by_fields.items():
            if not required <= set(fields):  # not insertable as given: update row by row, as before
                _save_rows(s, job_id, batch)
                continue
            stmt = insert(Message)
            updated = {f: stmt.excluded[f] for f in fields if f not in ("job_id", "user_id", "variant")}
            stmt = (stmt.on_conflict_do_update(index_elements=["job_id", "user_id", "variant"], set_=updated)
                    if updated else stmt.on_conflict_do_nothing(index_elements=["job_id", "user_id", "variant"]))
            s.execute(stmt, batch)
    return n
