"""Benchmark the guardrails on copy never seen before: microseconds per candidate and messages per CPU-second, per
check, on distinct, realistic, varied copy of distinct users (no verdict or per-copy cache can answer).

Each of ``--users`` users of a synthetic shop (``bench_campaign.synthetic_shop``: user ``k`` is sample user ``k % 100``
on catalog slice ``k // 100``, so every user has a context of their own) is ranked and prompted by pushgen's own
runner (a stand-in encoder, the null model's tokenizer), which builds the user's guard context as a campaign does.
Each user then gets three candidates written for them: sentences of the kinds a small model writes about the
featured item (its name, brand, price, old price, discount in the user's locale), drawn per user and candidate so
that no text repeats (some fail a check, as a model's do: a superlative, urgency, a vague discount, another price).
Two costs are timed: every text checked (microseconds per text, per check, comparable across trees) and each message
checked as ``CampaignRunner`` checks it: its candidates in choosing order (the bench's copy has no click-through
model: the model's order) up to the first that passes, each up to its first failing check where the tree's
``run_checks`` has ``fail_fast``, and the fallback (the brand's template copy) in full where none passes; a tree whose
runner checks every candidate, or every check of a candidate, is timed so. Verdicts are compared in any check order.

Every pass starts cold for the copy and the users timed: the verdicts kept by ``run_checks``, what each context
derived (``_Derived``) and every text cache of the checks' modules are cleared. Then, untimed, the checks run once
on the copy of ``--warm-users`` other users (by default 1,000: every sample user on every catalog slice, with copy of
their own), as earlier chunks of a campaign warm what depends only on the catalog, the templates and the items
(item names, the catalog's index, the templates' prompts and example phrases: they recur across a shop's users);
then the ``--users`` users after them are timed, with copy no check has seen. The totals time ``run_checks`` as the
runner calls it; a second pass times each check on its own. With ``--baseline PATH`` (a checkout
of the code to compare with, e.g. ``git worktree add /tmp/pushgen-main main``) the same texts are timed there first,
in a process of its own, right before this tree's, and every verdict of both is compared.

  git worktree add --detach /tmp/pushgen-main main
  python scripts/bench_guardrails.py --baseline /tmp/pushgen-main --json docs/bench/cpu-bench_guardrails.json
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent


def _code_root(argv: list[str]) -> Path:
    """The tree whose ``generator`` package is timed: ``--code PATH`` (a worker run for ``--baseline``), else this."""
    if "--code" in argv:
        return Path(argv[argv.index("--code") + 1]).resolve()
    return HERE.parent


# ------------------------------------------------------------------------------------------------- one tree's run

def build_cases(users: int, items: int) -> list[dict[str, Any]]:
    """Per user: the guard context the runner builds, three distinct candidates and the fallback."""
    import generator
    from generator.campaign.runner import CampaignRunner
    from generator.campaign.spec import Campaign
    from generator.rank.scorer import Scorer
    from generator.write.generate import Generator
    from generator.write.null_lm import null_lm

    sys.path.insert(0, str(HERE))
    from bench_campaign import HashEncoder, distinct_copy, synthetic_shop  # it puts this tree first on sys.path

    assert Path(generator.__file__).resolve().is_relative_to(_code_root(sys.argv)), generator.__file__
    shop = synthetic_shop(users, items, HERE.parent / "examples" / "shop")
    model, tok = null_lm(length=40)
    runner = CampaignRunner(generator=Generator(model=model, tokenizer=tok), scorer=Scorer(HashEncoder(), "hash"),
                            store=None, ctr=False)
    campaign = Campaign.model_validate({"name": "bench", "type": "auto", "candidates": 3, "retries": 0})
    audience = runner.audience(shop, campaign, None)
    ranked = runner.rank(shop, campaign, audience, None)
    plan = runner.prompt(shop, campaign, audience, ranked)
    locales = {u.user_id: u.locale for u in shop.users}
    taken: set[tuple[str, str]] = set()
    cases = []
    for m in plan.messages:
        if not m.ranked:
            continue
        ctx = plan.contexts[m.user.user_id]
        texts = distinct_copy(m.user.user_id, m.ranked[0].item, locales[m.user.user_id], 3, taken)
        fallback = tuple(ctx.generic_texts)
        cases.append({"user": m.user.user_id, "ctx": ctx, "candidates": texts, "fallback": fallback})
    return cases


def _clear_caches() -> None:
    """Every text cache of the checks' modules, and what the checks keep between calls."""
    import functools

    import generator.check.brand as brand
    import generator.check.guard_index as guard_index
    import generator.check.guardrails as guardrails
    import generator.core.formatting as formatting
    import generator.core.names as names

    for module in (guardrails, guard_index, formatting, brand, names):
        for value in list(vars(module).values()):
            if isinstance(value, functools._lru_cache_wrapper) and value.cache_info().maxsize != 1:
                value.cache_clear()  # maxsize 1: a compiled word list, made once per process
    for module, name in ((guardrails, "_VERDICTS"), (guardrails, "_SEEN"), (guardrails, "_FINGERPRINTS"),
                         (guardrails, "_HELD_FACTS"), (formatting, "_PARTS")):
        if hasattr(module, name):
            getattr(module, name).clear()


def _cold(cases: list[dict[str, Any]]) -> None:
    _clear_caches()
    for case in cases:
        case["ctx"].__dict__.pop("_derived", None)


def time_tree(warm: list[dict[str, Any]], cases: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """Seconds (CPU) of every pass over ``cases`` (after ``warm``, untimed), per check, and every verdict."""
    import generator.check.guardrails as guardrails
    from generator.check.guardrails import DEFAULT_CHECKS, run_checks

    verdicts_cache = getattr(guardrails, "_VERDICTS", None)
    # warm what a worker builds once: the catalog's index, the word lists, the patterns (on a text of no case)
    warm_ctx = cases[0]["ctx"]
    run_checks("Warm up", "Warm up the patterns, $1.00, 10% off, 降价", warm_ctx)
    run_checks(*cases[0]["fallback"], warm_ctx)

    from generator.campaign.runner import CampaignRunner

    in_order = hasattr(CampaignRunner, "_settle")  # the runner checks in choosing order, up to the first pass
    # the runner checks a candidate up to its first failing check (the fallback in full)
    fast = {"fail_fast": True} if "fail_fast" in inspect.signature(run_checks).parameters else {}

    def message(case: dict[str, Any], every: bool) -> tuple[list[list[tuple[str, bool, str]]], int]:
        out, checked = [], 0
        for title, body in case["candidates"]:
            if verdicts_cache is not None:
                verdicts_cache.clear()  # no copy is seen twice here; the key is made as in a campaign
            out.append(run_checks(title, body, case["ctx"], **({} if every else fast)))
            checked += 1
            if in_order and not every and all(r.passed for r in out[-1]):
                break
        if not any(all(r.passed for r in rs) for rs in out):
            if verdicts_cache is not None:
                verdicts_cache.clear()
            out.append(run_checks(*case["fallback"], case["ctx"]))
            checked += 1
        return [sorted((r.name, r.passed, r.reason) for r in rs) for rs in out], checked  # in any check order

    def start() -> None:
        _cold(warm + cases)
        for case in warm:
            message(case, every=False)

    totals: dict[str, list[float]] = {"every": [], "runner": []}
    verdicts, checked = [], {}
    for _ in range(repeat):
        for how in ("every", "runner"):
            start()
            c0 = time.process_time()
            got = [message(case, every=how == "every") for case in cases]
            totals[how].append(time.process_time() - c0)
            checked[how] = sum(n for _, n in got)
            if how == "every":
                verdicts = [v for v, _ in got]
    # each check on its own (timers around each call: a little slower in all than the totals)
    import generator.core.formatting as formatting

    first = getattr(formatting, "money_mentions_of_copy", None)  # what run_checks does before the checks, if any
    per_check = {"(run_checks: the copy's amounts)": 0.0} if first else {}
    per_check.update({check.__name__: 0.0 for check in DEFAULT_CHECKS})
    per_check_runs = []
    for _ in range(repeat):
        start()
        run = dict.fromkeys(per_check, 0.0)
        for case, vs in zip(cases, verdicts, strict=True):
            texts = list(case["candidates"]) + ([case["fallback"]] if len(vs) > len(case["candidates"]) else [])
            for title, body in texts:
                if first:
                    c0 = time.process_time_ns()
                    first(title, body)
                    run["(run_checks: the copy's amounts)"] += (time.process_time_ns() - c0) / 1e9
                for check in DEFAULT_CHECKS:
                    c0 = time.process_time_ns()
                    check(title, body, case["ctx"])
                    run[check.__name__] += (time.process_time_ns() - c0) / 1e9
        per_check_runs.append(run)
    per_check = {k: statistics.median(r[k] for r in per_check_runs) for k in per_check}
    return {"messages": len(cases), "texts_checked": checked["every"], "pass_seconds": totals["every"],
            "runner_texts_checked": checked["runner"], "runner_pass_seconds": totals["runner"],
            "in_choosing_order": in_order, "fail_fast": bool(fast), "per_check_seconds": per_check,
            "verdicts": verdicts}


def worker(args: argparse.Namespace) -> int:
    """One tree's timings, as JSON to ``--out``."""
    import torch

    torch.set_num_threads(1)
    cases = build_cases(args.warm_users + args.users, args.items)
    gc.freeze()  # as a worker does with its shop; the runner checks with the collector paused (gc_paused)
    gc.disable()
    n_warm = sum(int(c["user"][1:]) < args.warm_users for c in cases)
    warm, cases = cases[:n_warm], cases[n_warm:]
    result = time_tree(warm, cases, args.repeat)
    result["texts"] = [[*c["candidates"], c["fallback"]] for c in cases]
    result["users"] = [c["user"] for c in cases]
    result["code"] = str(_code_root(sys.argv))
    result["commit"] = subprocess.run(["git", "-C", result["code"], "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()
    result["load_average"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")
    return 0


# ------------------------------------------------------------------------------------------------- the report

def run_tree(code: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--code", str(code), "--out", str(out),
           "--users", str(args.users), "--warm-users", str(args.warm_users), "--items", str(args.items),
           "--repeat", str(args.repeat)]
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=600)
    ap.add_argument("--warm-users", type=int, default=1000,
                    help="users checked untimed first in each pass (what depends on the catalog alone gets warm)")
    ap.add_argument("--items", type=int, default=2000, help="catalog size (multiples of the sample shop's 200)")
    ap.add_argument("--repeat", type=int, default=3, help="cold passes per tree (the median is reported)")
    ap.add_argument("--baseline", type=Path, help="a checkout of the code to compare with (timed first)")
    ap.add_argument("--json", type=Path, default=Path("out/bench_guardrails.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(HERE))
    from bench_machine import describe, machine

    console = Console()
    host = machine(pair=False)  # how fast this machine runs such work (the baseline's figures compare within it)
    console.print(describe(host))
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-guardrails-") as tmp:
        if args.baseline:
            console.print(f"baseline: {args.baseline}")
            runs["baseline"] = run_tree(args.baseline.resolve(), args, Path(tmp) / "baseline.json")
        console.print(f"this tree: {HERE.parent}")
        runs["now"] = run_tree(HERE.parent, args, Path(tmp) / "now.json")
    now = runs["now"]
    same = None
    if "baseline" in runs:
        base = runs["baseline"]
        if base["texts"] != now["texts"] or base["users"] != now["users"]:
            raise SystemExit("the two trees were given different copy or users: not comparable")
        differ = [(u, k) for u, a, b in zip(now["users"], base["verdicts"], now["verdicts"], strict=True)
                  for k in range(max(len(a), len(b))) if k >= len(a) or k >= len(b) or a[k] != b[k]]
        same = not differ
        if differ:
            console.print(f"[red]verdicts differ for {len(differ)} texts, e.g. {differ[:3]}[/red]")

    def summary(r: dict[str, Any]) -> dict[str, Any]:
        cpu, runner_cpu = statistics.median(r["pass_seconds"]), statistics.median(r["runner_pass_seconds"])
        return {"commit": r["commit"], "cpu_seconds": round(cpu, 4), "passes": [round(s, 4) for s in r["pass_seconds"]],
                "us_per_text": round(cpu / r["texts_checked"] * 1e6, 1),
                "messages_per_cpu_s_every_text": round(r["messages"] / cpu, 1),
                "runner": ("in choosing order, up to the first pass" if r["in_choosing_order"] else "every candidate")
                + (", each up to its first failing check" if r.get("fail_fast") else ""),
                "runner_texts_per_message": round(r["runner_texts_checked"] / r["messages"], 2),
                "runner_passes": [round(s, 4) for s in r["runner_pass_seconds"]],
                "messages_per_cpu_s": round(r["messages"] / runner_cpu, 1),
                "per_check_us_per_text": {k: round(v / r["texts_checked"] * 1e6, 2)
                                          for k, v in r["per_check_seconds"].items()},
                "load_average": r["load_average"]}

    sums = {k: summary(r) for k, r in runs.items()}
    n_texts = now["texts_checked"]
    table = Table(title=f"guardrails on distinct copy: {now['messages']} messages, {n_texts} texts checked "
                        f"(3 candidates each, the fallback where none passes), median of {args.repeat} cold passes")
    table.add_column("check")
    cols = list(sums)
    for k in cols:
        table.add_column(f"{k}: µs per text", justify="right")
    names = list(dict.fromkeys(n for r in runs.values() for n in r["per_check_seconds"]))
    for name in names:
        table.add_row(name, *(f"{sums[k]['per_check_us_per_text'][name]:.1f}"
                              if name in sums[k]["per_check_us_per_text"] else "" for k in cols))
    table.add_row("run_checks (all)", *(f"{sums[k]['us_per_text']:.1f}" for k in cols))
    table.add_row("messages per CPU-s, every candidate checked",
                  *(f"{sums[k]['messages_per_cpu_s_every_text']:,.0f}" for k in cols))
    table.add_row("texts checked per message as the runner checks",
                  *(f"{sums[k]['runner_texts_per_message']:.2f}" for k in cols))
    table.add_row("messages per CPU-s as the runner checks", *(f"{sums[k]['messages_per_cpu_s']:,.0f}" for k in cols))
    console.print(table)
    if same is not None:
        console.print(f"verdicts identical for all {n_texts} texts: {same}")
    meta = {"users": args.users, "warm_users": args.warm_users, "items": args.items, "messages": now["messages"],
            "texts_checked": n_texts,
            "distinct_texts": len({tuple(t) for ts in now["texts"] for t in ts}), "repeat": args.repeat,
            "verdicts_identical": same, "machine": host}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, **sums}, indent=2, ensure_ascii=False), encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(_code_root(sys.argv)))
    raise SystemExit(main())
