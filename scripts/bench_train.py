"""LoRA training throughput: pushgen's loop against a plain Hugging Face ``Trainer``, same data and settings.

Both train the same LoRA (rank, alpha, target modules) on the same texts (prompt + target, loss on the
target only), with the same batch size, learning rate and number of optimizer steps. Throughput counts
real (non-padding) tokens per second of training steps. Prints a table and writes JSON.

    .venv/bin/python scripts/bench_train.py --pushes examples/shop/pushes.csv --steps 20 \\
        --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bench_pushgen(args: argparse.Namespace) -> dict[str, Any]:
    from generator.core.config import get_settings
    from generator.tune.train import LoraTrainConfig, train_adapter

    with tempfile.TemporaryDirectory() as reg:
        os.environ["PUSHGEN_ADAPTERS_DIR"] = reg
        get_settings.cache_clear()
        cfg = LoraTrainConfig(
            base=args.base,
            rank=args.rank,
            alpha=2 * args.rank,
            batch_size=args.batch_size,
            lr=args.lr,
            max_steps=args.steps,
            max_texts=args.texts,
            epochs=100,
            eval_every=10**9,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        res = train_adapter(args.pushes, "bench", cfg, progress=False, report=lambda s: None)
        wall = time.perf_counter() - t0
    m = res.info.metrics
    return {
        "steps": m["steps"],
        "tokens": m["train_tokens"],
        "step_seconds": m["train_seconds"],
        "tokens_per_s": m["tokens_per_s"],
        "wall_seconds_incl_load_and_valid": round(wall, 1),
    }


def bench_hf_trainer(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from generator.core.model_registry import load_causal_lm, pick_device, train_dtype
    from generator.tune.train import (
        ALL_PROJECTIONS,
        build_examples,
        cap_by_group,
        encode,
        load_items_near,
        load_pushes,
        split_by_group,
    )

    model, tok = load_causal_lm(args.base)
    model.train()
    examples = build_examples(load_pushes(args.pushes), tok, "bench", items=load_items_near(args.pushes))
    train, _ = split_by_group(examples, 0.1, args.seed)
    train = cap_by_group(train, args.texts, args.seed)
    rows = []
    for e in train:
        ids, n = encode(tok, e, 256)
        rows.append({"input_ids": ids, "labels": [-100] * (len(ids) - n) + ids[-n:]})
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.rank,
            lora_alpha=2 * args.rank,
            lora_dropout=0.0,  # pushgen's default
            target_modules=list(ALL_PROJECTIONS),
            task_type="CAUSAL_LM",
        ),
    )
    counted = {"tokens": 0}

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (
                torch.tensor(b["input_ids"]),
                torch.tensor(b["labels"]),
                1,
            )
        counted["tokens"] += int(mask.sum())
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=args.lr,
            lr_scheduler_type="cosine",
            warmup_steps=0,
            logging_steps=10**9,
            save_strategy="no",
            report_to=[],
            seed=args.seed,
            use_cpu=not torch.cuda.is_available(),
            # the precision pushgen picks: bf16 on CUDA and on CPUs with native bf16 (AMX), else fp32
            bf16=train_dtype(pick_device(None)) == torch.bfloat16,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collate)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {
        "steps": args.steps,
        "tokens": counted["tokens"],
        "step_seconds": round(seconds, 1),
        "tokens_per_s": round(counted["tokens"] / seconds, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pushes", default="examples/shop/pushes.csv")
    p.add_argument("--base", default="smollm2-135m",
                   help="registry name or folder; 'random:TOKENIZER_DIR' = SmolLM2-135M's architecture, random weights")
    p.add_argument("--texts", type=int, default=320, help="training texts (whole groups)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=Path("bench_train.json"))
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.base.startswith("random:"):
        from scripts.bench_common import random_smollm2_folder

        args.base = random_smollm2_folder(args.base.split(":", 1)[1] or None)

    import torch

    results = {"pushgen loop": bench_pushgen(args), "HF Trainer": bench_hf_trainer(args)}
    speedup = results["pushgen loop"]["tokens_per_s"] / max(results["HF Trainer"]["tokens_per_s"], 1e-9)
    print(f"{'run':<14}{'steps':>7}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}")
    for name, r in results.items():
        print(f"{name:<14}{r['steps']:>7}{r['tokens']:>9}{r['step_seconds']:>9.1f}{r['tokens_per_s']:>10.1f}")
    print(f"pushgen / Trainer throughput: {speedup:.2f}x  (threads: {torch.get_num_threads()})")
    out = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "results": results,
        "speedup": round(speedup, 3) if math.isfinite(speedup) else None,
    }
    args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
