"""Benchmark generation: messages/s and new tokens/s of pushgen's path against naive baselines, in one run.

Methods, all on the same realistic prompts (the sample shop's templates, few-shot turns included) and the same
fixed generated length (stop rules off, so every method does the same work):

  naive       one ``model.generate`` call per user (what a first version does)
  hf-batched  Hugging Face ``generate`` on left-padded batches
  pushgen     ``generator.write.generate.Generator``: shared-prefix KV cache, length bucketing, a preallocated KV cache,
              prefill in length-sorted chunks, fused LoRA (several adapters per batch); on CPU finished rows are
              dropped from the cache, on CUDA one CUDA graph per decode step
  pushgen-dynamic  the same with a growing cache (``--methods`` to include it; the loop sliding-window models use)
  pushgen-int8     pushgen with dynamic int8 Linear layers (CPU; ``--methods`` to include it)

each with no adapter, one LoRA adapter, and four adapters mixed within every batch (peft ``adapter_names``).

  python scripts/bench_generate.py --users 64 --json out/bench_generate.json
  python scripts/bench_generate.py --model random --device cuda --users 4096 --batch-size 512   # on a GPU

``--model random`` builds SmolLM2-135M's architecture with random weights (the packaged GGUF does not travel to
GPU machines); it needs only a tokenizer folder (``--tokenizer``, default: the converted SmolLM2's).

``--model null`` measures the host path: :class:`generator.write.null_lm.NullLM`, whose forward costs nothing, answers
every prompt with the same ``--new-tokens`` tokens of SmolLM2's vocabulary, ended by the stop rule (stop rules on),
through pushgen's real path (tokenising, prefix K/V bookkeeping, adapters per row, sampling, stopping,
detokenising, candidates). Its baseline is ``naive``: one user at a time, the whole prompt tokenised, one forward
per token over the whole sequence, sampling, a stop check and detokenising per row. Torch runs on one thread (the
tensors are small: two threads mostly wait for each other on a shared machine); wall-clock and CPU seconds of the
process are both reported, the median of ``--repeat`` runs after a warm-up batch of each size.

  python scripts/bench_generate.py --model null --users 12288 --batch-size 1024,4096 --candidates 3 \
      --adapters 1,4 --methods naive,pushgen --naive-users 64 --profile out/null_profile.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from scripts.bench_common import random_smollm2  # noqa: E402


def build_model(name: str, tokenizer_dir: str | None, device: torch.device, new_tokens: int = 40):  # type: ignore[no-untyped-def]
    from generator.core.model_registry import load_causal_lm

    if name == "null":
        from generator.core.model_registry import load_tokenizer
        from generator.write.null_lm import null_lm

        model, tok = null_lm(load_tokenizer(tokenizer_dir or "smollm2-135m"), length=new_tokens)
        return model.to(device), tok
    if name != "random":
        return load_causal_lm(name, device=str(device))
    return random_smollm2(tokenizer_dir, device)


def add_adapters(model, n: int):  # type: ignore[no-untyped-def]
    """Wrap the model with ``n`` random (non-zero) LoRA adapters of rank 16 on every projection (the null
    model's one Linear layer)."""
    from peft import LoraConfig, get_peft_model

    from generator.write.null_lm import NullLM

    targets = ["proj"] if isinstance(model, NullLM) else ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"]
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, cfg, adapter_name="a0")
    for i in range(1, n):
        peft_model.add_adapter(f"a{i}", cfg)
    for p in peft_model.parameters():
        p.data = p.data.to(next(model.parameters()).dtype)
    return peft_model.eval()


def prompts(tokenizer, users: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(shared prefix, own part) for ``users`` users, from the sample shop's items and templates."""
    from generator.core.data import load_shop
    from generator.write.prompts import default_library, item_facts, prompt_parts

    lib = default_library()
    items = [i for i in load_shop(Path(__file__).resolve().parent.parent / "examples" / "shop").items if i.in_stock]
    out = []
    for u in range(users):
        item = items[u % len(items)]
        name = "price_drop.en" if item.discount_pct else "content_recommendation.en"
        variables = {"brand": "Northwind", "item": item_facts(item)}
        if "review" in lib.get(name).variables:
            variables["review"] = None
        out.append(prompt_parts(tokenizer, lib.render(name, **variables)))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _sampling(candidates: int) -> dict:
    """Greedy for one candidate; else the Generator's own sampling settings, ``candidates`` sequences per prompt."""
    if candidates == 1:
        return {"do_sample": False}
    import inspect

    from generator.write.generate import Generator

    defaults = inspect.signature(Generator.__init__).parameters
    return {"do_sample": True, "num_return_sequences": candidates,
            **{k: defaults[k].default for k in ("temperature", "top_k", "top_p")}}


def run_naive(model, tok, parts, new_tokens, adapters, device, candidates=1):  # type: ignore[no-untyped-def]
    for i, (shared, own) in enumerate(parts):
        enc = tok(shared + own, return_tensors="pt", add_special_tokens=False).to(device)
        kw = {"adapter_names": [adapters[i]] * candidates} if adapters else {}  # generate repeats the rows
        model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id,
                       **_sampling(candidates), **kw)


def run_hf_batched(model, tok, parts, new_tokens, adapters, device, batch,  # type: ignore[no-untyped-def]
                   candidates=1):
    for s in range(0, len(parts), batch):
        chunk = [a + b for a, b in parts[s:s + batch]]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        kw = {"adapter_names": [a for a in adapters[s:s + batch] for _ in range(candidates)]} if adapters else {}
        model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id,
                       **_sampling(candidates), **kw)


def run_pushgen(gen, parts, adapters, candidates=1):  # type: ignore[no-untyped-def]
    from generator.write.generate import GenerationRequest

    reqs = [GenerationRequest(key=str(i), prompt=own, prefix=shared, adapter=adapters[i] if adapters else None)
            for i, (shared, own) in enumerate(parts)]
    gen.generate(reqs, n_candidates=candidates)


def timed(device: torch.device, fn, *args) -> float:  # type: ignore[no-untyped-def]
    sync(device)
    t0 = time.perf_counter()
    fn(*args)
    sync(device)
    return time.perf_counter() - t0


def write_profile(path: Path, device: torch.device, gen, parts, adapters) -> None:  # type: ignore[no-untyped-def]
    """One pushgen call under torch.profiler: the op table (by device time on CUDA, else by CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        dt = timed(device, run_pushgen, gen, parts, adapters)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{len(parts)} messages in {dt:.3f} s under the profiler\n"
                    + prof.key_averages().table(sort_by=key, row_limit=40), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="registry name, folder, 'random' or 'null'")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder for --model random")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--naive-users", type=int, default=8, help="users timed for the slow per-user loop")
    ap.add_argument("--hf-users", type=int, default=None, help="users timed for hf-batched (default: --users)")
    ap.add_argument("--batch-size", type=lambda v: [int(x) for x in v.split(",")], default=[32],
                    help="requests per batch (--model null: comma-separated sizes, one pushgen row each)")
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--candidates", type=int, default=1,
                    help="candidates per user: 1 = greedy (the default, outputs comparable); N > 1 = what a "
                         "campaign does (pushgen: 1 greedy + N-1 sampled; Hugging Face: N sampled, the same "
                         "temperature/top-k/top-p); messages/s counts users")
    ap.add_argument("--adapters", default="0,1,4", help="adapter set-ups to run: counts, comma-separated")
    ap.add_argument("--methods", default="naive,hf-batched,pushgen",
                    help="naive, hf-batched, pushgen (decode mode --decode), pushgen-dynamic, pushgen-int8 (CPU)")
    ap.add_argument("--decode", default="auto", help="pushgen's decode mode: auto, dynamic, static or graph")
    ap.add_argument("--json", type=Path, default=Path("out/bench_generate.json"))
    ap.add_argument("--profile", type=Path, default=None,
                    help="also profile one pushgen batch (torch.profiler) and write its op table to this file "
                         "(--model null: a cProfile table of one whole run)")
    ap.add_argument("--repeat", type=int, default=3, help="--model null: timed runs per row (the median is kept)")
    ap.add_argument("--threads", type=int, default=None, help="--model null: torch threads (default 1)")
    ap.add_argument("--distinct-prompts", action="store_true",
                    help="--model null: a customer number in every user turn, so no two prompts are alike")
    args = ap.parse_args(argv)
    if args.model == "null":
        from scripts.bench_null import main_null

        return main_null(args)
    args.batch_size = args.batch_size[0]

    from generator.core.model_registry import pick_device
    from generator.write.generate import Generator

    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    base, tok = build_model(args.model, args.tokenizer, device)
    parts = prompts(tok, args.users)
    prompt_tokens = sum(len(tok(a + b, add_special_tokens=False).input_ids) for a, b in parts) / len(parts)
    methods = args.methods.split(",")
    results = []
    console = Console()
    for n_adapters in [int(x) for x in args.adapters.split(",")]:
        model = add_adapters(base, n_adapters) if n_adapters else base
        names = [f"a{i % n_adapters}" for i in range(args.users)] if n_adapters else None
        gens = {m: Generator(model=model, tokenizer=tok, batch_size=args.batch_size, max_new_tokens=args.new_tokens,
                             stop_rules=False, decode="dynamic" if m == "pushgen-dynamic" else args.decode,
                             int8=m == "pushgen-int8")
                for m in methods if m.startswith("pushgen")}
        for gen in gens.values():
            # warm-up: kernels and allocator; with CUDA graphs, the capture of each (adapter, batch shape), which
            # a long-running worker does once
            n_warm = min(args.users, args.batch_size * max(n_adapters, 1)) if gen.decode_mode == "graph" else 2
            run_pushgen(gen, parts[:n_warm], names[:n_warm] if names else None, args.candidates)
        for method in methods:
            if method == "naive":
                n = min(args.naive_users, args.users)
                dt = timed(device, run_naive, model, tok, parts[:n], args.new_tokens, names, device,
                           args.candidates)
            elif method == "hf-batched":
                n = min(args.hf_users or args.users, args.users)
                dt = timed(device, run_hf_batched, model, tok, parts[:n], args.new_tokens, names, device,
                           args.batch_size, args.candidates)
            else:
                n = args.users
                gens[method]._prefix_cache.clear()  # the prefix is computed inside the timed run
                dt = timed(device, run_pushgen, gens[method], parts, names, args.candidates)
            decode = gens[method].decode_mode if method in gens else None
            steps = dict(gens[method].decode_steps) if method in gens else None  # since the Generator was made
            if decode == "graph" and steps and steps.get("eager"):
                console.print(f"[red]{method}: {steps['eager']} decode steps ran eagerly (a CUDA graph capture "
                              "failed; see the log)[/red]")
            results.append({"method": method, "decode": decode, "decode_steps": steps, "adapters": n_adapters,
                            "messages": n, "candidates": args.candidates, "seconds": round(dt, 3),
                            "messages_per_s": round(n / dt, 2),
                            "new_tokens_per_s": round(n * args.candidates * args.new_tokens / dt, 1)})
            console.print(results[-1])
        if args.profile is not None and "pushgen" in gens:
            write_profile(args.profile.with_suffix(f".a{n_adapters}{args.profile.suffix}"), device, gens["pushgen"],
                          parts[:args.batch_size], names[:args.batch_size] if names else None)
        if n_adapters:
            model.unload()  # peft: remove the LoRA layers again, leaving the base model as it was
    naive = {r["adapters"]: r["messages_per_s"] for r in results if r["method"] == "naive"}
    hf = {r["adapters"]: r["messages_per_s"] for r in results if r["method"] == "hf-batched"}
    one = {r["method"]: r["messages_per_s"] for r in results if r["adapters"] == 1}
    for r in results:
        r["x_naive"] = round(r["messages_per_s"] / naive[r["adapters"]], 2) if r["adapters"] in naive else None
        r["x_hf_batched"] = round(r["messages_per_s"] / hf[r["adapters"]], 2) if r["adapters"] in hf else None
        r["vs_one_adapter"] = round(r["messages_per_s"] / one[r["method"]], 2) if r["method"] in one else None
    table = Table(title=f"generation, {args.users} users x {args.candidates} candidates, ~{prompt_tokens:.0f} "
                        f"prompt tokens, {args.new_tokens} new tokens, {device}")
    for col in ("method", "adapters", "messages/s", "new tokens/s", "× naive", "× hf-batched", "vs 1 adapter"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["method"], str(r["adapters"]), f"{r['messages_per_s']:.2f}", f"{r['new_tokens_per_s']:.0f}",
                      str(r["x_naive"]), str(r["x_hf_batched"]), str(r["vs_one_adapter"]))
    console.print(table)
    meta = {"device": str(device), "device_name": torch.cuda.get_device_name() if device.type == "cuda"
            else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "model": args.model, "users": args.users, "candidates": args.candidates,
            "batch_size": args.batch_size,
            "new_tokens": args.new_tokens, "prompt_tokens_mean": round(prompt_tokens, 1),
            "load_average": os.getloadavg()[0]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2), encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
