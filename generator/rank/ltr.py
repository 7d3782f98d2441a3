"""Learned fusion of the scorer's signals: a LightGBM LambdaMART re-ranker over the linear blend's top N.

The linear blend gives every user the same weights. Which signal to trust, though, depends on the user and the
item: the transition kNN is sharp when the last item has many observed successors and silent otherwise, the
sequence model knows popular items well and rare ones poorly, and the text signal is all there is for an item
that was rarely bought. A gradient-boosted ranker sees that context and orders the blend's top N with it.

Features of a (user, candidate) pair (:data:`FEATURES`): the blend's score and log-rank; for each signal its raw
score, its per-user z-score and its log-rank over the whole catalogue; the item's log popularity in the training
sequences; the user's history length; the log number of observed successors of the user's last item; the
candidate's transition score relative to the user's best one.

Training (:func:`train_ltr`) uses the tuning slice of :mod:`generator.rank.train` (each user's last training
item, with every model fitted on the items before it), so the re-ranker learns on what the models predict for
an item they have not seen, exactly as at rank time. A fifth of those users (chosen by a hash of the user id)
is held out for early stopping and to check that the re-ranker beats the linear blend; if it does not, it is
not used. Three models with different seeds are trained and averaged (a bag), because one model's NDCG@10 moves by
about 0.0015 with its seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.core.data import unit_interval
from generator.rank.evaluate import metrics_from_ranks, target_ranks, zscore

log = logging.getLogger(__name__)

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


def _held_out(users: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Stable per-user choice (:func:`generator.core.data.unit_interval` of seed and id)."""
    return np.asarray([unit_interval(seed, u) for u in users]) < fraction


def train_ltr(signals: dict[str, torch.Tensor], blend: torch.Tensor, targets: np.ndarray, users: Sequence[str],
              ctx: LtrContext, cfg: LtrConfig | None = None) -> tuple[LtrReranker | None, dict[str, Any]]:
    """Fit the re-ranker on the tuning slice; returns ``(reranker or None, report)``.

    ``None`` when it does not beat the linear blend's NDCG@10 on the held-out users (the report says so).
    """
    import lightgbm as lgb

    cfg = cfg or LtrConfig()
    n = min(cfg.candidates, blend.shape[1])
    top = torch.topk(blend, n, dim=1).indices
    x = features(signals, blend, top, ctx)
    y = (top.numpy() == np.asarray(targets)[:, None]).astype(np.int32)
    has_target = y.sum(1) > 0
    held = _held_out(users, cfg.valid_fraction, cfg.seed)

    def rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
        idx = np.nonzero(mask)[0]
        flat = (idx[:, None] * n + np.arange(n)).ravel()
        return x[flat], y.reshape(-1)[flat], [n] * len(idx)

    fit_mask, stop_mask = ~held & has_target, held & has_target
    if fit_mask.sum() < 10 or stop_mask.sum() < 5:
        return None, {"used": False, "reason": "too few tuning users with the target among the candidates"}
    xt, yt, gt = rows(fit_mask)
    xv, yv, gv = rows(stop_mask)
    fit = lgb.Dataset(xt, yt, group=gt, feature_name=list(FEATURES), free_raw_data=False)
    stop = lgb.Dataset(xv, yv, group=gv, reference=fit, free_raw_data=False)
    boosters = []
    for bag in range(max(1, cfg.bags)):
        params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "num_leaves": cfg.num_leaves,
                  "learning_rate": cfg.learning_rate, "min_data_in_leaf": cfg.min_child_samples,
                  "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8, "seed": cfg.seed + bag,
                  "lambdarank_truncation_level": 20, "deterministic": True, "force_row_wise": True, "verbose": -1}
        boosters.append(lgb.train(params, fit, num_boost_round=cfg.max_trees, valid_sets=[stop],
                                  callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)]))
    ranker = LtrReranker(boosters, cfg)
    # the keep-or-drop check: all held-out users (also those whose target the candidates miss)
    idx = torch.from_numpy(np.nonzero(held)[0])
    sub = {k: v[idx] for k, v in signals.items()}
    sub_ctx = LtrContext(ctx.popularity, ctx.history_len[held], ctx.last_successors[held])
    linear = metrics_from_ranks(target_ranks(blend[idx], targets[held]), (10,))
    learned = metrics_from_ranks(target_ranks(ranker.rerank(blend[idx], sub, sub_ctx), targets[held]), (10,))
    used = learned["ndcg@10"] > linear["ndcg@10"]
    splits = np.sum([b.feature_importance(iteration=b.best_iteration or None) for b in boosters], axis=0)
    importance = {name: int(v) for name, v in zip(FEATURES, splits, strict=True)}
    trees = [int(b.best_iteration or b.current_iteration()) for b in boosters]
    report = {"used": used, "config": asdict(cfg), "trees": trees,
              "held_out_users": int(held.sum()), "candidate_recall": round(float(has_target.mean()), 4),
              "held_out_linear": {k: round(v, 5) for k, v in linear.items()},
              "held_out_ltr": {k: round(v, 5) for k, v in learned.items()},
              "feature_splits": dict(sorted(importance.items(), key=lambda kv: -kv[1]))}
    log.info("learned fusion: held-out NDCG@10 %.4f vs linear %.4f (%s)", learned["ndcg@10"], linear["ndcg@10"],
             "used" if used else "not used")
    return (ranker if used else None), report
