"""The host path of generation, measured with the null model (``scripts/bench_generate.py --model null``).

Rows: ``naive`` (one user at a time: the whole prompt tokenised, one forward per token over the whole sequence,
the token picked, a stop check and detokenising per row) and pushgen at each ``--batch-size``, with each adapter
set-up. The prompts are the sample shop's, as a campaign makes them (users of one featured item share a prompt,
which pushgen tokenises once); ``--distinct-prompts`` adds a customer number to each user turn so that no two
prompts are alike (the worst case for tokenising). Messages/s counts users (``--candidates`` each). Wall-clock
and the process's CPU seconds are both reported (this machine's cores are shared, so wall-clock varies with the
others' load), the median of ``--repeat`` runs after a warm-up of one full batch (the steady state of a long
campaign). ``--profile`` writes a cProfile table (where the main thread's time goes, by function and tensor
operation) of one pushgen run at the largest batch size.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import time
from typing import Any

import torch
from rich.console import Console
from rich.table import Table


def distinct_prompts(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each user's own part with its customer number in the user turn: no two prompts alike."""
    return [(shared, own.replace("<|im_end|>", f"\nCustomer: {i:06d}<|im_end|>", 1)) for i, (shared, own) in
            enumerate(parts)]


def run_naive(gen: Any, parts: list[tuple[str, str]], names: list[str] | None, candidates: int,
              new_tokens: int) -> int:
    """One user at a time, nothing batched or cached; returns the candidates made."""
    from generator.write.decode import pick_tokens
    from generator.write.generate import Draft, parse_title_body

    tok, rng, made = gen.tokenizer, torch.Generator().manual_seed(0), 0
    columns = gen._column_ids
    for i, (shared, own) in enumerate(parts):
        prompt = tok(shared + own, add_special_tokens=False).input_ids
        for c in range(candidates):
            seq, new, newlines = list(prompt), [], 0
            for _ in range(new_tokens):
                out = gen._forward(input_ids=torch.tensor([seq]), past_key_values=None,
                                   adapters=[names[i]] if names else None)
                nxt = pick_tokens(out.logits[:, -1], torch.tensor([c > 0]), rng, temperature=gen.temperature,
                                  top_k=gen.top_k, top_p=gen.top_p)
                token = int(columns[nxt].item() if columns is not None else nxt.item())
                if token in gen._eos.tolist():
                    break
                seq.append(token)
                new.append(token)
                newlines += bool(gen._is_newline[token])
                if newlines >= 2:
                    break
            text = tok.decode(new, skip_special_tokens=True)
            Draft(*parse_title_body(text), text, c > 0, len(new), True)
            made += 1
    return made


def timed(fn: Any, *args: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - w, time.process_time() - c, out


def check_outputs(outs: list[list[Any]], new_tokens: int) -> None:
    """Every candidate has the null model's whole answer, ended by the stop rule (else the run measured less)."""
    bad = [c for row in outs for c in row if c.new_tokens != new_tokens or not c.finished or not c.body]
    if bad:
        raise SystemExit(f"{len(bad)} candidates are not the null model's answer, e.g. {bad[0]!r}")


def profile_table(gen: Any, reqs: list[Any], candidates: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    gen.generate(reqs, n_candidates=candidates)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(40)
    return buf.getvalue()


def main_null(args: argparse.Namespace) -> int:
    from generator.write.generate import GenerationRequest, Generator
    from scripts.bench_generate import add_adapters, build_model, prompts
    from scripts.bench_machine import describe, machine

    host = machine()  # how fast this machine runs Python work (the host path is Python work)
    torch.set_num_threads(args.threads or 1)
    device = torch.device("cpu")
    base, tok = build_model("null", args.tokenizer, device, args.new_tokens)
    parts = prompts(tok, args.users)
    parts = distinct_prompts(parts) if args.distinct_prompts else parts
    prompt_tokens = sum(len(tok(a + b, add_special_tokens=False).input_ids) for a, b in parts[:512]) / min(
        512, len(parts))
    console, results = Console(), []
    console.print(describe(host))
    load = [os.getloadavg()[0]]
    for n_adapters in [int(x) for x in args.adapters.split(",")]:
        model = add_adapters(base, n_adapters) if n_adapters else base
        names = [f"a{i % n_adapters}" for i in range(args.users)] if n_adapters else None
        reqs = [GenerationRequest(key=str(i), prompt=own, prefix=shared, adapter=names[i] if names else None)
                for i, (shared, own) in enumerate(parts)]
        for method in args.methods.split(","):
            for bs in (args.batch_size if method == "pushgen" else [1]):
                gen = Generator(model=model, tokenizer=tok, batch_size=bs, max_new_tokens=args.new_tokens,
                                stop_rules=True, decode="static")
                if method == "naive":
                    n = min(args.naive_users, args.users)
                    runs = [timed(run_naive, gen, parts[:n], names, args.candidates, args.new_tokens)
                            for _ in range(args.repeat)]
                else:
                    n = args.users
                    check_outputs(gen.generate(reqs[:bs], n_candidates=args.candidates), args.new_tokens)  # warm-up
                    runs = []
                    for _ in range(args.repeat):
                        gen._prefix_cache.clear()  # the prefix is computed inside the timed run
                        runs.append(timed(lambda g=gen, r=reqs: g.generate(r, n_candidates=args.candidates)))
                        check_outputs(runs[-1][2], args.new_tokens)
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                results.append({"method": method, "batch_size": bs, "adapters": n_adapters, "messages": n,
                                "candidates": args.candidates, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                                "messages_per_s": round(n / wall, 1), "messages_per_cpu_s": round(n / cpu, 1),
                                "runs_messages_per_s": [round(n / r[0], 1) for r in runs]})
                console.print(results[-1])
                load.append(os.getloadavg()[0])
                if args.profile is not None and method == "pushgen" and bs == max(args.batch_size):
                    path = args.profile.with_suffix(f".a{n_adapters}{args.profile.suffix}")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    gen._prefix_cache.clear()
                    head = (f"cProfile of one pushgen run: {n} users x {args.candidates} candidates, batch {bs}, "
                            f"{n_adapters} adapters, null model\n")
                    path.write_text(head + profile_table(gen, reqs, args.candidates), encoding="utf-8")
        if n_adapters:
            model.unload()
    naive = {r["adapters"]: r["messages_per_s"] for r in results if r["method"] == "naive"}
    one = {(r["method"], r["batch_size"]): r["messages_per_s"] for r in results if r["adapters"] == 1}
    for r in results:
        r["x_naive"] = round(r["messages_per_s"] / naive[r["adapters"]], 1) if r["adapters"] in naive else None
        key = (r["method"], r["batch_size"])
        r["vs_one_adapter"] = round(r["messages_per_s"] / one[key], 2) if key in one else None
    table = Table(title=f"host path, null model: {args.users} users x {args.candidates} candidates, "
                        f"~{prompt_tokens:.0f} prompt tokens, {args.new_tokens} new tokens, "
                        f"{torch.get_num_threads()} torch thread(s), median of {args.repeat}")
    for col in ("method", "batch", "adapters", "messages/s", "messages per CPU-s", "× naive", "vs 1 adapter"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["method"], str(r["batch_size"]), str(r["adapters"]), f"{r['messages_per_s']:,.0f}",
                      f"{r['messages_per_cpu_s']:,.0f}", str(r["x_naive"]), str(r["vs_one_adapter"]))
    console.print(table)
    meta = {"device": "cpu", "machine": host, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "model": "null", "users": args.users,
            "candidates": args.candidates, "new_tokens": args.new_tokens, "prompt_tokens_mean": round(prompt_tokens, 1),
            "distinct_prompts": len(set(parts)), "repeat": args.repeat, "load_average": load}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2), encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0


__all__ = ["distinct_prompts", "main_null", "run_naive"]
