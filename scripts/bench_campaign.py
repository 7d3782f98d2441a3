"""Benchmark a whole campaign at scale, stage by stage: messages/s of every stage around the LM, on a synthetic shop.

The campaign runs through pushgen's own path (``CampaignRunner.run``, chunk by chunk as a worker does), with the
null model (:mod:`generator.write.null_lm`) writing the copy, so what is timed is everything a GPU worker's host must do
besides the model. Each stage is timed where the runner calls it (the functions are wrapped for the run):

  audience      ``select_audience`` (the whole shop once, as a job is created, then each chunk's users)
  ranking       ``Scorer.rank`` with a stand-in encoder (a fixed vector per text) for the whole run; MiniLM's
                encoding of the user profile texts on CPU is timed apart, on ``--minilm-users`` users
  rendering     the template, the chat prompt (``prompt_parts``), the fallback copy, the review lookup
  generation    ``Generator.generate``: the null model's host path, 3 candidates per user
  guardrails    ``CampaignRunner.check``: each user's candidates checked in click-through order until one passes,
                each up to its first failing check, in ``--check-processes`` processes (forked per round: their CPU
                time is counted here), and the fallbacks rendered and checked in full
  click-through ``CtrModel.score`` of candidates' texts with a stand-in encoder; MiniLM on ``--minilm-users``
  choosing      ``choose`` (passing first, no near-duplicate of copy already chosen, predicted click-through)
  store         the message records and ``generator.db.messages.save_messages`` into SQLite (the run) and
                PostgreSQL (the same records written again, into a fresh database)
  other         the rest of the runner's loop (per-user bookkeeping)

The null model writes the same words for every user, naming no item: with ``--copy distinct`` (the default) each
user's candidates are instead three texts written for that user about the user's featured item, with its facts in the
user's locale (:func:`distinct_copy`: no text repeats in the run, and some fail a check: a superlative, urgency, a
vague discount), so the guardrails and what follows them handle copy of a real model's shape and variety and no
verdict kept for one user's copy answers for another's; ``--copy null`` keeps the null model's words (every user
then gets the fallback). The campaign has ``retries: 0`` (a retry would run the same candidates again). The runner
scores every candidate's click-through and checks them in that order, up to the first that passes (each candidate up
to its first failing check). Writes a table and JSON.

  python scripts/bench_campaign.py --users 100000 --json docs/bench/cpu-bench_campaign.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# BLAS in one thread, as torch (set_num_threads(1) below): numpy's OpenBLAS otherwise keeps a second thread spinning
# after each product (the click-through scoring's), whose CPU time landed in the next stage's (0.5 s of 4 in the
# guardrails at 20,000 users), though it cost that stage no wall time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from scripts.bench_machine import describe, machine  # noqa: E402

STAGES = ("audience", "ranking", "rendering", "generation", "guardrails", "click-through", "choosing", "store", "other")


# ---------------------------------------------------------------------------------------------- synthetic shop

def synthetic_shop(users: int, items: int, sample: Path) -> Any:
    """A shop of ``users`` users and ``items`` items grown from the sample shop: user ``k`` has the locale, events
    and reviews of sample user ``k % 100`` on the catalog slice ``k // 100 % (items // 200)`` (item ``j`` of a slice
    is sample item ``j % 200`` under a series name), so histories, reviews and locales keep the sample's shape; and
    one view of its own, of an item of its slice picked by its number, so that no two users share a history (as in
    the Amazon catalogue's, where 9 of 8,442 users do): users with one history would share their ranked items, prompt
    and fallback, whose verdicts the guardrails then keep for them all, which real shops rarely allow."""
    from generator.core.data import Event, EventType, Item, Review, Shop, User, load_shop

    base = load_shop(sample)
    n_base_items = len(base.items)
    slices = max(1, items // n_base_items)
    catalog = []
    for s in range(slices):
        for it in base.items:
            if s == 0:
                catalog.append(it)
                continue
            item_id = f"{it.item_id}-S{s}"
            catalog.append(it.model_copy(update={"item_id": item_id, "title": f"{it.title} Series {s + 1}",
                                                 "url": f"https://shop.example.com/p/{item_id}"}))
    last, step = max(e.timestamp for e in base.events), timedelta(hours=1)  # a user's own view: after its history
    events_of: dict[str, list[Event]] = defaultdict(list)
    for e in base.events:
        events_of[e.user_id].append(e)
    reviews_of: dict[str, list[Review]] = defaultdict(list)
    for r in base.reviews:
        reviews_of[r.user_id].append(r)
    out_users, out_events, out_reviews = [], [], []
    for k in range(users):
        src = base.users[k % len(base.users)]
        uid = f"U{k:07d}"
        s = k // len(base.users) % slices
        suffix = f"-S{s}" if s else ""
        out_users.append(User.model_construct(user_id=uid, locale=src.locale, timezone=src.timezone,
                                              push_opt_in=src.push_opt_in))
        own = [Event.model_construct(**{**e.__dict__, "user_id": uid, "item_id": e.item_id + suffix})
               for e in events_of[src.user_id]]
        seen = base.items[k // (len(base.users) * slices) % n_base_items]  # the users sharing k's sample user and
        # slice are k's clones: each views another item (distinct up to 200 clones: 400,000 users on 10 slices)
        own.append(Event.model_construct(user_id=uid, item_id=seen.item_id + suffix, event_type=EventType.view,
                                         timestamp=max((e.timestamp for e in own), default=last) + step))
        out_events += own
        out_reviews += [Review.model_construct(**{**r.__dict__, "user_id": uid, "item_id": r.item_id + suffix})
                        for r in reviews_of[src.user_id]]
    assert all(isinstance(i, Item) for i in catalog)
    return Shop(items=catalog, users=out_users, events=out_events, reviews=out_reviews, pushes=[])


# ---------------------------------------------------------------------------------------------- stand-ins

class HashEncoder:
    """A stand-in sentence encoder: a fixed unit vector per text (one of a bank of random vectors, picked by the
    text's CRC-32), no model; its cost stays out of the stages (MiniLM is timed apart). The bank is large enough that
    few distinct texts share a vector (a bank of 4,096 gave 38% of a 2,000-item catalog another item's vector, so
    equal scores and similarities, which a real encoder gives only to equal texts, sent ranking down its tie paths)."""

    def __init__(self, dim: int = 384, bank: int = 1 << 16):
        rng = np.random.default_rng(0)
        vecs = rng.standard_normal((bank, dim), dtype=np.float32)
        self.bank = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self.dim = dim

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, sentences: list[str], **_: Any) -> np.ndarray:
        return self.bank[[zlib.crc32(s.encode("utf-8")) % len(self.bank) for s in sentences]]


# ---------------------------------------------------------------------------------------------- the copy

# sentences of the kinds a small model writes about a user's featured item; some fail a check, as a model's do
_EN_TITLES = [
    "{name}, now {price}", "Still thinking about the {name}?", "{discount} off the {name}", "Meet the {name}",
    "Your {name} is waiting", "Price drop on the {name}", "A fresh look at the {name}", "Ready for the {name}?",
    "{brand} {name} for {price}", "Back on your radar: the {name}", "The best {name} deal", "Up to {discount} off",
    "Good news about the {name}", "Picked for you: the {name}", "The {name} for less", "Time for a new {name}?",
    "Your next {name}", "Save {discount} on the {name}", "The {name} you looked at", "Don't miss the {name}",
]
_EN_OPENINGS = [
    "The {title} is {price} now.", "The {title} by {brand} is waiting for you at {price}.",
    "Now {price}, down from {old_price}.", "Made by {brand} for your next project: the {title}, {price}.",
    "Grab the {title} for {price} before it's gone!", "Save on the {name} from {brand}: {price} today only.",
    "You looked at the {title} recently, and it's {price} today.", "The {name} you viewed is now {price}.",
    "{brand}'s {title} just dropped to {price}.", "The {title} is {discount} off: {price}, was {old_price}.",
    "Still on the fence? The {name} is {price}.", "The {title} comes from {brand} and costs {price}.",
    "We saved the {title} for you at {price}.", "Your {name} from {brand} is {price} right now.",
    "The {title} is the perfect pick at {price}.", "Treat yourself to the {title}, now {price}.",
]
_EN_CLOSINGS = [
    "Tap to take a look.", "Tap to see it.", "Have a look when you have a minute.", "See the details in the app.",
    "Open the app to see more.", "Take a closer look.", "It could be a good fit for you.", "Worth a second look.",
    "Check it out.", "Tap to see what's new.", "Have a look today.", "Hurry, it won't last!",
    "Tap to find out more about it.", "See why others like it.", "",
]
_ZH_TITLES = [
    "{name} 降价啦", "为你推荐 {name}", "{name} 直降 {discount}", "{name} 全网最低价", "还在考虑 {name} 吗？",
    "{brand} 的 {name}", "{name} 现价 {price}", "来看看 {name}", "{name} 等你来", "{name} 新价格",
    "心仪的 {name} 降价了", "{name} 限时优惠",
]
_ZH_OPENINGS = [
    "{title} 现价 {price}，点击查看。", "{brand} 的 {title}，现在只要 {price}。",
    "{title} 原价 {old_price}，现价 {price}。",
    "{title} 只要 {price}，手慢无！", "你看过的 {title} 现在 {price}。", "{brand} {title} 降到了 {price}。",
    "{title} 优惠 {discount}，现价 {price}。", "{title} 正在等你，价格 {price}。", "{title} 现在 {price}，值得一看。",
    "为你挑选的 {title}，{price}。",
]
_ZH_CLOSINGS = ["点击查看详情。", "快来看看吧。", "打开应用了解更多。", "去看看吧。", "今天就来看看。", "不妨看一眼。",
                ""]


def distinct_copy(uid: str, item: Any, locale: str, n: int, taken: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """``n`` texts about ``item`` for user ``uid``, none of them in ``taken`` (which they join): a title, an opening
    sentence and a closing one, drawn by the user id and the candidate's number."""
    import random

    from generator.write.prompts import item_facts

    facts = item_facts(item, locale)
    zh = locale.startswith("zh")
    titles, openings, closings = (_ZH_TITLES, _ZH_OPENINGS, _ZH_CLOSINGS) if zh else \
        (_EN_TITLES, _EN_OPENINGS, _EN_CLOSINGS)

    def usable(t: str) -> bool:
        return bool(facts["discount"]) or ("{discount}" not in t and "{old_price}" not in t)

    titles, openings = [t for t in titles if usable(t)], [o for o in openings if usable(o)]
    rng = random.Random(zlib.crc32(uid.encode()))
    out: list[tuple[str, str]] = []
    for _ in range(200 * n):
        if len(out) == n:
            break
        title = rng.choice(titles).format(**facts)
        body = rng.choice(openings).format(**facts)
        closing = rng.choice(closings)
        body = f"{body}{closing}" if zh else f"{body} {closing}".strip()
        if (title, body) not in taken:
            taken.add((title, body))
            out.append((title, body))
    return out


class DistinctCopy:
    """Three texts about each user's featured item, written for that user (:func:`distinct_copy`, with the item's
    facts in the user's locale; no text is given twice in a run), in place of the null model's candidates: what the
    guardrails, click-through scoring, choosing and the store then handle is copy of the shape and variety a real
    model's is, and no verdict kept for one user's copy answers for another's."""

    def __init__(self, runner: Any, shop: Any) -> None:
        self.locales = {u.user_id: u.locale for u in shop.users}
        self.featured: dict[str, Any] = {}
        self.taken: set[tuple[str, str]] = set()
        rank = runner.scorer.rank

        def ranked(*args: Any, **kwargs: Any) -> Any:
            out = rank(*args, **kwargs)
            self.featured = {u: r[0].item for u, r in out.items() if r}
            return out

        runner.scorer.rank = ranked

    def rewrite(self, requests: list[Any], outputs: list[list[Any]]) -> None:
        for req, cands in zip(requests, outputs, strict=True):
            texts = distinct_copy(req.key, self.featured[req.key], self.locales[req.key], len(cands), self.taken)
            for c, (title, body) in zip(cands, texts, strict=False):
                c.title, c.body = title, body


def stand_in_ctr(encoder: Any) -> Any:
    """A click-through model of the trained kind (encoder + hand features), with fixed weights."""
    from generator.check.ctr import HAND_FEATURES, CtrModel

    rng = np.random.default_rng(0)
    n = len(HAND_FEATURES)
    return CtrModel("stand-in", rng.standard_normal(384), rng.standard_normal(n), np.zeros(n), np.ones(n), 1.0,
                    encoder=encoder)


# ---------------------------------------------------------------------------------------------- stage timing

def cpu_time() -> float:
    """CPU seconds of this process (all its threads) and of its children reaped so far (forked checkers)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


class Stages:
    """Seconds spent per stage; a call inside a timed call is part of the outer one's stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)  # CPU seconds of the process (all its threads)
        self._depth = 0
        self._undo: list[Callable[[], None]] = []

    def timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            t0, c0 = time.perf_counter(), cpu_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0
                self.cpu[stage] += cpu_time() - c0
                self._depth -= 1
        return wrapper

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        before = owner.__dict__.get(name, None) if isinstance(owner, type) else getattr(owner, name)
        setattr(owner, name, self.timed(stage, getattr(owner, name)))
        self._undo.append(lambda: setattr(owner, name, before) if before is not None else delattr(owner, name))

    @contextmanager
    def installed(self, runner: Any, generator: Any) -> Iterator[None]:
        import generator.campaign.runner as campaign_module

        for name, stage in (("select_audience", "audience"), ("prompt_parts", "rendering"),
                            ("message_facts", "rendering"),  # the fallback's copy too (the context's generic copy)
                            ("run_checks", "guardrails"), ("choose", "choosing"), ("save_messages", "store")):
            self.wrap(campaign_module, name, stage)
        self.wrap(runner.scorer, "rank", "ranking")
        self.wrap(runner.prompts, "render", "rendering")
        self.wrap(generator, "generate", "generation")
        self.wrap(runner, "_score_ctr", "click-through")
        self.wrap(runner, "check", "guardrails")
        self.wrap(campaign_module, "message_records", "store")  # a chunk's records at once: a timer per message
        # (two clock reads of the process's CPU time) cost as much as the record
        try:
            yield
        finally:
            for undo in reversed(self._undo):
                undo()
            self._undo.clear()


# ---------------------------------------------------------------------------------------------- the run

def fresh_pg(admin_url: str) -> tuple[str, Callable[[], None]]:
    from sqlalchemy import create_engine

    name = f"bench_campaign_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


def run_campaign(args: argparse.Namespace, shop: Any, db_url: str, console: Console) -> dict[str, Any]:
    import generator.campaign.runner as campaign_module
    from generator.campaign.runner import CampaignRunner
    from generator.campaign.spec import Campaign
    from generator.db.jobs import create_job
    from generator.db.store import Store
    from generator.rank.scorer import Scorer
    from generator.write.generate import Generator
    from generator.write.null_lm import null_lm

    model, tok = null_lm(length=args.new_tokens)
    gen = Generator(model=model, tokenizer=tok, batch_size=args.batch_size, max_new_tokens=args.new_tokens + 8)
    store = Store(db_url)
    encoder = HashEncoder()
    runner = CampaignRunner(generator=gen, scorer=Scorer(encoder, "hash-encoder", store=None), store=store,
                            ctr=stand_in_ctr(encoder), check_processes=args.check_processes)
    campaign = Campaign.model_validate({"name": "bench", "type": "auto", "candidates": args.candidates,
                                        "retries": 0})
    stages = Stages()
    if args.copy == "distinct":
        distinct, generate = DistinctCopy(runner, shop), gen.generate

        def generate_distinct(requests: list[Any], **kwargs: Any) -> list[list[Any]]:
            outputs = generate(requests, **kwargs)
            distinct.rewrite(requests, outputs)
            return outputs

        gen.generate = generate_distinct
    # warm-up: one small chunk (models, templates, prefix K/V); its messages go to another job
    warm = create_job(store, kind="bench", campaign_type="auto", template="auto", adapter=None, locale=None,
                      model="null", status="running", total=0, params={})
    runner.run(shop, campaign, user_ids=[u.user_id for u in shop.users[:64]], job_id=warm.id)
    job = create_job(store, kind="bench", campaign_type="auto", template="auto", adapter=None, locale=None,
                     model="null", status="running", total=0, params={})
    chunks_done, n_messages, records, statuses = 0, 0, [], Counter()
    t0 = time.perf_counter()
    with stages.installed(runner, gen):
        audience = campaign_module.select_audience(shop, campaign)  # as a job is created (timed: wrapped)
        for start in range(0, len(audience), args.chunk_size):
            chunk = audience[start:start + args.chunk_size]
            t_run, c_run = time.perf_counter(), cpu_time()
            before, before_cpu = sum(stages.seconds.values()), sum(stages.cpu.values())
            _, messages = runner.run(shop, campaign, user_ids=chunk, job_id=job.id,
                                     seed=start)
            stages.seconds["other"] += (time.perf_counter() - t_run) - (sum(stages.seconds.values()) - before)
            stages.cpu["other"] += (cpu_time() - c_run) - (sum(stages.cpu.values()) - before_cpu)
            n_messages += len(messages)
            statuses.update(m.status for m in messages)
            if len(records) < args.pg_messages:
                records += [m.as_record() for m in messages][:args.pg_messages - len(records)]
            chunks_done += 1
            console.print(f"chunk {chunks_done}: {n_messages} messages, {time.perf_counter() - t0:.1f} s")
    wall = time.perf_counter() - t0
    store.engine.dispose()
    return {"messages": n_messages, "chunks": chunks_done, "seconds": wall, "stages": dict(stages.seconds),
            "cpu": dict(stages.cpu), "records": records, "statuses": dict(statuses)}


def time_pg_store(args: argparse.Namespace, records: list[dict[str, Any]]) -> dict[str, float]:
    from generator.db.jobs import create_job
    from generator.db.messages import count_messages, save_messages
    from generator.db.store import Store

    url, drop = fresh_pg(args.pg)
    try:
        store = Store(url)
        job = create_job(store, kind="bench", campaign_type="auto", template="auto", adapter=None, locale=None,
                         model="null", status="running", total=0, params={})
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(records), args.chunk_size):
            save_messages(store, job.id, records[start:start + args.chunk_size])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert count_messages(store, job.id) == len(records)
        store.engine.dispose()
    finally:
        drop()
    return {"messages": len(records), "seconds": seconds, "cpu": cpu}


def time_minilm(args: argparse.Namespace, shop: Any) -> dict[str, float]:
    """MiniLM on CPU: the ranking's profile texts and the click-through model's candidate texts."""
    import torch

    from generator.rank.scorer import Scorer, build_histories

    scorer = Scorer.load("minilm", device="cpu")
    items = sorted(shop.items, key=lambda it: it.item_id)
    index = {it.item_id: i for i, it in enumerate(items)}
    users = [u.user_id for u in shop.users[:args.minilm_users]]
    hist = build_histories(shop, index, scorer.config, users)
    titles = [it.title for it in items]
    texts = [scorer.profile_text(hist[u], titles) for u in users if not hist[u].empty]
    scorer.embed_texts(texts[:16])
    t0, c0 = time.perf_counter(), time.process_time()
    scorer.embed_texts(texts)
    profile_s, profile_cpu = time.perf_counter() - t0, time.process_time() - c0
    pushes = [f"{it.title[:40]} is here\n{it.description[:120]}" for it in items[:args.minilm_users * 3]]
    t0, c0 = time.perf_counter(), time.process_time()
    scorer.encoder.encode(pushes, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    ctr_s, ctr_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"users": len(users), "profile_texts": len(texts), "profile_seconds": profile_s, "profile_cpu": profile_cpu,
            "push_texts": len(pushes), "push_seconds": ctr_s, "push_cpu": ctr_cpu, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=2000, help="catalog size (multiples of the sample shop's 200)")
    ap.add_argument("--chunk-size", type=int, default=4096, help="users per runner call (a worker's chunk)")
    ap.add_argument("--batch-size", type=int, default=4096, help="generation batch")
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--check-processes", type=int, default=1,
                    help="processes checking a chunk's candidates (the check_processes setting)")
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--minilm-users", type=int, default=256, help="users whose texts MiniLM encodes (CPU)")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                    help="a PostgreSQL database; a fresh one is made beside it for the store writes")
    ap.add_argument("--pg-messages", type=int, default=100_000, help="records written again into PostgreSQL")
    ap.add_argument("--copy", choices=("distinct", "null"), default="distinct",
                    help="distinct: realistic texts about each user's item, written per user, in place of the null "
                         "model's words (the same for every user); null: the null model's own")
    ap.add_argument("--json", type=Path, default=Path("out/bench_campaign.json"))
    ap.add_argument("--no-freeze", action="store_true",
                    help="leave the shop in the cyclic collector's sight (as before: each full collection walks it)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    console = Console()
    host = machine()  # how fast this machine runs such work, and what two processes gain here
    console.print(describe(host))
    t0 = time.perf_counter()
    shop = synthetic_shop(args.users, args.items, Path(__file__).resolve().parent.parent / "examples" / "shop")
    console.print(f"synthetic shop: {len(shop.users)} users, {len(shop.items)} items, {len(shop.events)} events, "
                  f"{len(shop.reviews)} reviews ({time.perf_counter() - t0:.1f} s)")
    if not args.no_freeze:
        gc.freeze()  # as a worker does once its shop is loaded (generator.jobs.cached_shop)
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        run = run_campaign(args, shop, f"sqlite:///{tmp}/pushgen.db", console)
    pg = time_pg_store(args, run.pop("records"))
    minilm = time_minilm(args, shop)
    n = run["messages"]

    def row(stage: str, messages: float, seconds: float, cpu: float) -> dict[str, Any]:
        return {"stage": stage, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                "messages_per_s": round(messages / seconds, 1) if seconds else None,
                "messages_per_cpu_s": round(messages / cpu, 1) if cpu else None}

    rows = [row("store (SQLite)" if s == "store" else s, n, run["stages"].get(s, 0.0), run["cpu"].get(s, 0.0))
            for s in STAGES]
    rows.append(row("store (PostgreSQL)", pg["messages"], pg["seconds"], pg["cpu"]))
    rows.append(row("ranking: MiniLM profile encoding (CPU)", minilm["users"], minilm["profile_seconds"],
                    minilm["profile_cpu"]))
    rows.append(row("click-through: MiniLM push encoding (CPU)", minilm["push_texts"] / args.candidates,
                    minilm["push_seconds"], minilm["push_cpu"]))
    table = Table(title=f"campaign stages: {n} messages ({args.users} users, {len(shop.items)} items), chunks of "
                        f"{args.chunk_size}, {args.candidates} candidates, null model, {args.check_processes} checking "
                        f"process(es); whole run "
                        f"{run['seconds']:.1f} s = {n / run['seconds']:,.0f} messages/s")
    for col in ("stage", "seconds", "messages/s", "CPU s", "messages per CPU-s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["stage"], f"{r['seconds']:.2f}", f"{r['messages_per_s'] or 0:,.0f}",
                      f"{r['cpu_seconds']:.2f}", f"{r['messages_per_cpu_s'] or 0:,.0f}")
    console.print(table)
    meta = {"users": args.users, "items": len(shop.items), "events": len(shop.events), "reviews": len(shop.reviews),
            "messages": n, "chunk_size": args.chunk_size, "batch_size": args.batch_size,
            "candidates": args.candidates, "new_tokens": args.new_tokens, "copy": args.copy,
            "check_processes": args.check_processes,
            "whole_run_seconds": round(run["seconds"], 2),
            "whole_run_messages_per_s": round(n / run["seconds"], 1), "statuses": run["statuses"], "minilm": minilm,
            "machine": host, "torch_threads": 1, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "gc_freeze": not args.no_freeze}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "stages": rows}, indent=2), encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
