"""Celery tasks: thin wrappers over ``generator.jobs``. Each is small and idempotent.

Every worker also runs :func:`generator.jobs.recover` every ``recover_every`` seconds in a thread of its own, so
work that a broker restart lost, and scheduled jobs that are due, are sent (again) without another process.
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.exc import OperationalError

from generator import jobs
from generator.core.config import get_settings
from generator.db.jobs import get_job
from workers.celery_app import app, follow_settings
from workers.recovery import RecoveryLoop
from workers.stores import store
from workers.tasks_callbacks import deliver

log = logging.getLogger(__name__)


@app.task(name="workers.tasks.start_job")
def start_job(job_id: str) -> int:
    """Fan a job out into one generation task per chunk not sent yet; returns how many were sent."""
    return jobs.send_chunks(store(), job_id, enqueue)


def enqueue(job_id: str, index: int | None) -> None:
    """:data:`generator.jobs.Enqueue` on this app (its current broker): fan a job out, or send one chunk."""
    follow_settings()
    if index is None:
        start_job.delay(job_id)
    else:
        generate_chunk.apply_async((job_id, index))


@app.task(name="workers.tasks.generate_chunk", bind=True, autoretry_for=(OperationalError, ConnectionError),
          retry_backoff=2, retry_backoff_max=60, retry_jitter=True, max_retries=3)
def generate_chunk(self, job_id: str, index: int) -> str:  # type: ignore[no-untyped-def]
    """Generate and store the messages of one chunk. A chunk that keeps failing ends ``failed`` after
    ``max_deliveries`` deliveries (counted in the database, so worker crashes count too)."""
    self.update_state(state="PROGRESS", meta={"job_id": job_id, "chunk": index})
    try:
        status = jobs.run_chunk(store(), job_id, index)
        _job_ended(job_id)
        return status
    except (OperationalError, ConnectionError):
        raise  # transient: retried with backoff
    except Exception as exc:
        log.exception("chunk %s/%s failed", job_id, index)
        if self.request.retries >= get_settings().max_deliveries - 1:
            status = jobs.fail_chunk(store(), job_id, index, f"{type(exc).__name__}: {exc}")
            _job_ended(job_id)
            return status
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 30)) from exc


def _job_ended(job_id: str) -> None:
    """A job that asked for a completion callback and just ended sends it now (the recovery pass would, later)."""
    from generator.callbacks import callback_state

    state = callback_state(store(), job_id)
    if state is not None and state["status"] == "waiting":
        job = get_job(store(), job_id)
        if job is not None and job.status in jobs.FINAL:
            deliver.delay()


_LOOP: RecoveryLoop | None = None


@worker_ready.connect
def _start_recovery(**_: object) -> None:
    global _LOOP
    _LOOP = RecoveryLoop(enqueue).start()


@worker_shutdown.connect
def _stop_recovery(**_: object) -> None:
    if _LOOP is not None:
        _LOOP.stop()
