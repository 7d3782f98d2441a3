"""Queries of a job's chunks (the users one task writes for): add, count deliveries, finish, count by status,
stamp queued, claim the lost ones. Row locks keep concurrent workers and recovery passes from counting twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update

from generator.db.store import Store
from generator.db.tables import Job, JobChunk, utcnow


def add_chunks(store: Store, job_id: str, chunks: Sequence[Sequence[str]]) -> None:
    """Add a job's chunks, numbered from 0 (those already there are left alone)."""
    with store.session() as s:
        for i, users in enumerate(chunks):
            if s.get(JobChunk, (job_id, i)) is None:
                s.add(JobChunk(job_id=job_id, index=i, user_ids=list(users)))


def start_chunk(store: Store, job_id: str, index: int) -> JobChunk:
    """Count one more delivery of a chunk (row-locked, so concurrent redeliveries count right)."""
    with store.session() as s:
        chunk = s.scalar(select(JobChunk).where(JobChunk.job_id == job_id, JobChunk.index == index)
                         .with_for_update())
        if chunk is None:
            raise KeyError((job_id, index))
        chunk.deliveries += 1
        chunk.status = "running" if chunk.status != "done" else "done"
        chunk.updated_at = utcnow()
        return chunk


def finish_chunk(store: Store, job_id: str, index: int, status: str, error: str | None = None) -> None:
    with store.session() as s:
        chunk = s.get(JobChunk, (job_id, index))
        chunk.status, chunk.error, chunk.updated_at = status, error, utcnow()


def chunk_counts(store: Store, job_id: str) -> dict[str, int]:
    """How many of a job's chunks are in each status."""
    with store.session() as s:
        out: dict[str, int] = {}
        for c in s.scalars(select(JobChunk).where(JobChunk.job_id == job_id)):
            out[c.status] = out.get(c.status, 0) + 1
        return out


def chunk_indexes(store: Store, job_id: str, status: str) -> list[int]:
    with store.session() as s:
        return list(s.scalars(select(JobChunk.index).where(JobChunk.job_id == job_id, JobChunk.status == status)
                              .order_by(JobChunk.index)))


def mark_chunks_queued(store: Store, job_id: str, indexes: Sequence[int]) -> None:
    """Stamp chunks as sent to the broker now (only those not started yet)."""
    if not indexes:
        return
    with store.session() as s:
        s.execute(update(JobChunk).where(JobChunk.job_id == job_id, JobChunk.index.in_(list(indexes)),
                                         JobChunk.status.in_(("pending", "queued")))
                  .values(status="queued", updated_at=utcnow()))


def claim_lost_chunks(store: Store, older_than: datetime, skip_jobs: Sequence[str],
                      limit: int = 10_000) -> list[tuple[str, int]]:
    """Unfinished chunks (pending, queued or running) last stamped before ``older_than`` whose job's status
    is not in ``skip_jobs``, stamped ``queued`` now and returned as (job id, index). Locked rows are skipped,
    so concurrent callers never claim the same chunk."""
    with store.session() as s:
        rows = list(s.scalars(
            select(JobChunk).join(Job, Job.id == JobChunk.job_id)
            .where(JobChunk.status.in_(("pending", "queued", "running")), JobChunk.updated_at < older_than,
                   Job.status.not_in(list(skip_jobs)))
            .order_by(JobChunk.updated_at).limit(limit).with_for_update(skip_locked=True, of=JobChunk)))
        now = utcnow()
        for c in rows:
            c.status, c.updated_at = "queued", now
        return [(c.job_id, c.index) for c in rows]
