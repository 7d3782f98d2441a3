"""Queued generation jobs: creation (idempotent by key), chunking, per-chunk work with delivery counting and a
dead-letter state, scheduling, recovery of lost work, cancellation and completion. Plain functions over the
store; the Celery tasks in ``workers.tasks`` and the in-process runner both call them.

The database, not the broker, is the source of truth. A chunk is ``pending`` (not sent yet), ``queued`` (sent to
the broker), ``running`` (a worker started it), then ``done``, ``failed`` or ``cancelled``; every change stamps
``updated_at``. A broker that restarts without persistence loses the messages it held, so :func:`recover` sends
again every chunk that was sent or started longer than ``requeue_after`` ago and has not finished, and starts
scheduled jobs whose time has come. Every chunk's writes are keyed by (job, user, variant), so a chunk delivered
twice (a killed worker, a broker restart, a recovered chunk that was only slow) leaves exactly one message per
user and variant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, BaseModel, Field, HttpUrl

from generator.callbacks import callback_state, drain
from generator.campaign.spec import Campaign, adapter_label, select_audience
from generator.core.config import get_settings
from generator.core.data import Shop, cached_shop
from generator.core.errors import PushgenError
from generator.core.inputs import STRICT
from generator.db import jobs as db_jobs
from generator.db.chunks import (
    add_chunks,
    chunk_counts,
    chunk_indexes,
    claim_lost_chunks,
    finish_chunk,
    mark_chunks_queued,
    start_chunk,
)
from generator.db.jobs import find_job_by_key, get_job, set_job_status, start_due_jobs
from generator.db.messages import count_messages
from generator.db.store import Store
from generator.db.suppression import suppressed
from generator.db.tables import Job, utcnow
from generator.review import apply_rule
from generator.write.adapters import check_name
from generator.write.prompts import default_library

if TYPE_CHECKING:
    from generator.campaign.runner import CampaignRunner

log = logging.getLogger(__name__)
FINAL = ("done", "failed", "cancelled")
Enqueue = Callable[[str, int | None], None]
"""Hands work to the broker: ``enqueue(job_id, None)`` fans a job out, ``enqueue(job_id, index)`` sends one chunk.
The workers give theirs (:func:`workers.tasks.enqueue`); the library never imports Celery."""
UNFINISHED_CHUNK = ("pending", "queued", "running")


class JobRequest(BaseModel):
    """What the campaign tool submits (``POST /v1/jobs``)."""

    model_config = STRICT
    campaign: Campaign
    idempotency_key: str | None = Field(default=None, max_length=200,
                                        description="Submitting the same key again returns the same job.")
    schedule: AwareDatetime | None = Field(
        default=None, description="When to start (ISO 8601 with a time zone). A job whose time is still to come is "
                                  "'scheduled' and is dispatched by the workers' recovery pass once it is due.")
    callback_url: HttpUrl | None = Field(
        default=None, description="Where to POST the signed completion event (done, failed or cancelled); see "
                                  "generator.callbacks.")


def create_job(store: Store, request: JobRequest, shop: Shop | None = None) -> tuple[Job, bool]:
    """Store a job and its chunks. Returns (job, created); an idempotency key seen before returns that job."""
    if request.idempotency_key:
        existing = find_job_by_key(store, request.idempotency_key)
        if existing is not None:
            return existing, False
    settings = get_settings()
    shop = shop or cached_shop(settings.shop_dir)
    c = request.campaign
    _check_references(c, shop)
    audience = select_audience(shop, c)
    erased = suppressed(store, audience)
    if erased and c.audience.user_ids is not None:
        raise PushgenError(f"audience.user_ids: {len(erased)} of these users were erased and may not be messaged "
                           "until they are restored")
    audience = [u for u in audience if u not in erased]
    if not audience:
        raise PushgenError("the audience is empty")
    later = request.schedule is not None and request.schedule > utcnow()
    try:
        job = db_jobs.create_job(store, kind="api", campaign_type=c.type, template=c.template or "auto",
                                 adapter=adapter_label(c), locale=c.locale, model=settings.generator_model,
                                 status="scheduled" if later else "queued",
                                 total=len(audience) * c.variants, idempotency_key=request.idempotency_key,
                                 params={"campaign": c.model_dump(mode="json"),
                                         "schedule": request.schedule.isoformat() if request.schedule else None,
                                         "shop": str(settings.shop_dir)})
    except Exception:  # a concurrent submit with the same key won the unique constraint
        if request.idempotency_key and (existing := find_job_by_key(store, request.idempotency_key)):
            return existing, False
        raise
    size = settings.chunk_size
    add_chunks(store, job.id, [audience[i:i + size] for i in range(0, len(audience), size)])
    return job, True


def _check_references(campaign: Campaign, shop: Shop) -> None:
    """Names the request refers to must exist, so a job that could only fail is refused, not stored."""
    if campaign.template and campaign.template not in default_library().names():
        raise PushgenError(f"template: no template {campaign.template!r}")
    adapters = campaign.adapter.values() if isinstance(campaign.adapter, dict) else [campaign.adapter]
    for name in filter(None, adapters):  # its weights may live only on the workers' machines: the name is checked
        check_name(name)
    unknown = sorted(set(campaign.item_ids or ()) - set(shop.items_by_id))
    if unknown:
        raise PushgenError(f"item_ids: unknown item ids {unknown[:5]}")


_RUNNERS: dict[str, CampaignRunner] = {}


def _runner(store: Store) -> CampaignRunner:
    """One runner (models loaded once) per process and database; built lazily inside the worker process."""
    if store.url not in _RUNNERS:
        # the model stack (torch) loads only where a chunk runs: the API and the queue import this module without it
        from generator.campaign.runner import CampaignRunner

        _RUNNERS[store.url] = CampaignRunner(store=store)
    return _RUNNERS[store.url]


def run_chunk(store: Store, job_id: str, index: int, runner: CampaignRunner | None = None) -> str:
    """Do one chunk of a job; returns the chunk's resulting status. Safe to call again for the same chunk."""
    job = get_job(store, job_id)
    if job is None:
        raise PushgenError(f"no job {job_id}")
    chunk = start_chunk(store, job_id, index)
    if chunk.status == "done" or job.status == "cancelled":
        return _settle(store, job_id, index, "done" if chunk.status == "done" else "cancelled")
    if not chunk.user_ids:  # every user of the chunk was erased: nothing to write, and never 'everyone'
        return _settle(store, job_id, index, "done")
    if chunk.deliveries > get_settings().max_deliveries:
        return _settle(store, job_id, index, "failed",
                       f"dead-lettered after {chunk.deliveries - 1} deliveries without finishing")
    if job.status == "queued":
        set_job_status(store, job_id, "running")
    params: dict[str, Any] = job.params
    shop = cached_shop(params.get("shop") or get_settings().shop_dir)
    campaign = Campaign.model_validate(params["campaign"])
    (runner or _runner(store)).run(shop, campaign, user_ids=chunk.user_ids, job_id=job_id, seed=index)

    apply_rule(store, job_id)
    return _settle(store, job_id, index, "done")


def fail_chunk(store: Store, job_id: str, index: int, error: str) -> str:
    """Mark a chunk failed for good (its retries are spent)."""
    return _settle(store, job_id, index, "failed", error)


def _settle(store: Store, job_id: str, index: int, status: str, error: str | None = None) -> str:
    finish_chunk(store, job_id, index, status, error)
    counts = chunk_counts(store, job_id)
    if not any(counts.get(s) for s in UNFINISHED_CHUNK):
        job = get_job(store, job_id)
        if job is not None and job.status not in FINAL:
            set_job_status(store, job_id, "failed" if counts.get("failed") == sum(counts.values()) else "done")
    return status


def cancel_job(store: Store, job_id: str) -> Job:
    job = get_job(store, job_id)
    if job is None:
        raise KeyError(job_id)
    if job.status not in FINAL:
        set_job_status(store, job_id, "cancelled")
    return get_job(store, job_id)


def job_status(store: Store, job_id: str) -> dict[str, Any] | None:
    """Status, progress and counts of a job (what ``GET /v1/jobs/{id}`` returns)."""
    job = get_job(store, job_id)
    if job is None:
        return None
    chunks = chunk_counts(store, job_id)
    total_chunks = sum(chunks.values())
    finished = sum(chunks.get(s, 0) for s in ("done", "failed", "cancelled"))
    return {"id": job.id, "status": job.status, "campaign_type": job.campaign_type,
            "created_at": job.created_at.isoformat(), "finished_at": job.finished_at.isoformat()
            if job.finished_at else None, "schedule": job.params.get("schedule"),
            "idempotency_key": job.idempotency_key,
            "progress": round(finished / total_chunks, 4) if total_chunks else 1.0,
            "chunks": chunks, "messages": count_messages(store, job_id), "expected_messages": job.total,
            "callback": callback_state(store, job_id)}


def run_job_inline(store: Store, job_id: str, runner: CampaignRunner | None = None,
                   indexes: list[int] | None = None) -> dict[str, Any] | None:
    """The embedded default (no broker): do every chunk (or those of ``indexes``) in this process, with the same
    delivery accounting."""
    max_deliveries = get_settings().max_deliveries
    if indexes is None:
        indexes = list(range(sum(chunk_counts(store, job_id).values())))
    for index in indexes:
        for attempt in range(max_deliveries):
            try:
                run_chunk(store, job_id, index, runner)
                break
            except Exception as exc:  # noqa: BLE001 - recorded on the chunk, then retried or dead-lettered
                log.exception("chunk %s/%s failed (attempt %d)", job_id, index, attempt + 1)
                if attempt == max_deliveries - 1:
                    fail_chunk(store, job_id, index, f"{type(exc).__name__}: {exc}")
    return job_status(store, job_id)


def dispatch(store: Store, job_id: str, enqueue: Enqueue | None = None) -> str:
    """Queue a job on the broker when one is configured (``enqueue`` sends it), else run it in this process.
    Returns how: ``scheduled`` (its time is still to come: :func:`recover` starts it then), ``queued``, ``unsent``
    (the broker could not be reached: the job is stored, and :func:`recover` sends it once the broker is back) or
    ``inline``."""
    job = get_job(store, job_id)
    if job is None:
        raise PushgenError(f"no job {job_id}")
    if job.status == "scheduled":
        return "scheduled"
    if get_settings().broker_url:
        try:
            _needs(enqueue)(job_id, None)
        except Exception:  # noqa: BLE001 - the database keeps the job; recovery sends it later
            log.warning("broker unreachable; job %s stays queued until the next recovery pass", job_id, exc_info=True)
            return "unsent"
        return "queued"
    run_job_inline(store, job_id)
    return "inline"


def _needs(enqueue: Enqueue | None) -> Enqueue:
    if enqueue is None:
        raise PushgenError("a broker is configured (PUSHGEN_BROKER_URL) but no enqueue was given")
    return enqueue


def send_chunks(store: Store, job_id: str, enqueue: Enqueue, indexes: list[int] | None = None) -> int:
    """Send chunks of a job to the broker as generation tasks (default: those never sent). Each is marked
    ``queued`` first, so a send that fails leaves it for :func:`recover`. Returns how many were sent."""
    if indexes is None:
        indexes = chunk_indexes(store, job_id, "pending")
    mark_chunks_queued(store, job_id, indexes)
    for index in indexes:
        enqueue(job_id, index)
    return len(indexes)


def recover(store: Store, *, enqueue: Enqueue | None = None, now: datetime | None = None,
            requeue_after: float | None = None) -> dict[str, int]:
    """The recovery pass (the database is the source of truth, the broker only carries work):

    - a scheduled job whose time has come is dispatched;
    - a chunk of an unfinished job that was sent (or created) but not started, or started but not finished,
      longer than ``requeue_after`` seconds ago (default: the setting) is sent again: its task was lost to a
      broker restart or a dead worker. If it was only slow, running it twice still writes one message per
      (user, variant).

    Chunks are claimed under row locks that skip rows another pass holds, so workers may all run this at once.
    With no broker configured the work runs in this process, else ``enqueue`` sends it. Returns counts:
    ``scheduled`` jobs started, lost ``chunks`` sent again."""
    settings = get_settings()
    now = now or utcnow()
    wait = settings.requeue_after if requeue_after is None else requeue_after
    lost = claim_lost_chunks(store, now - timedelta(seconds=wait), FINAL + ("scheduled",))
    started = start_due_jobs(store, now)  # {job: its chunks}, claimed as queued
    by_job: dict[str, list[int]] = {job_id: list(indexes) for job_id, indexes in started.items()}
    for job_id, index in lost:
        by_job.setdefault(job_id, []).append(index)
    for job_id, indexes in by_job.items():
        if settings.broker_url:
            send_chunks(store, job_id, _needs(enqueue), sorted(indexes))
        else:
            run_job_inline(store, job_id, indexes=sorted(indexes))
    drain(store)  # completion callbacks of jobs that ended, and retries that are due
    if started or lost:
        log.info("recovery: %d scheduled jobs started, %d lost chunks sent again", len(started), len(lost))
    return {"scheduled": len(started), "chunks": len(lost)}
