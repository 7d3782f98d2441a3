"""Benchmark scale-out: one queued job worked by one Celery worker, then by two, on the real broker and store.

Each worker is a ``pushgen worker``-like process (``workers.celery_app``, queues ``cpu,gpu``, solo pool) whose
campaign runner writes with the null model (:mod:`generator.write.null_lm`) and ranks with a stand-in encoder (a fixed
vector per text), so what is timed is the queue, the store and the host work around the model. The job is made by
``generator.jobs.create_job`` and sent by ``jobs.dispatch`` (Redis), chunks are written to a fresh PostgreSQL
database, and the clock runs from the dispatch until the job's status is ``done``. Every worker loads the shop and
its models before it takes work. Each chunk's time in the worker is logged, split into the runner's own work and
the rest of the task (chunk bookkeeping in the database, the review rule), with the task's CPU seconds; the time
between tasks (broker round trips, waiting) is what is left of the workers' wall-clock time. On a machine whose
cores are busy with other work, two workers share what is free: a chunk's CPU seconds staying the same while its
wall-clock time grows says the limit is the cores, not the queue.

Virtual machines' speed drifts by a quarter within minutes (their neighbours' load), so each worker count runs
``--repeat`` times, the counts in turn (1, 2, 2, 1, 1, 2), and each count's median run is reported. Two processes of a
fixed workload (:mod:`scripts.bench_machine`) are timed first: the most two workers can gain on this machine.

  python scripts/bench_scaleout.py --users 8000 --chunk-size 400 --json docs/bench/cpu-bench_scaleout.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from scripts.bench_campaign import HashEncoder, fresh_pg, synthetic_shop  # noqa: E402
from scripts.bench_machine import describe, machine  # noqa: E402

CAMPAIGN = {"name": "bench-scaleout", "type": "auto", "candidates": 3, "retries": 0}


def write_shop(shop: Any, folder: Path) -> None:
    from generator.core.data import write_table

    for name in ("items", "users", "events", "reviews"):
        write_table(folder / f"{name}.csv", getattr(shop, name))


# ------------------------------------------------------------------------------------------------- the worker

def serve_worker(name: str, timings: Path, ready: Path) -> None:
    """A Celery worker of this process whose runner has the null model; logs each chunk's times to ``timings``."""
    import torch
    from celery.signals import worker_ready

    from generator import jobs
    from generator.campaign.runner import CampaignRunner
    from generator.campaign.spec import Campaign
    from generator.core import data
    from generator.core.config import get_settings
    from generator.db.store import Store
    from generator.rank.scorer import Scorer
    from generator.write.generate import Generator
    from generator.write.null_lm import null_lm
    from workers.celery_app import app

    torch.set_num_threads(1)
    settings = get_settings()
    shop = data.cached_shop(settings.shop_dir)
    model, tok = null_lm(length=40)
    gen = Generator(model=model, tokenizer=tok, batch_size=settings.chunk_size, max_new_tokens=48)
    scorer = Scorer(HashEncoder(), "hash-encoder")
    CampaignRunner(generator=gen, scorer=scorer, ctr=False).run(  # warm-up, nothing stored
        shop, Campaign.model_validate(CAMPAIGN), user_ids=[u.user_id for u in shop.users[:32]])
    jobs._RUNNERS[settings.database_url] = CampaignRunner(generator=gen, scorer=scorer, ctr=False,
                                                         store=Store(settings.database_url))
    run_chunk, run = jobs.run_chunk, CampaignRunner.run
    inner: dict[str, float] = {}

    def timed_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return run(self, *args, **kwargs)
        finally:
            inner["run"] = time.perf_counter() - t0

    def timed_chunk(store: Any, job_id: str, index: int, runner: Any = None) -> str:
        inner.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        status = run_chunk(store, job_id, index, runner)
        with timings.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"worker": name, "chunk": index, "start": t0, "task_s": time.perf_counter() - t0,
                                "task_cpu_s": time.process_time() - c0, "run_s": inner.get("run", 0.0),
                                "status": status}) + "\n")
        return status

    jobs.run_chunk, CampaignRunner.run = timed_chunk, timed_run  # type: ignore[method-assign]
    worker_ready.connect(lambda **_: ready.write_text("ready"), weak=False)
    app.worker_main(["worker", "-Q", "cpu,gpu", "--pool", "solo", "--concurrency", "1", "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h"])


# ------------------------------------------------------------------------------------------------- one run

def run_job(args: argparse.Namespace, shop: Any, shop_dir: Path, workers: int, tmp: Path,
            console: Console) -> dict[str, Any]:
    import redis

    from generator import jobs
    from generator.core.config import get_settings
    from generator.db.store import Store

    url, drop = fresh_pg(args.pg)
    redis.Redis.from_url(args.broker).flushdb()
    env = {"PUSHGEN_DATABASE_URL": url, "PUSHGEN_BROKER_URL": args.broker, "PUSHGEN_SHOP_DIR": str(shop_dir),
           "PUSHGEN_CHUNK_SIZE": str(args.chunk_size), "PUSHGEN_RECOVER_EVERY": "0",
           "PUSHGEN_CTR_DIR": str(tmp / "no-ctr"), "PUSHGEN_LOCALE_MODELS": "{}", "PYTHONUNBUFFERED": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{workers}-", dir=tmp))  # this run's timings, logs, ready files
    timings = run_dir / "timings.jsonl"
    procs = []
    try:
        store = Store(url)  # migrates the fresh database before any worker connects
        for w in range(workers):
            ready = run_dir / f"ready-{w}"
            with (run_dir / f"worker-{w}.log").open("w") as log:
                procs.append((subprocess.Popen([sys.executable, __file__, "--serve-worker", f"bench{w}", str(timings),
                                                str(ready)], env={**os.environ, **env}, start_new_session=True,
                                               stdout=subprocess.DEVNULL, stderr=log), ready))
        deadline = time.monotonic() + 600
        while not all(r.exists() for _, r in procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in procs):
                raise SystemExit(f"a worker did not start; see {run_dir}/worker-*.log")
            time.sleep(0.5)
        os.environ.update(env)
        get_settings.cache_clear()
        job, _ = jobs.create_job(store, jobs.JobRequest.model_validate({"campaign": CAMPAIGN}), shop=shop)
        t0 = time.perf_counter()
        from workers.tasks import enqueue  # after the settings name the bench broker

        how = jobs.dispatch(store, job.id, enqueue)
        assert how == "queued", how
        while (status := jobs.job_status(store, job.id))["status"] not in jobs.FINAL:
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        console.print(f"{workers} worker(s): {status['messages']} messages in {seconds:.1f} s ({status['status']})")
        store.engine.dispose()
    finally:
        for p, _ in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        drop()
    chunks = [json.loads(line) for line in timings.read_text(encoding="utf-8").splitlines()]
    busy = sum(c["task_s"] for c in chunks)
    return {"workers": workers, "status": status["status"], "messages": status["messages"], "seconds": seconds,
            "chunks": len(chunks), "chunks_per_worker": {w: sum(c["worker"] == w for c in chunks)
                                                         for w in sorted({c["worker"] for c in chunks})},
            "chunk_task_s": statistics.mean(c["task_s"] for c in chunks),
            "chunk_task_cpu_s": statistics.mean(c["task_cpu_s"] for c in chunks),
            "chunk_run_s": statistics.mean(c["run_s"] for c in chunks),
            "chunk_bookkeeping_s": statistics.mean(c["task_s"] - c["run_s"] for c in chunks),
            "between_tasks_s_per_chunk": max(0.0, workers * seconds - busy) / len(chunks)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-worker"]:
        serve_worker(argv[1], Path(argv[2]), Path(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=8000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--chunk-size", type=int, default=400, help="users per chunk (one queued task each)")
    ap.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per worker count, in turn; each count's median run is reported (all in the JSON)")
    ap.add_argument("--broker", default="redis://127.0.0.1:6379/14", help="Redis broker; this database is emptied")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                    help="a PostgreSQL database; a fresh one is made beside it per run")
    ap.add_argument("--json", type=Path, default=Path("out/bench_scaleout.json"))
    args = ap.parse_args(argv)

    console = Console()
    host = machine()  # what two processes can gain over one here, measured before the workers start
    console.print(describe(host))
    shop = synthetic_shop(args.users, args.items, Path(__file__).resolve().parent.parent / "examples" / "shop")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp_dir:
        tmp = Path(tmp_dir)
        shop_dir = tmp / "shop"
        shop_dir.mkdir()
        write_shop(shop, shop_dir)
        (tmp / "no-ctr").mkdir()
        counts = [int(w) for w in args.workers.split(",")]
        runs: dict[int, list[dict[str, Any]]] = {w: [] for w in counts}
        for k in range(args.repeat):  # in turn, the order reversed every other round: a machine whose speed drifts
            for workers in counts if k % 2 == 0 else counts[::-1]:  # favours no worker count
                runs[workers].append(run_job(args, shop, shop_dir, workers, tmp, console))
        for workers in counts:  # each count's median run (of an even number, the faster middle one)
            done = sorted(runs[workers], key=lambda r: r["seconds"])
            results.append({**done[(len(done) - 1) // 2], "runs_seconds": [round(r["seconds"], 3) for r in
                                                                            runs[workers]]})
    one = next((r for r in results if r["workers"] == 1), results[0])
    for r in results:
        r["messages_per_s"] = round(r["messages"] / r["seconds"], 1)
        r["speedup"] = round(one["seconds"] / r["seconds"], 2)
        for k in ("seconds", "chunk_task_s", "chunk_task_cpu_s", "chunk_run_s", "chunk_bookkeeping_s",
                  "between_tasks_s_per_chunk"):
            r[k] = round(r[k], 3)
    table = Table(title=f"one job, {args.users} users ({one['messages']} messages), chunks of {args.chunk_size}, "
                        f"null model, Redis + PostgreSQL; the median of {args.repeat} runs each")
    for col in ("workers", "s", "msg/s", "speed-up", "chunks", "task s/chunk", "task CPU s", "runner s",
                "bookkeeping s", "between s"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(str(r["workers"]), f"{r['seconds']:.1f}", f"{r['messages_per_s']:,.0f}", f"{r['speedup']:.2f}",
                      str(r["chunks"]), f"{r['chunk_task_s']:.2f}", f"{r['chunk_task_cpu_s']:.2f}",
                      f"{r['chunk_run_s']:.2f}",
                      f"{r['chunk_bookkeeping_s']:.3f}", f"{r['between_tasks_s_per_chunk']:.3f}")
    console.print(table)
    console.print(f"two processes of the reference workload ran at {host['pair_speedup']:.2f}x one on this machine "
                  "(scripts/bench_machine.py): the most two workers can gain here")
    meta = {"users": args.users, "items": args.items, "chunk_size": args.chunk_size, "repeat": args.repeat,
            "broker": "redis", "store": "postgresql", "machine": host}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2), encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0 if all(r["status"] == "done" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
