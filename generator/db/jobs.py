"""Queries of jobs: create, read, find by idempotency key, set status, start the scheduled ones that are due.
Their chunks are :mod:`generator.db.chunks`; the state machine over both is :mod:`generator.jobs`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from generator.db.store import Store
from generator.db.tables import Job, JobChunk, utcnow

FINISHED = ("done", "failed", "cancelled")


def create_job(store: Store, **fields: Any) -> Job:
    with store.session() as s:
        job = Job(**fields)
        s.add(job)
    return job


def get_job(store: Store, job_id: str) -> Job | None:
    with store.session() as s:
        return s.get(Job, job_id)


def find_job_by_key(store: Store, key: str) -> Job | None:
    with store.session() as s:
        return s.scalar(select(Job).where(Job.idempotency_key == key))


def set_job_status(store: Store, job_id: str, status: str) -> None:
    """Set a job's status (a finished one is stamped ``finished_at``); KeyError when there is no such job."""
    with store.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise KeyError(job_id)
        job.status = status
        if status in FINISHED:
            job.finished_at = utcnow()


def start_due_jobs(store: Store, now: datetime) -> dict[str, list[int]]:
    """Scheduled jobs whose time (``params['schedule']``) has come: set ``queued``, with their pending chunks
    stamped queued; returns {job id: chunk indexes}. Row-locked like
    :func:`generator.db.chunks.claim_lost_chunks`."""
    out: dict[str, list[int]] = {}
    with store.session() as s:
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
