"""Benchmark the queued service against the library, in one run: end-to-end messages/s of the same campaign for the
same users, two ways.

  library   ``generator.jobs`` called directly in this process: create the job, run its chunks inline
  service   over HTTP to ``pushgen serve`` (uvicorn), queued on Redis, worked by a ``pushgen worker`` process,
            stored in PostgreSQL; timed from the POST until ``GET /v1/jobs/{id}`` says done

Each way gets its own fresh PostgreSQL database and is warmed up first with a one-user job (models loaded, item
embeddings cached), so what is timed is the steady state a long-running worker is in. The ratio of the two is the
queue's overhead: HTTP, broker round trips, per-chunk bookkeeping, polling.

  python scripts/bench_queue.py --users 32 --json out/bench_queue.json
  python scripts/bench_queue.py --model /tmp/tiny-llama --scorer /tmp/tiny-encoder --users 200 --chunk-size 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``admin_url``'s, dropped afterwards."""
    from sqlalchemy import create_engine

    name = f"bench_queue_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def configure(env: dict[str, str]) -> None:
    from generator import jobs
    from generator.core.config import get_settings

    os.environ.update(env)
    get_settings.cache_clear()
    jobs._RUNNERS.clear()


def campaign(args: argparse.Namespace, users: int) -> dict:  # type: ignore[type-arg]
    return {"name": "bench-queue", "type": "price_drop", "candidates": args.candidates, "retries": 0,
            "variants": args.variants, "audience": {"limit": users}}


def run_library(args: argparse.Namespace, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    """The job made and run by the library in this process."""
    from generator import jobs
    from generator.db.store import Store

    configure(env)
    store = Store()
    warm, _ = jobs.create_job(store, jobs.JobRequest.model_validate({"campaign": campaign(args, 1)}))
    jobs.run_job_inline(store, warm.id)
    t0 = time.perf_counter()
    job, _ = jobs.create_job(store, jobs.JobRequest.model_validate({"campaign": campaign(args, args.users)}))
    status = jobs.run_job_inline(store, job.id)
    seconds = time.perf_counter() - t0
    store.engine.dispose()
    return {"way": "library", "status": status["status"], "messages": status["messages"], "seconds": seconds}


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "generator", *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_service(args: argparse.Namespace, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    """The job submitted over HTTP, queued on the broker, worked by a separate worker process."""
    import httpx
    import redis

    from generator.db.store import Store
    from generator.db.tokens import create_token

    configure(env)
    redis.Redis.from_url(env["PUSHGEN_BROKER_URL"]).flushdb()
    token = create_token(Store(), "bench", "campaign_tool")
    port = free_port()
    procs = [spawn(env, "serve", "--port", str(port)), spawn(env, "worker", "--queues", "cpu,gpu")]
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                            timeout=60)
        deadline = time.monotonic() + 120
        while True:
            try:
                http.get("/openapi.json").raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def submit_and_wait(users: int) -> tuple[dict, float, float]:  # type: ignore[type-arg]
            t0 = time.perf_counter()
            r = http.post("/v1/jobs", json={"campaign": campaign(args, users)})
            r.raise_for_status()
            submitted = time.perf_counter() - t0
            while (status := http.get(f"/v1/jobs/{r.json()['id']}").json())["status"] not in ("done", "failed",
                                                                                              "cancelled"):
                time.sleep(args.poll)
            return status, submitted, time.perf_counter() - t0

        submit_and_wait(1)  # warm-up: the worker loads its models and the item embeddings are cached
        status, submitted, seconds = submit_and_wait(args.users)
        http.close()
    finally:
        stop(*procs)
    return {"way": "service", "status": status["status"], "messages": status["messages"], "seconds": seconds,
            "submit_seconds": submitted}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="generator: registry name, HF id or folder")
    ap.add_argument("--scorer", default="minilm", help="scorer encoder: registry name, HF id or folder")
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--variants", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=1)
    ap.add_argument("--chunk-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                    help="a PostgreSQL database to connect to; fresh databases are made beside it")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="broker; this database is emptied")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between status requests")
    ap.add_argument("--json", type=Path, default=Path("out/bench_queue.json"))
    args = ap.parse_args(argv)

    env = {"PUSHGEN_GENERATOR_MODEL": args.model, "PUSHGEN_SCORER_MODEL": args.scorer,
           "PUSHGEN_CHUNK_SIZE": str(args.chunk_size), "PUSHGEN_MAX_NEW_TOKENS": str(args.new_tokens),
           "PUSHGEN_LOCALE_MODELS": os.environ.get("PUSHGEN_LOCALE_MODELS", "{}")}
    console = Console()
    results = []
    with fresh_database(args.pg) as db:
        results.append(run_library(args, {**env, "PUSHGEN_DATABASE_URL": db}))
        console.print(results[-1])
    with fresh_database(args.pg) as db:
        results.append(run_service(args, {**env, "PUSHGEN_DATABASE_URL": db, "PUSHGEN_BROKER_URL": args.redis}))
        console.print(results[-1])
    library = results[0]["messages"] / results[0]["seconds"]
    for r in results:
        r["seconds"] = round(r["seconds"], 3)
        r["messages_per_s"] = round(r["messages"] / r["seconds"], 3)
        r["x_library"] = round(r["messages_per_s"] / library, 3)
    overhead = round(library / results[1]["messages_per_s"], 3)

    table = Table(title=f"queued jobs, {args.users} users × {args.variants} variants, chunks of {args.chunk_size}, "
                        f"{args.model}")
    for col in ("way", "status", "messages", "seconds", "messages/s", "× library"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["way"], r["status"], str(r["messages"]), f"{r['seconds']:.2f}", f"{r['messages_per_s']:.2f}",
                      f"{r['x_library']:.2f}")
    console.print(table)
    console.print(f"overhead ratio (library messages/s ÷ service messages/s): {overhead:.2f}")
    import torch

    meta = {"model": args.model, "scorer": args.scorer, "users": args.users, "variants": args.variants,
            "candidates": args.candidates, "chunk_size": args.chunk_size, "new_tokens": args.new_tokens,
            "broker": args.redis.split("@")[-1], "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__, "load_average": os.getloadavg()[0]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results, "overhead_ratio": overhead}, indent=2),
                         encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0 if all(r["status"] == "done" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
