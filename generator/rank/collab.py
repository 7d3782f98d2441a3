"""The trained part of a scorer as it serves: the sequence model, the transitions, the blend and the learned
fusion over a fixed vocabulary, and :func:`load_trained`, which rebuilds it from a scorer folder. Serving imports
this, never the training in :mod:`generator.rank.train`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from generator.core.errors import ScorerError
from generator.rank.rerank import SIGNAL_NAMES, CrossEncoderReranker, LtrConfig, LtrContext, LtrReranker, RerankConfig
from generator.rank.signals import TextRanker, TransitionKNN, zscore

if TYPE_CHECKING:
    from generator.rank.evaluate import SequenceData
    from generator.rank.scorer import Scorer


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


def read_meta(folder: Path) -> dict[str, Any]:
    """The metadata a trained scorer was saved with."""
    return json.loads((folder / "scorer.json").read_text(encoding="utf-8"))


def load_trained(folder: Path, *, device: str | None = None) -> tuple[TrainedCollab, dict[str, Any]]:
    """The trained collaborative part saved in a scorer ``folder``, and the folder's metadata."""
    import scipy.sparse as sp

    try:
        meta = read_meta(folder)
        item_ids = json.loads((folder / "item_ids.json").read_text(encoding="utf-8"))
        hp = meta["hyperparameters"]
        trans = TransitionKNN.from_matrix(sp.load_npz(folder / "transitions.npz"), decay=hp["trans_decay"],
                                          window=hp["trans_window"])
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
    return collab, meta
