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
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from generator.core.data import unit_interval
from generator.rank.evaluate import metrics_from_ranks, target_ranks
from generator.rank.rerank import FEATURES, LtrConfig, LtrContext, LtrReranker, features

log = logging.getLogger(__name__)


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
