"""Training the scorer on interaction logs: a sequence model over text-initialised items, blended with text.

The trained scorer ranks with three signals, z-normalised per user and blended with weights tuned on a
validation slice carved from the training data (never on the evaluation target):

* ``text``: cosine between the MiniLM item embeddings and the recency-weighted history aggregate;
* ``seq``: a small SASRec-style transformer (causal, a few layers) over item representations that start from
  the MiniLM text embeddings (a learned projection plus a learned per-item correction), trained with full
  softmax cross-entropy on next-item prediction, AdamW, early stopping on the validation slice;
* ``trans``: item-to-item transition kNN (co-occurrence of consecutive items in the training sequences).

With ``fusion="ltr"`` (the default), a LightGBM LambdaMART model then re-orders each user's top 100 of the blend
with per-user context (:mod:`generator.rank.ltr`); it is trained on the same tuning slice and kept only if it
beats the blend on users held out from it.

Time-ordered split: every user's sequence used for training ends before their evaluation target; the tuning
slice is each user's *last training item* (the model being tuned is fitted on the items before it). After
tuning, the model is refitted on the whole training part with the chosen number of epochs.

Optional (:mod:`generator.rank.finetune`): ``finetune_encoder`` first fine-tunes the MiniLM bi-encoder
contrastively on item transitions (sentence-transformers' ``MultipleNegativesRankingLoss`` with in-batch and mined
hard negatives, its trainer), and everything above then starts from the fine-tuned embeddings; ``rerank_k`` trains a
cross-encoder re-ranker for the top K of the blend.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from generator.core import model_registry  # by module: tests swap its encoder loader
from generator.core.config import get_settings
from generator.rank.collab import SIGNALS, SeqConfig, SeqModel, TrainedCollab, pad_left
from generator.rank.evaluate import (
    EvalError,
    SequenceData,
    Split,
    encode_catalog,
    evaluate_ranker,
    leave_last_out,
    load_sequences,
    metrics_from_ranks,
    target_ranks,
)
from generator.rank.finetune import FinetuneConfig, finetune_bi_encoder, train_cross_encoder
from generator.rank.ltr import train_ltr
from generator.rank.rerank import LtrConfig, LtrReranker, RerankConfig
from generator.rank.signals import PopularityRanker, TransitionKNN, zscore

log = logging.getLogger(__name__)


@dataclass
class BlendConfig:
    """Weights of the z-normalised signals (tuned on the validation slice)."""

    text: float = 0.0
    seq: float = 1.0
    trans: float = 0.0
    text_decay: float = 0.5
    trans_decay: float = 0.5
    trans_window: int = 5
    trans_backward: float = 0.6


@dataclass
class TrainReport:
    epochs: int = 0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_seq_model(train_seqs: Sequence[np.ndarray], text_vecs: np.ndarray, cfg: SeqConfig,
                    valid: Split | None = None, epochs: int | None = None, progress: bool = True,
                    ) -> tuple[SeqModel, TrainReport]:
    """Train on next-item prediction over every prefix of ``train_seqs`` (full softmax, AdamW).

    With ``valid`` it early-stops on validation NDCG@10 and returns the best epoch's weights; otherwise it
    runs exactly ``epochs`` epochs.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = SeqModel(text_vecs, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    seqs = [np.asarray(s)[-(cfg.max_len + 1):] for s in train_seqs if len(s) >= 2]
    order = np.argsort([len(s) for s in seqs], kind="stable")
    report = TrainReport()
    best, best_state, bad = -1.0, None, 0
    n_epochs = epochs if epochs is not None else cfg.max_epochs
    t0 = time.perf_counter()
    bar = tqdm(range(n_epochs), desc="seq model", disable=not progress)
    for ep in bar:
        model.train()
        # batches of similar length (little padding), visited in random order
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        rng.shuffle(batches)
        total, count = 0.0, 0
        for b in batches:
            batch = [seqs[i] for i in b]
            x = pad_left([s[:-1] for s in batch], cfg.max_len, model.n_items)
            y = pad_left([s[1:] for s in batch], cfg.max_len, model.n_items)
            h = model.hidden(x)
            keep = y != model.n_items
            logits = h[keep] @ model.item_table().T
            loss = nn.functional.cross_entropy(logits, y[keep])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += float(loss.detach()) * int(keep.sum())
            count += int(keep.sum())
        row = {"epoch": ep + 1, "loss": total / max(count, 1)}
        if valid is not None:
            model.eval()
            m = evaluate_ranker(model, valid)
            row.update({"valid_recall@10": m["recall@10"], "valid_ndcg@10": m["ndcg@10"]})
            if m["ndcg@10"] > best:
                best, bad, report.best_epoch = m["ndcg@10"], 0, ep + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
        report.history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        log.info("seq epoch %d: %s (%.0f s, %.0f sequences/s)", ep + 1,
                 {k: round(v, 4) for k, v in row.items() if k != "epoch"}, time.perf_counter() - t0,
                 len(seqs) * (ep + 1) / (time.perf_counter() - t0))
        if valid is not None and bad >= cfg.patience:
            break
    report.epochs = len(report.history)
    if best_state is not None:
        model.load_state_dict(best_state)
    elif valid is None:
        report.best_epoch = report.epochs
    report.seconds = time.perf_counter() - t0
    model.eval()
    return model, report


def log_popularity(seqs: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``log1p`` of each item's count in ``seqs``."""
    return np.log1p(PopularityRanker(seqs, n_items).counts).astype(np.float32)


def tune_weights(signals: dict[str, torch.Tensor], targets: np.ndarray, rounds: int = 2,
                 grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0),
                 ) -> tuple[dict[str, float], float]:
    """Coordinate ascent on blend weights, maximising NDCG@10 (then Recall@10) on a validation slice."""
    z = {k: zscore(v) for k, v in signals.items()}
    weights = {k: 1.0 for k in z}

    def value(w: dict[str, float]) -> tuple[float, float]:
        if not any(w.values()):
            return (-1.0, -1.0)
        sc = sum(w[k] * z[k] for k in z if w[k])
        m = metrics_from_ranks(target_ranks(sc, targets), (10,))  # type: ignore[arg-type]
        return (m["ndcg@10"], m["recall@10"])

    best = value(weights)
    for _ in range(rounds):
        for k in z:
            for g in grid:
                trial = {**weights, k: g}
                v = value(trial)
                if v > best:
                    best, weights = v, trial
    return weights, best[0]


# the whole pipeline ---------------------------------------------------------------------------------------
@dataclass
class TrainOptions:
    encoder: str = "minilm"
    max_epochs: int = 60
    seed: int = 0
    device: str | None = None
    store_url: str | None = None
    seq: SeqConfig = field(default_factory=SeqConfig)
    text_decay: float = 0.3
    trans_decay: float = 0.5
    trans_window: int = 5
    trans_backward: float = 0.6
    finetune_encoder: bool = False
    """Fine-tune the MiniLM bi-encoder contrastively on item transitions first (sentence-transformers)."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    fusion: str = "ltr"
    """How the signals are combined: ``linear`` (the tuned weighted sum of z-scores) or ``ltr`` (that sum's top N
    re-ordered by a LightGBM LambdaMART model, kept only if it beats the sum on held-out tuning users)."""
    ltr: LtrConfig = field(default_factory=LtrConfig)
    rerank_k: int = 0
    """Train a cross-encoder re-ranker for the top K (0: none)."""
    rerank: RerankConfig = field(default_factory=RerankConfig)
    progress: bool = True


def train_scorer(items: str | Path, events: str | Path, *, name: str = "default",
                 options: TrainOptions | None = None,
                 out_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Train and save a scorer under ``scorers_dir/name`` (or ``out_dir``); returns ``(folder, metadata)``.

    Only each user's events *before* their last one are used (the last is the evaluation target).
    """
    opt = options or TrainOptions()
    if opt.fusion not in ("linear", "ltr"):

        raise EvalError(f"fusion must be 'linear' or 'ltr', not {opt.fusion!r}")
    t0 = time.perf_counter()
    torch.manual_seed(opt.seed)
    data = load_sequences(items, events)
    outer = leave_last_out(data.user_ids, data.seqs)  # histories = everything we may train on
    inner = leave_last_out(outer.users, outer.histories)  # tuning slice: last training item per user
    if len(inner.targets) < 10:

        raise EvalError("too little data to train: need users with at least three events")
    log.info("encoding %d item texts with %s", data.n_items, opt.encoder)
    vecs = encode_catalog(data.item_texts, opt.encoder, device=opt.device, store_url=opt.store_url,
                          progress=opt.progress)
    folder = out_dir or (get_settings().scorers_dir / name)
    staged: dict[str, Path] = {}
    extra: dict[str, Any] = {}
    if opt.finetune_encoder:
        vecs = _finetune_encoder(opt, data, outer.histories, vecs, folder, staged, extra)
    seq_cfg = SeqConfig(**{**asdict(opt.seq), "max_epochs": opt.max_epochs, "seed": opt.seed})
    model, report = train_seq_model([h[:-1] for h in outer.histories], vecs, seq_cfg, valid=inner,
                                    progress=opt.progress)
    fit = _fit_blend(opt, data, inner, model, vecs, extra)
    # refit on the whole training part with the chosen number of epochs
    final_model, final_report = train_seq_model(outer.histories, vecs, seq_cfg, epochs=report.best_epoch,
                                                progress=opt.progress)
    final_trans = TransitionKNN(outer.histories, data.n_items, decay=opt.trans_decay, window=opt.trans_window,
                                backward=opt.trans_backward)
    collab = TrainedCollab(data.item_ids, final_model, final_trans, fit.weights, opt.text_decay,
                           popularity=log_popularity(outer.histories, data.n_items))
    collab.ltr = fit.ltr
    if opt.rerank_k:
        _train_reranker(opt, data, outer.histories, collab, vecs, folder, staged, extra)
    weights, valid_metrics, single = fit.weights, fit.valid_metrics, fit.single
    meta = {
        "kind": "trained", "name": name, "encoder": opt.encoder, "base_model": "all-MiniLM-L6-v2 (BERT)",
        "encoder_finetuned": opt.finetune_encoder, **extra,
        "data": {"items": str(items), "events": str(events), "fingerprint": data.fingerprint(),
                 "users": len(data.user_ids), "n_items": data.n_items},
        "hyperparameters": {"seq": asdict(seq_cfg), "text_decay": opt.text_decay, "fusion": opt.fusion,
                            "trans_decay": opt.trans_decay, "trans_window": opt.trans_window,
                            "trans_backward": opt.trans_backward},
        "blend": weights, "valid_metrics": {k: round(v, 5) for k, v in valid_metrics.items()},
        "valid_ndcg10_per_signal": {k: round(v, 5) for k, v in single.items()},
        "seq_training": {"epochs_run": report.epochs, "best_epoch": report.best_epoch,
                         "history": report.history, "refit_seconds": round(final_report.seconds, 1)},
        "train_seconds": round(time.perf_counter() - t0, 1), "torch_threads": torch.get_num_threads(),
        "created_at": datetime.now(UTC).isoformat(),
    }
    save_trained(folder, collab, meta, staged)
    return folder, meta


def _finetune_encoder(opt: TrainOptions, data: SequenceData, histories: Sequence[np.ndarray], vecs: np.ndarray,
                      folder: Path, staged: dict[str, Path], extra: dict[str, Any]) -> np.ndarray:
    """Fine-tune the bi-encoder contrastively on item transitions (staged under ``encoder``); the catalog's
    vectors from it."""
    staged["encoder"] = folder.with_name(f".{folder.name}.encoder.tmp")
    log.info("fine-tuning %s contrastively on item transitions", opt.encoder)
    extra["encoder_finetune"] = finetune_bi_encoder(opt.encoder, data.item_texts, histories, vecs,
                                                    staged["encoder"], opt.finetune, device=opt.device)
    enc = model_registry.load_sentence_encoder(str(staged["encoder"]), device=opt.device)
    return np.asarray(enc.encode(data.item_texts, batch_size=64, normalize_embeddings=True,
                                 show_progress_bar=opt.progress), dtype=np.float32)


@dataclass
class _BlendFit:
    weights: dict[str, float]
    valid_metrics: dict[str, float]
    single: dict[str, float]
    ltr: LtrReranker | None


def _fit_blend(opt: TrainOptions, data: SequenceData, inner: Split, model: SeqModel, vecs: np.ndarray,
               extra: dict[str, Any]) -> _BlendFit:
    """On the tuning slice: the blend weights of the signals, their validation metrics, and the learned fusion
    when ``opt.fusion`` is ``ltr``."""
    trans = TransitionKNN(inner.histories, data.n_items, decay=opt.trans_decay, window=opt.trans_window,
                          backward=opt.trans_backward)
    probe = TrainedCollab(data.item_ids, model, trans, dict.fromkeys(SIGNALS, 1.0), opt.text_decay,
                          popularity=log_popularity(inner.histories, data.n_items))
    sig: dict[str, list[torch.Tensor]] = {}
    for s in range(0, len(inner.targets), 2048):
        part = probe.signals(inner.histories[s:s + 2048], vecs)
        for k, v in part.items():
            sig.setdefault(k, []).append(v)
    signals = {k: torch.cat(v) for k, v in sig.items()}
    weights, _ = tune_weights(signals, inner.targets)
    probe.weights = weights
    blended = probe.blend(signals)
    valid_metrics = metrics_from_ranks(target_ranks(blended, inner.targets))
    ltr = None
    if opt.fusion == "ltr":
        ltr, extra["ltr"] = train_ltr(signals, blended, inner.targets, inner.users, probe.context(inner.histories),
                                      LtrConfig(**{**asdict(opt.ltr), "seed": opt.seed}))
    single = {k: metrics_from_ranks(target_ranks(v, inner.targets))["ndcg@10"] for k, v in signals.items()}
    return _BlendFit(weights, valid_metrics, single, ltr)


def _train_reranker(opt: TrainOptions, data: SequenceData, histories: Sequence[np.ndarray], collab: TrainedCollab,
                    vecs: np.ndarray, folder: Path, staged: dict[str, Path], extra: dict[str, Any]) -> None:
    """The cross-encoder re-ranker over the blend's top ``rerank_k`` (staged under ``reranker``)."""
    staged["reranker"] = folder.with_name(f".{folder.name}.reranker.tmp")
    rcfg = RerankConfig(**{**asdict(opt.rerank), "top_k": opt.rerank_k})

    def first_stage(hs: Sequence[np.ndarray]) -> torch.Tensor:
        return collab.blend(collab.signals(hs, vecs))

    extra["rerank"] = {**asdict(rcfg), **train_cross_encoder(
        opt.encoder, data.item_texts, histories, first_stage, staged["reranker"], rcfg, device=opt.device)}


def save_trained(folder: Path, collab: TrainedCollab, meta: dict[str, Any],
                 staged: dict[str, Path] | None = None) -> Path:
    """Write a trained scorer folder atomically (a temp folder renamed into place); ``staged`` folders (a
    fine-tuned encoder, a re-ranker) are moved in under their keys."""
    import os
    import shutil

    import scipy.sparse as sp

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "item_ids.json").write_text(json.dumps(collab.item_ids), encoding="utf-8")
    sp.save_npz(tmp / "transitions.npz", collab.transitions.matrix)
    np.save(tmp / "popularity.npy", collab.popularity)
    if collab.ltr is not None:
        collab.ltr.save(tmp)
    if collab.seq_model is not None:
        torch.save({"config": asdict(collab.seq_model.cfg), "state": collab.seq_model.state_dict()},
                   tmp / "seq_model.pt")
    for key, path in (staged or {}).items():
        shutil.move(str(path), str(tmp / key))
    (tmp / "scorer.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


