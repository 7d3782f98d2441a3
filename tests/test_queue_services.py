"""Queued jobs on the real services (PostgreSQL, Redis, RabbitMQ on 127.0.0.1) with real worker subprocesses and a
tiny random model: a broker restart in the middle of a job, a job over RabbitMQ with a scheduled one beside it,
and 1,000 jobs submitted at once over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from procs import wait_for

from generator import jobs
from generator.campaign.spec import Audience, Campaign
from generator.core.config import get_settings
from generator.db.chunks import chunk_counts, chunk_indexes
from generator.db.jobs import get_job
from generator.db.messages import list_messages
from generator.db.store import Store
from generator.db.tables import Job, Message
from generator.db.tokens import create_token

REDIS = "redis://127.0.0.1:6379"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"  # + the virtual host
# how .ci/run starts Redis: nothing is kept on disk, so a restart loses every queued message
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


@pytest.fixture
def models(tiny_llama: Path, tiny_encoder: Path) -> tuple[Path, Path]:
    return tiny_llama, tiny_encoder


def _configure(monkeypatch: pytest.MonkeyPatch, pg_url: str, broker: str, models: tuple[Path, Path],
               **extra: str) -> dict[str, str]:
    """The same settings for this process and its workers; returns the workers' environment."""
    env = {"PUSHGEN_DATABASE_URL": pg_url, "PUSHGEN_BROKER_URL": broker, "PUSHGEN_GENERATOR_MODEL": str(models[0]),
           "PUSHGEN_SCORER_MODEL": str(models[1]),
           "PUSHGEN_LOCALE_MODELS": "{}", "PUSHGEN_MAX_NEW_TOKENS": "4", "PUSHGEN_RECOVER_EVERY": "1",
           "OMP_NUM_THREADS": "1", **extra}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    return {**os.environ, **env}


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``pushgen ARGS`` in its own session; its log goes to PUSHGEN_TEST_LOGS/<pid>.log when that is set."""
    logs = os.environ.get("PUSHGEN_TEST_LOGS")
    out = open(Path(logs) / f"{args[0]}-{time.monotonic_ns()}.log", "wb") if logs else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "generator", "-v", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def _running(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@contextmanager
def _redis_left_running() -> Iterator[None]:
    """Whatever happens inside, Redis is running again afterwards (the other tests need it)."""
    try:
        yield
    finally:
        if not _redis_up():
            subprocess.run(REDIS_START, check=False)
            wait_for(_redis_up, timeout=30, every=0.2)


def _messages(store: Store, job_id: str) -> list[Message]:
    return list_messages(store, job_id)


def test_broker_restart_mid_job_then_the_job_completes_with_one_message_per_user_and_variant(
        pg_url: str, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("redis-server") is None or not _redis_up():
        pytest.skip("needs a Redis on 127.0.0.1:6379 that this test may restart")
    db = 1 + uuid.uuid4().int % 15
    redis.Redis.from_url(f"{REDIS}/{db}").flushdb()
    env = _configure(monkeypatch, pg_url, f"{REDIS}/{db}", models, PUSHGEN_CHUNK_SIZE="1",
                     PUSHGEN_REQUEUE_AFTER="8")
    store = Store(pg_url)
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(
        type="price_drop", candidates=1, retries=0, variants=2, audience=Audience(limit=16))))
    from workers.tasks import enqueue

    assert jobs.dispatch(store, job.id, enqueue) == "queued"
    worker = _spawn(env, "worker", "--queues", "cpu,gpu")
    with _redis_left_running(), _running(worker):
        wait_for(lambda: chunk_counts(store, job.id).get("done", 0) >= 2, timeout=180, every=0.05)
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], check=False,
                       capture_output=True)
        wait_for(lambda: not _redis_up(), timeout=30, every=0.1)
        at_restart = chunk_counts(store, job.id)
        subprocess.run(REDIS_START, check=True)
        wait_for(_redis_up, timeout=30, every=0.1)
        assert at_restart.get("done", 0) < 16  # in the middle of the job: chunks were still in the broker ...
        assert redis.Redis.from_url(f"{REDIS}/{db}").llen("gpu") == 0  # ... and the restart lost them
        wait_for(lambda: get_job(store, job.id).status in jobs.FINAL, timeout=180)
        assert worker.poll() is None  # the same worker reconnected and carried on
    assert get_job(store, job.id).status == "done"
    assert chunk_counts(store, job.id) == {"done": 16}
    msgs = _messages(store, job.id)
    assert len(msgs) == 32 and len({(m.user_id, m.variant) for m in msgs}) == 32
    store.engine.dispose()


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


def _rabbitmqctl(*args: str) -> bool:
    try:
        return subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A fresh RabbitMQ virtual host, deleted afterwards (or, where rabbitmqctl may not be used, the default one
    with its queues purged: RabbitMQ keeps durable queues, and what is in them, between runs)."""
    if not _rabbitmq_up():
        pytest.skip("needs RabbitMQ on 127.0.0.1:5672")
    vhost = f"pushgen_test_{uuid.uuid4().hex[:12]}"
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
        try:
            yield f"{RABBITMQ}{vhost}"
        finally:
            _rabbitmqctl("delete_vhost", vhost)
        return
    from kombu import Connection, Exchange, Queue

    with Connection(RABBITMQ) as conn:
        for name in ("cpu", "gpu"):
            Queue(name, Exchange(name, type="direct"), routing_key=name)(conn.default_channel).declare()
            conn.default_channel.queue_purge(name)
    yield RABBITMQ


def test_a_job_over_rabbitmq_completes_and_a_scheduled_one_starts_at_its_time(
        pg_url: str, rabbitmq_url: str, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    env = _configure(monkeypatch, pg_url, rabbitmq_url, models, PUSHGEN_CHUNK_SIZE="2")
    store = Store(pg_url)
    now_job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(
        type="price_drop", candidates=1, retries=0, audience=Audience(limit=4))))
    at = datetime.now(UTC) + timedelta(seconds=8)
    later_job, _ = jobs.create_job(store, jobs.JobRequest(schedule=at, campaign=Campaign(
        type="price_drop", candidates=1, retries=0, audience=Audience(user_ids=["U010", "U011"]))))
    from workers.tasks import enqueue

    assert jobs.dispatch(store, now_job.id, enqueue) == "queued"
    assert jobs.dispatch(store, later_job.id, enqueue) == "scheduled"
    assert get_job(store, later_job.id).status == "scheduled"
    worker = _spawn(env, "worker", "--queues", "cpu,gpu")
    with _running(worker):
        try:
            wait_for(lambda: all(get_job(store, j).status in jobs.FINAL for j in (now_job.id, later_job.id)),
                     timeout=90)
        except TimeoutError:
            states = {j: (get_job(store, j).status, chunk_indexes(store, j, "queued"),
                          chunk_indexes(store, j, "pending")) for j in (now_job.id, later_job.id)}
            raise AssertionError(f"jobs not finished: {states}") from None
    assert get_job(store, now_job.id).status == get_job(store, later_job.id).status == "done"
    first = _messages(store, now_job.id)
    assert len(first) == 4 and len({m.user_id for m in first}) == 4
    scheduled = _messages(store, later_job.id)
    assert sorted(m.user_id for m in scheduled) == ["U010", "U011"]
    assert all(m.created_at >= at for m in scheduled)  # not one written before its time
    store.engine.dispose()


def test_a_worker_checks_a_large_chunk_in_forked_processes(
        pg_url: str, models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = tmp_path / "shop"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "shop", shop)
    with (shop / "users.csv").open("a") as f:  # 100 users more: one chunk of 200, 100 per process
        f.writelines(f"U{k:03d},en_US,America/New_York,true\n" for k in range(101, 201))
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("PUSHGEN_TEST_LOGS", str(logs))
    env = _configure(monkeypatch, pg_url, f"{REDIS}/5", models, PUSHGEN_CHUNK_SIZE="200",
                     PUSHGEN_CHECK_PROCESSES="2", PUSHGEN_SHOP_DIR=str(shop))
    redis.Redis.from_url(f"{REDIS}/5").flushdb()
    store = Store(pg_url)
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", candidates=2, retries=0)))
    from workers.tasks import enqueue

    assert jobs.dispatch(store, job.id, enqueue) == "queued"
    with _running(_spawn(env, "worker", "--queues", "cpu,gpu")):
        wait_for(lambda: get_job(store, job.id).status in jobs.FINAL, timeout=120)
    assert get_job(store, job.id).status == "done"
    messages = _messages(store, job.id)
    assert len({m.user_id for m in messages}) == len(messages) >= 190  # all but users with nothing to rank
    for m in messages:  # every chosen copy checked; candidates checked in a forked process came back
        assert m.status in ("passed", "fallback") and m.guardrails and all(g["passed"] for g in m.guardrails)
        assert all(c["checked"] or c["reasons"] == [] for c in m.candidates)
        assert any(c["checked"] for c in m.candidates)
    log = "".join(p.read_text() for p in logs.iterdir())
    assert "items in 2 processes" in log and "Traceback" not in log
    store.engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_thousand_jobs_submitted_at_once_over_http_all_complete(
        pg_url: str, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    from sqlalchemy import func, select

    n = 1000
    db = 1 + uuid.uuid4().int % 15
    redis.Redis.from_url(f"{REDIS}/{db}").flushdb()
    env = _configure(monkeypatch, pg_url, f"{REDIS}/{db}", models, PUSHGEN_CHUNK_SIZE="1")
    store = Store(pg_url)
    token = create_token(store, "bulk", "campaign_tool")
    port = _free_port()
    api = _spawn(env, "serve", "--port", str(port))
    workers = [_spawn(env, "worker", "--queues", "cpu,gpu") for _ in range(2)]
    url = f"http://127.0.0.1:{port}"
    with _running(api, *workers), httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                               timeout=120) as http:
        wait_for(lambda: _answers(http), timeout=60, every=0.2)

        def submit(i: int) -> httpx.Response:
            campaign = {"name": f"bulk-{i}", "type": "price_drop", "candidates": 1, "retries": 0,
                        "audience": {"user_ids": [f"U{1 + i % 100:03d}"]}}
            return http.post("/v1/jobs", json={"campaign": campaign, "idempotency_key": f"bulk-{i}"})

        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(submit, range(n)))
        submitted = time.perf_counter() - t0
        assert [r.status_code for r in answers] == [202] * n
        ids = {r.json()["id"] for r in answers}
        assert len(ids) == n

        def finished() -> bool:
            with store.session() as s:
                return s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(jobs.FINAL))) == n

        wait_for(finished, timeout=600, every=1.0)
        completed = time.perf_counter() - t0
    with store.session() as s:
        statuses = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        per_job = s.execute(select(Message.job_id, func.count()).group_by(Message.job_id)).all()
    assert statuses == {"done": n}, _chunk_errors(store)
    assert len(per_job) == n and {c for _, c in per_job} == {1} and {j for j, _ in per_job} == ids
    print(f"\n{n} jobs: submitted over HTTP in {submitted:.1f} s ({n / submitted:.0f} jobs/s), "
          f"all complete {completed:.1f} s after the first submit ({n / completed:.1f} jobs/s, 2 workers)")
    store.engine.dispose()


def _chunk_errors(store: Store) -> list[str]:
    from generator.db.tables import JobChunk

    with store.session() as s:
        return sorted({c.error or "" for c in s.query(JobChunk).filter(JobChunk.status != "done").limit(50)})[:5]


def _answers(http) -> bool:  # type: ignore[no-untyped-def]
    import httpx

    try:
        return http.get("/openapi.json").status_code == 200
    except httpx.TransportError:
        return False


def test_the_app_follows_a_broker_change_in_process(rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After sending on one broker, a process whose settings name another sends there, queues declared anew."""
    from kombu import Connection

    from workers.celery_app import follow_settings
    from workers.tasks import start_job

    monkeypatch.setenv("PUSHGEN_BROKER_URL", f"{REDIS}/14")
    get_settings.cache_clear()
    follow_settings()
    start_job.delay("on-redis")
    redis.Redis.from_url(f"{REDIS}/14").flushdb()
    monkeypatch.setenv("PUSHGEN_BROKER_URL", rabbitmq_url)
    get_settings.cache_clear()
    assert follow_settings().conf.broker_url == rabbitmq_url
    start_job.delay("on-rabbitmq")
    with Connection(rabbitmq_url) as conn:
        _, waiting, _ = conn.default_channel.queue_declare("cpu", passive=True)
    assert waiting == 1
