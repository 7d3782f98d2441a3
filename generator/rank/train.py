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
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from generator.rank.evaluate import (
    PopularityRanker,
    SequenceData,
    Split,
    TextRanker,
    TransitionKNN,
    evaluate_ranker,
    leave_last_out,
    zscore,
)
from generator.rank.finetune import (
    CrossEncoderReranker,
    FinetuneConfig,
    RerankConfig,
    finetune_bi_encoder,
    train_cross_encoder,
)
from generator.rank.ltr import SIGNAL_NAMES, LtrConfig, LtrContext, LtrReranker, train_ltr

if TYPE_CHECKING:
    from generator.rank.scorer import Scorer
    from generator.store import Store

log = logging.getLogger(__name__)


@dataclass
class SeqConfig:
    """Hyper-parameters of the sequence model."""

    dim: int = 64
    """Width of item representations and transformer."""
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    """Only the last ``max_len`` items of a history are used."""
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 5
    """Stop after this many epochs without a better validation NDCG@10."""
    seed: int = 0
    text_init: bool = True
    """Start item representations from the text embeddings (else random)."""


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


class SeqModel(nn.Module):
    """SASRec-style next-item model whose item table starts from text embeddings."""

    def __init__(self, text_vecs: np.ndarray, cfg: SeqConfig):
        super().__init__()
        n, d_text = text_vecs.shape
        self.cfg = cfg
        self.n_items = n
        self.register_buffer("text", torch.from_numpy(np.ascontiguousarray(text_vecs, dtype=np.float32)))
        self.proj = nn.Linear(d_text, cfg.dim)
        self.item_id = nn.Embedding(n + 1, cfg.dim, padding_idx=n)  # row n = padding
        nn.init.normal_(self.item_id.weight, std=0.0 if cfg.text_init else 0.1)
        with torch.no_grad():
            self.item_id.weight[n].zero_()
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=cfg.dim * 2,
                                           dropout=cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def item_table(self) -> torch.Tensor:
        """Representations of all items ``(n_items, dim)``."""
        ids = self.item_id.weight[: self.n_items]
        return (self.proj(self.text) if self.cfg.text_init else 0) + ids

    def hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, dim)`` of left-padded sequences (padding = ``n_items``)."""
        b, length = seqs.shape
        table = torch.cat([self.item_table(), torch.zeros(1, self.cfg.dim)], 0)
        x = table[seqs] * math.sqrt(self.cfg.dim) + self.pos(torch.arange(length))[None]
        x = self.drop(x)
        pad = seqs == self.n_items
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
        mask = causal[None] | pad[:, None, :]
        eye = torch.eye(length, dtype=torch.bool)[None]
        mask = mask & ~eye  # every position may attend to itself (padding rows stay finite)
        mask = mask.repeat_interleave(self.cfg.heads, 0)
        return self.norm(self.encoder(x, mask=mask))

    def user_states(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        seqs = pad_left(histories, self.cfg.max_len, self.n_items)
        return self.hidden(seqs)[:, -1]

    def score(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return self.user_states(histories) @ self.item_table().T


def pad_left(seqs: Sequence[np.ndarray], max_len: int, pad: int) -> torch.Tensor:
    length = max(1, min(max_len, max((len(s) for s in seqs), default=1)))
    out = np.full((len(seqs), length), pad, dtype=np.int64)
    for r, s in enumerate(seqs):
        s = np.asarray(s)[-length:]
        if len(s):
            out[r, -len(s):] = s
    return torch.from_numpy(out)


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


# blending -------------------------------------------------------------------------------------------------
SIGNALS = SIGNAL_NAMES  # one list of signals for the blend and the learned fusion


class TrainedCollab:
    """The trained part of a scorer: sequence model, transitions, blend weights and the optional learned fusion
    over a fixed vocabulary."""

    def __init__(self, item_ids: Sequence[str], seq_model: SeqModel | None, transitions: TransitionKNN,
                 weights: dict[str, float], text_decay: float = 0.3, popularity: np.ndarray | None = None):
        self.item_ids = list(item_ids)
        self.vocab = {i: n for n, i in enumerate(self.item_ids)}
        self.seq_model = seq_model
        self.transitions = transitions
        self.weights = {k: float(weights.get(k, 0.0)) for k in SIGNALS}
        self.text_decay = text_decay
        self.popularity = (np.zeros(len(self.item_ids), np.float32) if popularity is None
                           else np.asarray(popularity, dtype=np.float32))
        """``log1p`` of each vocabulary item's count in the training sequences."""
        self.successors = np.log1p(np.diff(transitions.matrix.indptr)).astype(np.float32)
        """``log1p`` of each item's number of distinct transition neighbours."""
        self.ltr: LtrReranker | None = None
        self.reranker: CrossEncoderReranker | None = None

    def signals(self, histories: Sequence[np.ndarray], item_vecs: np.ndarray,
                text_scores: torch.Tensor | None = None, with_text: bool = True) -> dict[str, torch.Tensor]:
        """Raw signals ``(users, vocab)`` for histories given as vocabulary indices: those with a blend weight,
        all of them when the learned fusion needs them (``text`` only ``with_text``)."""
        need = {k for k in SIGNALS if (self.weights[k] or self.ltr is not None) and (with_text or k != "text")}
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if "text" in need:
                out["text"] = text_scores if text_scores is not None else \
                    TextRanker(item_vecs, self.text_decay).score(histories)
            if "text_last" in need:
                out["text_last"] = TextRanker(item_vecs, 0.0, 1).score(histories)
            if "seq" in need and self.seq_model is not None:
                out["seq"] = self.seq_model.score(histories)
            if "trans" in need:
                out["trans"] = self.transitions.score(histories)
        return out

    def blend(self, signals: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for k, v in signals.items():
            w = self.weights.get(k, 0.0)
            if w:
                total = w * zscore(v) if total is None else total + w * zscore(v)
        if total is None:
            raise ValueError("all blend weights are zero")
        return total

    def context(self, histories: Sequence[np.ndarray], popularity: np.ndarray | None = None) -> LtrContext:
        """The learned fusion's per-user facts for vocabulary-index histories (``popularity`` over the ranked
        columns; default: the vocabulary's)."""
        last = np.array([h[-1] if len(h) else -1 for h in histories], dtype=np.int64)
        succ = np.where(last >= 0, self.successors[np.maximum(last, 0)], 0.0).astype(np.float32)
        return LtrContext(self.popularity if popularity is None else popularity,
                          np.array([len(h) for h in histories], dtype=np.float32), succ)

    def score(self, text_scores: torch.Tensor, histories: Sequence[Sequence[int]], catalog_ids: Sequence[str],
              item_vecs: np.ndarray, item_texts: Sequence[str] | None = None) -> torch.Tensor:
        """Scores over the shop's catalog: the blend of the signals (items unknown at training time get the
        collaborative signals' row mean), re-ordered by the learned fusion when there is one; with a
        cross-encoder re-ranker and ``item_texts``, its top K are re-scored by it."""
        col = np.array([self.vocab.get(i, -1) for i in catalog_ids])
        known = col >= 0
        if not known.any():
            return text_scores
        to_vocab = np.full(len(catalog_ids), -1)
        to_vocab[known] = col[known]
        hist_v = [np.array([to_vocab[i] for i in h if to_vocab[i] >= 0], dtype=np.int64) for h in histories]
        vocab_vecs = np.zeros((len(self.item_ids), item_vecs.shape[1]), dtype=np.float32)
        vocab_vecs[col[known]] = item_vecs[known]
        cols = torch.from_numpy(col[known])
        idx = torch.from_numpy(np.nonzero(known)[0])
        sig = {"text": text_scores}
        for k, v in self.signals(hist_v, vocab_vecs, with_text=False).items():
            full = v.mean(1, keepdim=True).expand(-1, len(catalog_ids)).clone()
            full[:, idx] = v[:, cols]
            sig[k] = full
        out = self.blend(sig)
        if self.ltr is not None:
            pop = np.zeros(len(catalog_ids), np.float32)
            pop[known] = self.popularity[col[known]]
            out = self.ltr.rerank(out, sig, self.context(hist_v, pop))
        if self.reranker is not None and item_texts is not None:
            out = self.reranker.rerank(out, [np.asarray(h, dtype=np.int64) for h in histories], item_texts)
        return out

    def ranker_for(self, scorer: Scorer, data: SequenceData) -> Any:
        """An eval ranker (histories of catalog indices -> scores) over ``data``'s catalog."""
        item_vecs = scorer.embed_cached(data.item_texts, progress=False)

        def rank(histories: Sequence[np.ndarray]) -> torch.Tensor:
            text = TextRanker(item_vecs, self.text_decay).score(histories)
            return self.score(text, histories, data.item_ids, item_vecs, data.item_texts)

        return rank


def log_popularity(seqs: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``log1p`` of each item's count in ``seqs``."""
    return np.log1p(PopularityRanker(seqs, n_items).counts).astype(np.float32)


def tune_weights(signals: dict[str, torch.Tensor], targets: np.ndarray, rounds: int = 2,
                 grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0),
                 ) -> tuple[dict[str, float], float]:
    """Coordinate ascent on blend weights, maximising NDCG@10 (then Recall@10) on a validation slice."""
    from generator.rank.evaluate import metrics_from_ranks, target_ranks

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
    from generator.core.config import get_settings
    from generator.rank.evaluate import encode_catalog, load_sequences, metrics_from_ranks, target_ranks
    opt = options or TrainOptions()
    if opt.fusion not in ("linear", "ltr"):
        from generator.rank.evaluate import EvalError

        raise EvalError(f"fusion must be 'linear' or 'ltr', not {opt.fusion!r}")
    t0 = time.perf_counter()
    torch.manual_seed(opt.seed)
    data = load_sequences(items, events)
    outer = leave_last_out(data.user_ids, data.seqs)  # histories = everything we may train on
    inner = leave_last_out(outer.users, outer.histories)  # tuning slice: last training item per user
    if len(inner.targets) < 10:
        from generator.rank.evaluate import EvalError

        raise EvalError("too little data to train: need users with at least three events")
    log.info("encoding %d item texts with %s", data.n_items, opt.encoder)
    vecs = encode_catalog(data.item_texts, opt.encoder, device=opt.device, store_url=opt.store_url,
                          progress=opt.progress)
    folder = out_dir or (get_settings().scorers_dir / name)
    staged: dict[str, Path] = {}
    extra: dict[str, Any] = {}
    if opt.finetune_encoder:
        staged["encoder"] = folder.with_name(f".{folder.name}.encoder.tmp")
        log.info("fine-tuning %s contrastively on item transitions", opt.encoder)
        extra["encoder_finetune"] = finetune_bi_encoder(opt.encoder, data.item_texts, outer.histories, vecs,
                                                        staged["encoder"], opt.finetune, device=opt.device)
        from generator.core.model_registry import load_sentence_encoder

        enc = load_sentence_encoder(str(staged["encoder"]), device=opt.device)
        vecs = np.asarray(enc.encode(data.item_texts, batch_size=64, normalize_embeddings=True,
                                     show_progress_bar=opt.progress), dtype=np.float32)
        del enc
    seq_cfg = SeqConfig(**{**asdict(opt.seq), "max_epochs": opt.max_epochs, "seed": opt.seed})
    inner_train = [h[:-1] for h in outer.histories]
    model, report = train_seq_model(inner_train, vecs, seq_cfg, valid=inner, progress=opt.progress)
    trans = TransitionKNN(inner.histories, data.n_items, decay=opt.trans_decay, window=opt.trans_window,
                          backward=opt.trans_backward)
    probe = TrainedCollab(data.item_ids, model, trans, dict.fromkeys(SIGNALS, 1.0), opt.text_decay,
                          popularity=log_popularity(inner.histories, data.n_items))
    sig = {}
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
    del blended
    single = {k: metrics_from_ranks(target_ranks(v, inner.targets))["ndcg@10"] for k, v in signals.items()}
    del signals, sig
    # refit on the whole training part with the chosen number of epochs
    final_model, final_report = train_seq_model(outer.histories, vecs, seq_cfg, epochs=report.best_epoch,
                                                progress=opt.progress)
    final_trans = TransitionKNN(outer.histories, data.n_items, decay=opt.trans_decay, window=opt.trans_window,
                                backward=opt.trans_backward)
    collab = TrainedCollab(data.item_ids, final_model, final_trans, weights, opt.text_decay,
                           popularity=log_popularity(outer.histories, data.n_items))
    collab.ltr = ltr
    if opt.rerank_k:
        staged["reranker"] = folder.with_name(f".{folder.name}.reranker.tmp")
        rcfg = RerankConfig(**{**asdict(opt.rerank), "top_k": opt.rerank_k})

        def first_stage(hs: Sequence[np.ndarray]) -> torch.Tensor:
            return collab.blend(collab.signals(hs, vecs))

        extra["rerank"] = {**asdict(rcfg), **train_cross_encoder(
            opt.encoder, data.item_texts, outer.histories, first_stage, staged["reranker"], rcfg,
            device=opt.device)}
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


def load_trained(cls: type[Scorer], folder: Path, *, store: Store | None = None,
                 device: str | None = None) -> Scorer:
    """Rebuild a :class:`Scorer` with its trained collaborative part from ``folder``."""
    import scipy.sparse as sp

    from generator.core.model_registry import load_sentence_encoder
    from generator.rank.scorer import ScorerConfig, ScorerError, read_meta

    try:
        meta = read_meta(folder)
        item_ids = json.loads((folder / "item_ids.json").read_text(encoding="utf-8"))
        trans = TransitionKNN.__new__(TransitionKNN)
        hp = meta["hyperparameters"]
        trans.n_items, trans.decay, trans.window = len(item_ids), hp["trans_decay"], hp["trans_window"]
        trans.matrix = sp.csr_matrix(sp.load_npz(folder / "transitions.npz"), dtype=np.float32)
        seq_model = None
        if (folder / "seq_model.pt").exists():
            blob = torch.load(folder / "seq_model.pt", map_location="cpu", weights_only=True)
            cfg = SeqConfig(**blob["config"])
            text = blob["state"]["text"].numpy()
            seq_model = SeqModel(text, cfg)
            seq_model.load_state_dict(blob["state"])
            seq_model.eval()
        pop = np.load(folder / "popularity.npy") if (folder / "popularity.npy").exists() else None
        collab = TrainedCollab(item_ids, seq_model, trans, meta["blend"], hp["text_decay"], popularity=pop)
        if (meta.get("ltr") or {}).get("used"):
            cfg_ltr = LtrConfig(**meta["ltr"]["config"])
            collab.ltr = LtrReranker.load(folder, cfg_ltr)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ScorerError(f"cannot load trained scorer from {folder}: {exc}") from exc
    if meta.get("rerank"):
        rcfg = RerankConfig(**{k: v for k, v in meta["rerank"].items() if k in RerankConfig.__dataclass_fields__})
        collab.reranker = CrossEncoderReranker.load(folder / "reranker", rcfg, meta["rerank"]["weight"], device)
    if meta.get("encoder_finetuned"):
        # its vectors differ from the zero-shot encoder's: a cache key of their own
        encoder = load_sentence_encoder(str(folder / "encoder"), device=device)
        key = f"finetuned:{meta['data']['fingerprint']}:{meta['created_at']}"
    else:
        encoder, key = load_sentence_encoder(meta["encoder"], device=device), meta["encoder"]
    config = ScorerConfig(recency_decay=hp["text_decay"], profile_text_weight=0.0)
    return cls(encoder, key, store=store, config=config, collab=collab, name=folder.name, meta=meta)
