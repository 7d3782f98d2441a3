"""The re-rankers a trained scorer serves with: the LightGBM LambdaMART fusion of the signals (trained by
:mod:`generator.rank.ltr`) and the BERT cross-encoder over the top K (trained by :mod:`generator.rank.finetune`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.core.model_registry import pick_device
from generator.rank.signals import zscore

SIGNAL_NAMES = ("text", "text_last", "seq", "trans")


FEATURES = ("blend", "blend_logrank",
            *(f"{s}{suffix}" for s in SIGNAL_NAMES for suffix in ("", "_z", "_logrank")),
            "popularity", "history_len", "last_successors", "trans_rel")


@dataclass
class LtrConfig:
    """Hyper-parameters of the LambdaMART re-ranker."""

    candidates: int = 100
    """Re-rank this many items of the linear blend per user."""
    num_leaves: int = 15
    learning_rate: float = 0.02
    min_child_samples: int = 100
    max_trees: int = 1000
    early_stopping: int = 50
    """Stop adding trees after this many without a better held-out NDCG@10."""
    bags: int = 3
    """Models trained with different seeds (row and feature subsampling); their per-user standardised scores are
    averaged, which steadies the ranking (single models differ by about 0.0015 NDCG@10 on Amazon Scientific)."""
    valid_fraction: float = 0.2
    """Share of tuning-slice users held out for early stopping and the keep-or-drop check."""
    seed: int = 0


@dataclass
class LtrContext:
    """Per-item and per-user facts the features need, over the columns being ranked."""

    popularity: np.ndarray
    """``log1p`` of each column's count in the training sequences."""
    history_len: np.ndarray
    """Per user: number of history items."""
    last_successors: np.ndarray
    """Per user: ``log1p`` of the number of distinct items observed after their last item (0: empty history)."""


def features(signals: dict[str, torch.Tensor], blend: torch.Tensor, top: torch.Tensor,
             ctx: LtrContext) -> np.ndarray:
    """Feature rows ``(users * N, len(FEATURES))`` for the candidates ``top`` ``(users, N)``."""
    users, n = top.shape
    cols = [blend.gather(1, top), torch.arange(n, dtype=torch.float32).log1p().expand(users, -1)]
    for name in SIGNAL_NAMES:
        s = signals[name].float() if name in signals else torch.zeros_like(blend)
        rank = torch.argsort(torch.argsort(s, dim=1, descending=True, stable=True), dim=1, stable=True)
        cols += [s.gather(1, top), zscore(s).gather(1, top), rank.gather(1, top).float().log1p()]
    cols.append(torch.from_numpy(ctx.popularity).float()[top])
    cols.append(torch.from_numpy(ctx.history_len).float()[:, None].expand(-1, n))
    cols.append(torch.from_numpy(ctx.last_successors).float()[:, None].expand(-1, n))
    t = signals["trans"].float() if "trans" in signals else torch.zeros_like(blend)
    cols.append(t.gather(1, top) / t.max(1, keepdim=True).values.clamp_min(1e-6))
    return torch.stack(cols, -1).reshape(users * n, len(FEATURES)).numpy()


class LtrReranker:
    """Trained LambdaMART models (a bag of seeds) that re-order each user's top N of the linear blend."""

    def __init__(self, boosters: Sequence[Any], cfg: LtrConfig):
        self.boosters, self.cfg = list(boosters), cfg

    def predict(self, rows: np.ndarray, per_user: int) -> np.ndarray:
        """Mean of the bag's per-user standardised scores, shaped ``(users, per_user)``."""
        total = np.zeros((len(rows) // per_user, per_user), dtype=np.float64)
        for b in self.boosters:
            p = np.asarray(b.predict(rows, num_iteration=b.best_iteration or None)).reshape(-1, per_user)
            total += (p - p.mean(1, keepdims=True)) / (p.std(1, keepdims=True) + 1e-9)
        return (total / len(self.boosters)).astype(np.float32)

    def rerank(self, blend: torch.Tensor, signals: dict[str, torch.Tensor], ctx: LtrContext) -> torch.Tensor:
        """``blend`` with each row's top N replaced by the re-ranker's order (kept above every other item)."""
        n = min(self.cfg.candidates, blend.shape[1])
        top = torch.topk(blend, n, dim=1).indices
        pred = torch.from_numpy(self.predict(features(signals, blend, top, ctx), n))
        out = blend.clone().float()
        floor = out.max() + 1.0 - pred.min()
        out.scatter_(1, top, floor + pred)
        return out

    def save(self, folder: Path) -> None:
        for n, b in enumerate(self.boosters):
            b.save_model(str(Path(folder) / f"ltr-{n}.txt"))

    @classmethod
    def load(cls, folder: Path, cfg: LtrConfig) -> LtrReranker:
        import lightgbm as lgb

        files = sorted(Path(folder).glob("ltr-*.txt"), key=lambda p: int(p.stem.split("-")[1]))
        if not files:
            raise FileNotFoundError(f"no ltr-*.txt in {folder}")
        return cls([lgb.Booster(model_file=str(f)) for f in files], cfg)


# cross-encoder re-ranker ------------------------------------------------------------------------------------
@dataclass
class RerankConfig:
    """Hyper-parameters of the cross-encoder re-ranker."""

    top_k: int = 20
    """How many first-stage items are re-scored per user."""
    negatives: int = 3
    """Hard negatives per positive, from the first stage's top ranks."""
    max_users: int = 3000
    """Users whose last training transition makes the training pairs (bounds the time on CPU)."""
    history_items: int = 3
    """Most recent history items in the user text."""
    epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-5
    max_seq_length: int = 160
    eval_steps: int = 100
    patience: int = 3
    precision: str = "auto"
    seed: int = 0


def user_text(item_texts: Sequence[str], history: np.ndarray, n: int) -> str:
    """The user side of a cross-encoder pair: their last ``n`` items' texts, most recent first."""
    return " | ".join(item_texts[int(i)] for i in np.asarray(history)[::-1][:n])


class CrossEncoderReranker:
    """Re-scores the first stage's top K with a BERT cross-encoder and blends the two (z-scored within the K)."""

    def __init__(self, model: Any, cfg: RerankConfig, weight: float = 1.0):
        self.model, self.cfg, self.weight = model, cfg, weight

    @classmethod
    def load(cls, folder: Path, cfg: RerankConfig, weight: float, device: str | None = None) -> CrossEncoderReranker:
        from sentence_transformers import CrossEncoder

        return cls(CrossEncoder(str(folder), device=str(pick_device(device))), cfg, weight)

    def rerank(self, scores: torch.Tensor, histories: Sequence[np.ndarray], item_texts: Sequence[str]
               ) -> torch.Tensor:
        """``scores`` with each row's top K replaced by the blend (kept above every item outside the K)."""
        k = min(self.cfg.top_k, scores.shape[1])
        top = torch.topk(scores, k, dim=1)
        pairs = [(user_text(item_texts, h, self.cfg.history_items), item_texts[int(i)])
                 for h, row in zip(histories, top.indices, strict=True) for i in row]
        ce = torch.as_tensor(np.asarray(self.model.predict(pairs, batch_size=64, show_progress_bar=False),
                                        dtype=np.float32)).view(len(histories), k)
        blended = zscore(top.values.float()) + self.weight * zscore(ce)
        out = scores.clone().float()
        floor = out.max() + 1.0 + blended.abs().max()  # the K stay on top, in their new order
        out.scatter_(1, top.indices, floor + blended)
        return out
