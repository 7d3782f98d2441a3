"""Fine-tuning the scorer's BERT models on interaction logs, with sentence-transformers' losses and trainers.

* :func:`finetune_bi_encoder`: contrastive training of the MiniLM bi-encoder on item transitions of the
  training sequences: (item a, the item bought next b) pairs, ``MultipleNegativesRankingLoss`` with in-batch
  negatives plus one mined hard negative per pair (an item the zero-shot encoder ranks near ``b`` for ``a`` but
  that never followed ``a``). The scorer's text signal is a recency-weighted mean of history item embeddings, so
  the encoder is trained on exactly what it is used for: item text -> the texts of items that come next.
* :class:`CrossEncoderReranker`: an optional BERT classifier on (user text, item text) pairs, labelled 1 for
  the item the user took next and 0 for hard negatives from the first-stage ranking; at rank time it re-scores
  the first stage's top K and is blended with it.

Both split time-ordered: the validation pairs come from each user's *last* training transition, the training
pairs from the transitions before it; the trainers evaluate on the validation pairs, keep checkpoints, stop
early and restore the best one. bf16 is used on CUDA and on CPUs with native bf16 (see
:func:`generator.core.model_registry.train_dtype`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.core import model_registry  # by module: tests swap its encoder loader
from generator.core.model_registry import pick_device, resolve_model, train_dtype
from generator.rank.evaluate import EvalError, leave_last_out, metrics_from_ranks, target_ranks
from generator.rank.rerank import CrossEncoderReranker, RerankConfig, user_text

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Hyper-parameters of the contrastive bi-encoder fine-tune."""

    epochs: int = 1
    batch_size: int = 64
    """In-batch negatives per pair grow with the batch."""
    lr: float = 3e-5
    max_pairs: int = 12000
    """Cap on training pairs (the most frequent transitions first), to bound the time on CPU."""
    max_seq_length: int = 64
    eval_steps: int = 50
    patience: int = 3
    precision: str = "auto"
    seed: int = 0


def transition_pairs(histories: Sequence[np.ndarray]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train, valid) item transitions ``(a, b)``: valid is each history's last transition, train the earlier
    ones (time-ordered per user). Train pairs are de-duplicated and ordered by how often they occur (ties by
    item index)."""
    from collections import Counter

    train: Counter[tuple[int, int]] = Counter()
    valid: list[tuple[int, int]] = []
    for h in histories:
        h = np.asarray(h)
        pairs = [(int(a), int(b)) for a, b in zip(h[:-1], h[1:], strict=True) if a != b]
        if not pairs:
            continue
        valid.append(pairs[-1])
        train.update(pairs[:-1])
    return sorted(train, key=lambda p: (-train[p], p)), valid


def mine_hard_negatives(pairs: Sequence[tuple[int, int]], item_vecs: np.ndarray, followers: dict[int, set[int]],
                        rank_from: int = 5, rank_to: int = 30, seed: int = 0) -> list[int]:
    """One hard negative per pair: an item ranked ``rank_from..rank_to`` by cosine to ``a`` (close, but not the
    very nearest, which are often near-duplicates of the positive) that never followed ``a`` in training."""
    rng = np.random.default_rng(seed)
    vecs = torch.from_numpy(np.ascontiguousarray(item_vecs, dtype=np.float32))
    rank_to = min(rank_to, len(vecs) - 1)
    rank_from = min(rank_from, rank_to)
    out: list[int] = []
    for s in range(0, len(pairs), 1024):
        chunk = pairs[s:s + 1024]
        a = torch.tensor([p[0] for p in chunk])
        top = torch.topk(vecs[a] @ vecs.T, rank_to + 1, dim=1).indices.numpy()
        for (ai, bi), row in zip(chunk, top, strict=True):
            cands = [int(c) for c in row[rank_from:] if c != ai and c != bi and c not in followers.get(ai, ())]
            out.append(int(rng.choice(cands)) if cands else int(rng.integers(len(item_vecs))))
    return out


def _training_args(out: Path, cfg: Any, n_train: int, device: torch.device, cls: Any) -> Any:
    """Trainer arguments shared by the bi- and cross-encoder fine-tunes (eval, checkpoints, early stopping)."""
    bf16 = train_dtype(device, cfg.precision) == torch.bfloat16
    steps = max(1, n_train // cfg.batch_size) * cfg.epochs
    eval_steps = max(1, min(cfg.eval_steps, steps))
    return cls(
        output_dir=str(out), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, learning_rate=cfg.lr, warmup_ratio=0.1, seed=cfg.seed,
        bf16=bf16, use_cpu=device.type == "cpu", eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="steps", save_steps=eval_steps, save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model="eval_loss", greater_is_better=False, logging_steps=eval_steps, report_to=[],
        dataloader_num_workers=0, disable_tqdm=False)


def finetune_bi_encoder(encoder_name: str, item_texts: Sequence[str], histories: Sequence[np.ndarray],
                        item_vecs: np.ndarray, out_dir: Path, cfg: FinetuneConfig | None = None, *,
                        device: str | None = None) -> dict[str, Any]:
    """Fine-tune ``encoder_name`` contrastively on the transitions of ``histories`` and save it in ``out_dir``.

    ``item_vecs`` are the zero-shot embeddings (used to mine hard negatives). Returns training figures.
    """
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers import EarlyStoppingCallback

    cfg = cfg or FinetuneConfig()
    t0 = time.perf_counter()
    train_pairs, valid_pairs = transition_pairs(histories)
    train_pairs = train_pairs[:cfg.max_pairs]
    if len(train_pairs) < 8 or not valid_pairs:
        raise EvalError("too few item transitions to fine-tune the encoder (need users with three or more events)")
    followers: dict[int, set[int]] = {}
    for h in histories:
        for a, b in zip(h[:-1], h[1:], strict=True):
            followers.setdefault(int(a), set()).add(int(b))
    negs = mine_hard_negatives(train_pairs, item_vecs, followers, seed=cfg.seed)
    vneg = mine_hard_negatives(valid_pairs, item_vecs, followers, seed=cfg.seed + 1)

    def dataset(pairs: Sequence[tuple[int, int]], neg: Sequence[int]) -> Any:
        return Dataset.from_dict({"anchor": [item_texts[a] for a, _ in pairs],
                                  "positive": [item_texts[b] for _, b in pairs],
                                  "negative": [item_texts[n] for n in neg]})

    dev = pick_device(device)
    model = model_registry.load_sentence_encoder(encoder_name, device=str(dev))
    model.max_seq_length = cfg.max_seq_length
    ckpt = Path(out_dir).with_name(Path(out_dir).name + ".checkpoints")
    args = _training_args(ckpt, cfg, len(train_pairs), dev, SentenceTransformerTrainingArguments)
    args.batch_sampler = BatchSamplers.NO_DUPLICATES  # a duplicate text in a batch would be a false negative
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset(train_pairs, negs),
        eval_dataset=dataset(valid_pairs[:2000], vneg[:2000]), loss=MultipleNegativesRankingLoss(model),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)])
    result = trainer.train()
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    model.save(str(out_dir))
    shutil.rmtree(ckpt, ignore_errors=True)
    return {"train_pairs": len(train_pairs), "valid_pairs": len(valid_pairs), "steps": trainer.state.global_step,
            "train_loss": round(float(result.training_loss), 4),
            "eval_loss_first": round(evals[0], 4) if evals else None,
            "eval_loss_best": round(min(evals), 4) if evals else None,
            "bf16": bool(args.bf16), "seconds": round(time.perf_counter() - t0, 1)}


def train_cross_encoder(encoder_name: str, item_texts: Sequence[str], histories: Sequence[np.ndarray],
                        first_stage: Any, out_dir: Path, cfg: RerankConfig | None = None, *,
                        device: str | None = None) -> dict[str, Any]:
    """Train the re-ranker on users' last training transitions: (user text before it, the item taken) = 1,
    first-stage top-K items that were not taken = 0. Saved in ``out_dir``; returns figures and the blend weight
    chosen on the validation users (NDCG@10 of the re-ranked list)."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import EarlyStoppingCallback

    cfg = cfg or RerankConfig()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    users = [n for n, h in enumerate(histories) if len(h) >= 2]
    rng.shuffle(users)
    n_valid = max(1, min(500, len(users) // 5))
    valid_users, train_users = users[:n_valid], users[n_valid:n_valid + cfg.max_users]
    if len(train_users) < 4:
        raise EvalError("too few users with two or more training events to train a re-ranker")

    def examples(idx: Sequence[int]) -> tuple[dict[str, list[Any]], Any]:
        split = leave_last_out([str(i) for i in idx], [histories[i] for i in idx])
        with torch.no_grad():
            sc = first_stage(split.histories)
        top = torch.topk(sc, min(cfg.top_k, sc.shape[1]), dim=1).indices.numpy()
        q, d, y = [], [], []
        for h, t, row in zip(split.histories, split.targets, top, strict=True):
            text = user_text(item_texts, h, cfg.history_items)
            q.append(text), d.append(item_texts[int(t)]), y.append(1.0)
            negs = [int(i) for i in row if i != t][:cfg.negatives]
            for i in negs:
                q.append(text), d.append(item_texts[i]), y.append(0.0)
        return {"query": q, "document": d, "label": y}, (split, sc)

    train_rows, _ = examples(train_users)
    valid_rows, (vsplit, vscores) = examples(valid_users)
    dev = pick_device(device)
    model = CrossEncoder(resolve_model(encoder_name), num_labels=1, max_length=cfg.max_seq_length,
                         device=str(dev))
    ckpt = Path(out_dir).with_name(Path(out_dir).name + ".checkpoints")
    args = _training_args(ckpt, cfg, len(train_rows["label"]), dev, CrossEncoderTrainingArguments)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(train_rows),
                                  eval_dataset=Dataset.from_dict(valid_rows),
                                  loss=BinaryCrossEntropyLoss(model),
                                  callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)])
    trainer.train()
    model.save(str(out_dir))
    shutil.rmtree(ckpt, ignore_errors=True)
    # the blend weight, chosen on the validation users
    best_w, best = 0.0, metrics_from_ranks(target_ranks(vscores, vsplit.targets), (10,))["ndcg@10"]
    before = best
    for w in (0.25, 0.5, 1.0, 2.0, 4.0):
        rr = CrossEncoderReranker(model, cfg, w).rerank(vscores, vsplit.histories, item_texts)
        v = metrics_from_ranks(target_ranks(rr, vsplit.targets), (10,))["ndcg@10"]
        if v > best:
            best_w, best = w, v
    return {"train_pairs": len(train_rows["label"]), "valid_users": len(valid_users), "weight": best_w,
            "valid_ndcg10_first_stage": round(before, 5), "valid_ndcg10_reranked": round(best, 5),
            "seconds": round(time.perf_counter() - t0, 1)}
