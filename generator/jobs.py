"""Queued generation jobs: creation (idempotent by key), chunking, per-chunk work with delivery counting and a
dead-letter state, cancellation and completion. Plain functions over the store; the Celery tasks in
``workers.tasks`` and the in-process runner both call them.

Every chunk's writes are keyed by (job, user, variant), so a chunk delivered twice (a killed worker, a broker
restart) leaves exactly one message per user and variant.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from generator.campaign import Campaign, CampaignRunner, select_audience
from generator.config import get_settings
from generator.data import Shop, load_shop
from generator.errors import PushgenError
from generator.store import Job, Store

log = logging.getLogger(__name__)
FINAL = ("done", "failed", "cancelled")


class JobRequest(BaseModel):
    """What the campaign tool submits (``POST /v1/jobs``)."""

    campaign: Campaign
    idempotency_key: str | None = Field(default=None, max_length=200,
                                        description="Submitting the same key again returns the same job.")
    schedule: str | None = Field(default=None, description="ISO time to start at (informational for now).")


def create_job(store: Store, request: JobRequest, shop: Shop | None = None) -> tuple[Job, bool]:
    """Store a job and its chunks. Returns (job, created); an idempotency key seen before returns that job."""
    if request.idempotency_key:
        existing = store.find_job_by_key(request.idempotency_key)
        if existing is not None:
            return existing, False
    settings = get_settings()
    shop = shop or load_shop(settings.shop_dir)
    audience = select_audience(shop, request.campaign)
    if not audience:
        raise PushgenError("the audience is empty")
    c = request.campaign
    try:
        job = store.create_job(kind="api", campaign_type=c.type, template=c.template or "auto", adapter=c.adapter,
                               locale=c.locale, model=settings.generator_model, status="queued",
                               total=len(audience) * c.variants, idempotency_key=request.idempotency_key,
                               params={"campaign": c.model_dump(mode="json"), "schedule": request.schedule,
                                       "shop": str(settings.shop_dir)})
    except Exception:  # a concurrent submit with the same key won the unique constraint
        if request.idempotency_key and (existing := store.find_job_by_key(request.idempotency_key)):
            return existing, False
        raise
    size = settings.chunk_size
    store.add_chunks(job.id, [audience[i:i + size] for i in range(0, len(audience), size)])
    return job, True


_RUNNERS: dict[str, CampaignRunner] = {}
_SHOPS: dict[str, Shop] = {}


def _runner(store: Store) -> CampaignRunner:
    """One runner (models loaded once) per process and database; built lazily inside the worker process."""
    if store.url not in _RUNNERS:
        _RUNNERS[store.url] = CampaignRunner(store=store)
    return _RUNNERS[store.url]


def run_chunk(store: Store, job_id: str, index: int, runner: CampaignRunner | None = None) -> str:
    """Do one chunk of a job; returns the chunk's resulting status. Safe to call again for the same chunk."""
    job = store.get_job(job_id)
    if job is None:
        raise PushgenError(f"no job {job_id}")
    chunk = store.start_chunk(job_id, index)
    if chunk.status == "done" or job.status == "cancelled":
        return _settle(store, job_id, index, "done" if chunk.status == "done" else "cancelled")
    if chunk.deliveries > get_settings().max_deliveries:
        return _settle(store, job_id, index, "failed",
                       f"dead-lettered after {chunk.deliveries - 1} deliveries without finishing")
    if job.status == "queued":
        store.set_job_status(job_id, "running")
    params: dict[str, Any] = job.params
    shop_dir = params.get("shop") or str(get_settings().shop_dir)
    if shop_dir not in _SHOPS:
        _SHOPS[shop_dir] = load_shop(shop_dir)
    campaign = Campaign.model_validate(params["campaign"])
    (runner or _runner(store)).run(_SHOPS[shop_dir], campaign, user_ids=chunk.user_ids, job_id=job_id,
                                   show_progress=False, seed=index)
    from generator.review import apply_rule  # a reviewer's auto-approve rule also covers copy saved after it

    apply_rule(store, job_id)
    return _settle(store, job_id, index, "done")


def fail_chunk(store: Store, job_id: str, index: int, error: str) -> str:
    """Mark a chunk failed for good (its retries are spent)."""
    return _settle(store, job_id, index, "failed", error)


def _settle(store: Store, job_id: str, index: int, status: str, error: str | None = None) -> str:
    store.finish_chunk(job_id, index, status, error)
    counts = store.chunk_counts(job_id)
    if not counts.get("pending") and not counts.get("running"):
        job = store.get_job(job_id)
        if job is not None and job.status not in FINAL:
            store.set_job_status(job_id, "failed" if counts.get("failed") == sum(counts.values()) else "done")
    return status


def cancel_job(store: Store, job_id: str) -> Job:
    job = store.get_job(job_id)
    if job is None:
        raise KeyError(job_id)
    if job.status not in FINAL:
        store.set_job_status(job_id, "cancelled")
    return store.get_job(job_id)


def job_status(store: Store, job_id: str) -> dict[str, Any] | None:
    """Status, progress and counts of a job (what ``GET /v1/jobs/{id}`` returns)."""
    job = store.get_job(job_id)
    if job is None:
        return None
    chunks = store.chunk_counts(job_id)
    total_chunks = sum(chunks.values())
    finished = sum(chunks.get(s, 0) for s in ("done", "failed", "cancelled"))
    return {"id": job.id, "status": job.status, "campaign_type": job.campaign_type,
            "created_at": job.created_at.isoformat(), "finished_at": job.finished_at.isoformat()
            if job.finished_at else None, "idempotency_key": job.idempotency_key,
            "progress": round(finished / total_chunks, 4) if total_chunks else 1.0,
            "chunks": chunks, "messages": store.count_messages(job_id), "expected_messages": job.total}


def run_job_inline(store: Store, job_id: str, runner: CampaignRunner | None = None) -> dict[str, Any] | None:
    """The embedded default (no broker): do every chunk in this process, with the same delivery accounting."""
    max_deliveries = get_settings().max_deliveries
    for index in range(sum(store.chunk_counts(job_id).values())):
        for attempt in range(max_deliveries):
            try:
                run_chunk(store, job_id, index, runner)
                break
            except Exception as exc:  # noqa: BLE001 - recorded on the chunk, then retried or dead-lettered
                log.exception("chunk %s/%s failed (attempt %d)", job_id, index, attempt + 1)
                if attempt == max_deliveries - 1:
                    fail_chunk(store, job_id, index, f"{type(exc).__name__}: {exc}")
    return job_status(store, job_id)


def dispatch(store: Store, job_id: str) -> str:
    """Queue a job on the broker when one is configured, else run it in this process. Returns how."""
    if get_settings().broker_url:
        from workers.tasks import start_job

        start_job.delay(job_id)
        return "queued"
    run_job_inline(store, job_id)
    return "inline"
