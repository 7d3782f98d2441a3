"""Recovery and scheduling in process (SQLite, no broker, a tiny random model): the database is the source of truth,
so a recovery pass finds chunks whose task was lost and scheduled jobs that are due, and runs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from generator import jobs
from generator.campaign.spec import Audience, Campaign
from generator.core.config import get_settings
from generator.db.chunks import mark_chunks_queued, start_chunk
from generator.db.jobs import get_job
from generator.db.messages import count_messages, list_messages
from generator.db.store import Store
from generator.db.tables import JobChunk
from generator.db.tokens import create_token

CAMPAIGN = {"name": "t", "type": "price_drop", "candidates": 1, "retries": 0, "audience": {"limit": 3}}


@pytest.fixture
def api(tiny_llama: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PUSHGEN_GENERATOR_MODEL", str(tiny_llama))
    monkeypatch.setenv("PUSHGEN_LOCALE_MODELS", "{}")
    monkeypatch.setenv("PUSHGEN_CHUNK_SIZE", "2")
    monkeypatch.setenv("PUSHGEN_MAX_NEW_TOKENS", "8")
    get_settings.cache_clear()
    jobs._RUNNERS.clear()
    from workers.api import create_app

    store = Store()
    client = TestClient(create_app(store))
    yield client, store, {"Authorization": f"Bearer {create_token(store, 'tool', 'campaign_tool')}"}
    jobs._RUNNERS.clear()


def _chunks(store: Store, job_id: str) -> dict[int, JobChunk]:
    with store.session() as s:
        return {c.index: c for c in s.query(JobChunk).filter(JobChunk.job_id == job_id)}


def test_a_future_schedule_holds_the_job_until_a_recovery_pass_after_its_time(api) -> None:  # type: ignore[no-untyped-def]
    client, store, auth = api
    at = datetime.now(UTC) + timedelta(hours=1)
    r = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "schedule": at.isoformat()}, headers=auth)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["status"] == "scheduled" and r.json()["schedule"] == at.isoformat()
    assert jobs.recover(store) == {"scheduled": 0, "chunks": 0}  # not due yet: nothing runs
    assert get_job(store, job_id).status == "scheduled" and count_messages(store, job_id) == 0
    assert {c.status for c in _chunks(store, job_id).values()} == {"pending"}
    cancelled = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "schedule": at.isoformat()}, headers=auth)
    assert client.post(f"/v1/jobs/{cancelled.json()['id']}/cancel", headers=auth).json()["status"] == "cancelled"

    assert jobs.recover(store, now=at + timedelta(seconds=1)) == {"scheduled": 1, "chunks": 0}  # not the cancelled
    status = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert status["status"] == "done" and status["messages"] == 3 and status["chunks"] == {"done": 2}
    assert count_messages(store, cancelled.json()["id"]) == 0
    assert jobs.recover(store, now=at + timedelta(seconds=2)) == {"scheduled": 0, "chunks": 0}  # once only

    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    r = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "schedule": past}, headers=auth)
    assert r.status_code == 202 and get_job(store, r.json()["id"]).status == "done"  # a past time: at once


@pytest.mark.parametrize("schedule", ["2026-12-01T09:00:00", "tomorrow", "2026-13-01T09:00:00Z", {"at": 1}])
def test_a_schedule_without_a_time_zone_or_not_a_time_is_refused(api, schedule) -> None:  # type: ignore[no-untyped-def]
    client, store, auth = api
    r = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "schedule": schedule}, headers=auth)
    assert r.status_code == 422 and "schedule" in str(r.json()["detail"])
    with store.session() as s:
        assert s.query(JobChunk).count() == 0


def test_recovery_runs_chunks_whose_task_was_lost_and_leaves_fresh_ones_alone(api) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = api
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(
        type="price_drop", candidates=1, retries=0, variants=2, audience=Audience(limit=6))))
    jobs.run_chunk(store, job.id, 0)
    mark_chunks_queued(store, job.id, [1])  # "sent to the broker", which then lost it (a restart)
    start_chunk(store, job.id, 2)  # a worker started chunk 2 and died: "running", never finished
    assert jobs.recover(store) == {"scheduled": 0, "chunks": 0}  # stamped just now: not lost yet
    later = datetime.now(UTC) + timedelta(seconds=get_settings().requeue_after + 1)
    assert jobs.recover(store, now=later) == {"scheduled": 0, "chunks": 2}
    chunks = _chunks(store, job.id)
    assert {c.status for c in chunks.values()} == {"done"}
    assert [chunks[i].deliveries for i in range(3)] == [1, 1, 2]
    assert get_job(store, job.id).status == "done"
    msgs = list_messages(store, job.id)
    assert len(msgs) == 12 and len({(m.user_id, m.variant) for m in msgs}) == 12
    assert jobs.recover(store, now=later + timedelta(hours=1)) == {"scheduled": 0, "chunks": 0}


def test_dispatch_without_a_reachable_broker_keeps_the_job_for_recovery(
        api, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = api
    from workers import tasks

    monkeypatch.setattr(tasks.start_job, "delay", _refuse)  # the broker is down
    monkeypatch.setenv("PUSHGEN_BROKER_URL", "redis://127.0.0.1:6379/0")
    get_settings.cache_clear()
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=2))))
    assert jobs.dispatch(store, job.id, tasks.enqueue) == "unsent"
    assert get_job(store, job.id).status == "queued" and set(_chunks(store, job.id)) == {0}


def _refuse(*_: object, **__: object) -> None:
    raise ConnectionRefusedError("broker down")
