"""Real Celery worker processes on the real Redis and PostgreSQL: a worker killed with SIGKILL in the middle of
a chunk loses nothing and duplicates nothing once a worker runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis
from procs import wait_for

from generator import jobs
from generator.campaign.spec import Audience, Campaign
from generator.core.config import get_settings
from generator.db.jobs import get_job
from generator.db.messages import list_messages
from generator.db.store import Store
from generator.db.tables import JobChunk

REDIS = "redis://127.0.0.1:6379"


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "generator", "worker", "--queues", "cpu,gpu"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.slow
def test_sigkill_mid_chunk_then_restart_gives_exactly_one_message_per_user(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = 1 + uuid.uuid4().int % 15
    redis.Redis.from_url(f"{REDIS}/{db}").flushdb()
    env = {"PUSHGEN_DATABASE_URL": pg_url, "PUSHGEN_BROKER_URL": f"{REDIS}/{db}", "PUSHGEN_LOCALE_MODELS": "{}",
           "PUSHGEN_CHUNK_SIZE": "2", "PUSHGEN_VISIBILITY_TIMEOUT": "10", "PUSHGEN_MAX_NEW_TOKENS": "24"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    store = Store(pg_url)
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(
        type="price_drop", candidates=1, retries=0, variants=2, audience=Audience(limit=4))))
    from workers.celery_app import make_app

    make_app().send_task("workers.tasks.start_job", args=[job.id], queue="cpu")
    full_env = {**os.environ, **env}
    first = _worker(full_env)
    try:
        running = wait_for(lambda: [c for c in _chunks(store, job.id) if c.status == "running"], timeout=300)
        time.sleep(1.0)  # well inside the chunk: the real SmolLM2 takes seconds per chunk
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        killed = running[0].index
        assert get_job(store, job.id).status != "done"
        second = _worker(full_env)
        try:
            wait_for(lambda: get_job(store, job.id).status == "done", timeout=600, every=1.0)
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    chunks = {c.index: c for c in _chunks(store, job.id)}
    assert all(c.status == "done" for c in chunks.values())
    assert chunks[killed].deliveries >= 2  # it really was redelivered after the kill
    msgs = list_messages(store, job.id)
    assert len(msgs) == 4 * 2 and len({(m.user_id, m.variant) for m in msgs}) == 8
    store.engine.dispose()


def _chunks(store: Store, job_id: str) -> list[JobChunk]:
    with store.session() as s:
        return list(s.query(JobChunk).filter(JobChunk.job_id == job_id))
