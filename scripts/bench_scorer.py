"""Benchmark the scorer: text embedding throughput and top-K over users x items, chunked vs naive.

    python scripts/bench_scorer.py --users 100000 --items 50000 --json bench_scorer.json

Prints a table and writes JSON. The top-K part uses synthetic unit vectors (384-d, like MiniLM); the chunked
path is the one :meth:`generator.rank.scorer.Scorer.rank` runs (one matmul per user chunk + deterministic top-K),
the naive baseline scores one user at a time (measured on a sample of users and reported per score).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.rank.scorer import topk_deterministic


def random_encoder(config_dir: str) -> str:
    """A folder holding a BERT of the config in ``config_dir`` with random weights and that folder's tokenizer
    (for GPU machines, where the packaged MiniLM weights do not travel; the compute is the same)."""
    import tempfile

    from transformers import AutoConfig, AutoModel, AutoTokenizer

    out = tempfile.mkdtemp(prefix="bench-encoder-")
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(config_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def bench_embedding(n_texts: int, device: str, encoder: str, batch_size: int = 64) -> dict[str, Any]:
    from generator.core.model_registry import load_sentence_encoder

    rng = np.random.default_rng(0)
    words = ["drill", "bit", "steel", "glove", "nitrile", "tape", "sanding", "roll", "grit", "adhesive",
             "meter", "digital", "lab", "beaker", "glass", "resistant", "industrial", "pack", "inch", "black"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(12, 40)))) for _ in range(n_texts)]
    enc = load_sentence_encoder(encoder, device=device)
    enc.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    enc.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    dt = time.perf_counter() - t0
    return {"texts": n_texts, "seconds": round(dt, 3), "texts_per_s": round(n_texts / dt, 1)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_topk(n_users: int, n_items: int, k: int, dim: int, device: str, chunk_elements: int,
               naive_users: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    items = torch.nn.functional.normalize(torch.randn(n_items, dim, generator=g), dim=1).to(device)
    chunk = max(1, chunk_elements // n_items)
    t0 = time.perf_counter()
    checksum = 0
    for s in range(0, n_users, chunk):
        b = min(chunk, n_users - s)
        users = torch.nn.functional.normalize(torch.randn(b, dim, generator=g), dim=1).to(device)
        scores = users @ items.T
        if device == "cpu":
            idx, _ = topk_deterministic(scores, k)
            checksum += int(idx[:, 0].sum())
        else:
            _, idx = torch.topk(scores, k, dim=1)
            checksum += int(idx[:, 0].sum())
    _sync(device)
    dt = time.perf_counter() - t0
    chunked = {"seconds": round(dt, 3), "scores_per_s": n_users * n_items / dt,
               "peak_scores_mib": round(chunk * n_items * 4 / 2**20, 1), "chunk_users": chunk}
    # naive: one user at a time, full scoring + sort of the whole row
    users = torch.nn.functional.normalize(torch.randn(naive_users, dim, generator=g), dim=1).to(device)
    t0 = time.perf_counter()
    for r in range(naive_users):
        row = users[r] @ items.T
        torch.argsort(row, descending=True)[:k]
    _sync(device)
    dtn = time.perf_counter() - t0
    naive = {"users_measured": naive_users, "seconds": round(dtn, 3),
             "scores_per_s": naive_users * n_items / dtn,
             "extrapolated_seconds_all_users": round(dtn / naive_users * n_users, 1)}
    full_gib = n_users * n_items * 4 / 2**30
    speedup = round(chunked["scores_per_s"] / naive["scores_per_s"], 1)
    return {"users": n_users, "items": n_items, "k": k, "dim": dim, "chunked": chunked,
            "naive_per_user": naive, "full_matrix_gib": round(full_gib, 1), "speedup_vs_naive": speedup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--naive-users", type=int, default=200)
    ap.add_argument("--chunk-elements", type=int, default=1 << 24)
    ap.add_argument("--json", type=Path, default=Path("bench_scorer.json"))
    ap.add_argument("--skip-embedding", action="store_true")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the CPU, and CUDA when present)")
    ap.add_argument("--encoder", default="minilm",
                    help="registry name or folder; 'random:FOLDER' = that config and tokenizer, random weights")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    encoder = random_encoder(args.encoder.split(":", 1)[1]) if args.encoder.startswith("random:") else args.encoder
    machine = {"platform": platform.platform(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "encoder": args.encoder,
               "cuda": torch.cuda.get_device_name(0) if "cuda" in devices else None}
    report: dict[str, Any] = {"machine": machine, "embedding": {}, "topk": {}}
    for dev in devices:
        if not args.skip_embedding:
            report["embedding"][dev] = bench_embedding(args.texts, dev, encoder)
        report["topk"][dev] = bench_topk(args.users, args.items, args.k, args.dim, dev, args.chunk_elements,
                                         args.naive_users)
    rows = [("device", "texts/s", "chunked scores/s", "naive scores/s", "speed-up", "chunked s", "peak MiB")]
    for dev in devices:
        t = report["topk"][dev]
        rows.append((dev, str(report["embedding"].get(dev, {}).get("texts_per_s", "-")),
                     f"{t['chunked']['scores_per_s']:.3g}", f"{t['naive_per_user']['scores_per_s']:.3g}",
                     f"{t['speedup_vs_naive']}x", str(t["chunked"]["seconds"]),
                     str(t["chunked"]["peak_scores_mib"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"top-{args.k} over {args.users} users x {args.items} items (full matrix would be "
          f"{report['topk'][devices[0]]['full_matrix_gib']} GiB)")
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
