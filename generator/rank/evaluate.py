"""Offline evaluation of the scorer: leave-last-out split, ranking metrics, baselines and the eval runner.

Protocol (the one of the published results on Amazon data): each user's events are ordered by time; the last
one is the target, everything before it is the history (and the only training data). Every model ranks *all*
catalog items for every user (no negative sampling, history items not removed); the target's rank gives
Recall@K (hit rate, one target per user), NDCG@K and MRR. Equal scores are broken by item_id, as in
:meth:`Scorer.rank`: a target tied with items of smaller id ranks below them.

Models work on item indices: a *ranker* is anything with ``score(histories) -> Tensor[users, items]``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from generator.core.data import Event, Item, load_table
from generator.core.errors import DataError, PushgenError
from generator.db.store import Store
from generator.rank.history import EVENT_WEIGHTS
from generator.rank.scorer import Scorer, _trained_folder
from generator.rank.signals import PopularityRanker, TextRanker, TransitionKNN

if TYPE_CHECKING:
    import torch

DEFAULT_KS = (10, 50)


class EvalError(PushgenError):
    """The evaluation cannot run on this input (e.g. no user with two events)."""


# data -----------------------------------------------------------------------------------------------------
@dataclass
class SequenceData:
    """Catalog (sorted by item_id) and each user's time-ordered item indices."""

    item_ids: list[str]
    item_texts: list[str]
    user_ids: list[str]
    seqs: list[np.ndarray]
    event_weights: list[np.ndarray] = field(default_factory=list)  # per event, by event type

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def fingerprint(self) -> str:
        """A short hash of catalog and sequences: names the data a model was trained on."""
        h = hashlib.sha256()
        h.update("\n".join(self.item_ids).encode())
        for u, s in zip(self.user_ids, self.seqs, strict=True):
            h.update(u.encode() + s.astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def load_sequences(items_path: str | Path, events_path: str | Path) -> SequenceData:
    """Read items and events files (CSV/JSONL/Parquet, the importer's format) into sequences.

    Events are ordered per user by timestamp, then by file order. Events on unknown items are a
    :class:`DataError` naming the row.
    """
    items = sorted(load_table(items_path, Item).rows, key=lambda it: it.item_id)
    if not items:
        raise DataError(str(items_path), None, None, "no items")
    index = {it.item_id: n for n, it in enumerate(items)}
    res = load_table(events_path, Event)
    by_user: dict[str, list[tuple[Any, int, int, float]]] = {}
    for n, (row, ev) in enumerate(zip(res.numbers, res.rows, strict=True)):
        if ev.item_id not in index:
            raise DataError(str(events_path), row, "item_id",
                            f"unknown item_id {ev.item_id!r} (not in items)")
        by_user.setdefault(ev.user_id, []).append(
            (ev.timestamp, n, index[ev.item_id], EVENT_WEIGHTS.get(ev.event_type.value, 0.5)))
    users = sorted(by_user)
    seqs, weights = [], []
    for u in users:
        evs = sorted(by_user[u], key=lambda p: (p[0], p[1]))
        seqs.append(np.array([p[2] for p in evs], dtype=np.int64))
        weights.append(np.array([p[3] for p in evs], dtype=np.float32))
    return SequenceData([it.item_id for it in items], [it.text() for it in items], users, seqs, weights)


@dataclass
class Split:
    """Histories and targets of a leave-last-out split (users with at least two events)."""

    users: list[str]
    histories: list[np.ndarray]
    targets: np.ndarray


def leave_last_out(users: Sequence[str], seqs: Sequence[np.ndarray]) -> Split:
    """Each user's last item is the target, everything before it the history; shorter users are dropped."""
    keep = [n for n, s in enumerate(seqs) if len(s) >= 2]
    return Split([users[n] for n in keep], [np.asarray(seqs[n][:-1]) for n in keep],
                 np.array([seqs[n][-1] for n in keep], dtype=np.int64))


# metrics --------------------------------------------------------------------------------------------------
def target_ranks(scores: torch.Tensor, targets: Sequence[int] | np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among all columns: higher scores first, ties by column index."""
    import torch

    t = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    tgt = scores.gather(1, t[:, None])
    greater = (scores > tgt).sum(1)
    cols = torch.arange(scores.shape[1])[None, :]
    tied_before = ((scores == tgt) & (cols < t[:, None])).sum(1)
    return (greater + tied_before).numpy().astype(np.int64)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of users whose single target is in the top ``k`` (hit rate)."""
    _check(ranks, k)
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: ``1 / log2(rank + 2)`` when the target is in the top ``k``, else 0."""
    _check(ranks, k)
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank over the full ranking (no cut-off)."""
    _check(ranks, 1)
    return float(np.mean(1.0 / (ranks.astype(np.float64) + 1.0))) if len(ranks) else 0.0


def _check(ranks: np.ndarray, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(ranks) and (np.asarray(ranks).min() < 0):
        raise ValueError("ranks are 0-based and cannot be negative")


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    out["mrr"] = mrr(ranks)
    return out


# rankers --------------------------------------------------------------------------------------------------
class Ranker(Protocol):
    def score(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Scores ``(len(histories), n_items)``; higher is better."""
        ...


# running --------------------------------------------------------------------------------------------------
def evaluate_ranker(ranker: Ranker | Callable[[Sequence[np.ndarray]], torch.Tensor], split: Split,
                    ks: Sequence[int] = DEFAULT_KS, batch: int = 1024, progress: bool = False,
                    desc: str = "eval") -> dict[str, float]:
    """Metrics of ``ranker`` on ``split`` (full ranking, in user batches)."""
    import torch
    from tqdm.auto import tqdm

    score = ranker.score if hasattr(ranker, "score") else ranker
    ranks = []
    with torch.no_grad():
        for s in tqdm(range(0, len(split.targets), batch), desc=desc, disable=not progress):
            sc = score(split.histories[s:s + batch])
            ranks.append(target_ranks(sc, split.targets[s:s + batch]))
    r = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    return metrics_from_ranks(r, ks)


def encode_catalog(texts: Sequence[str], encoder_name: str = "minilm", *, device: str | None = None,
                   store_url: str | None = None, progress: bool = True) -> np.ndarray:
    """Embeddings of the catalog texts with a sentence encoder, through the scorer's content-hash cache."""
    store = None
    if store_url:

        store = Store(store_url)
    scorer = Scorer.load(encoder_name, store=store, device=device)
    return scorer.embed_cached(list(texts), progress=progress)


def run_eval(items: str | Path, events: str | Path, model: str | None = None, *,
             ks: Sequence[int] = DEFAULT_KS, device: str | None = None, store_url: str | None = None,
             progress: bool = True, baselines: bool = True) -> dict[str, Any]:
    """Leave-last-out evaluation of baselines and the trained scorer ``model`` (default: ``default``).

    Returns ``{"protocol": ..., "data": ..., "results": {name: metrics}, "seconds": ...}``.
    """
    t0 = time.perf_counter()
    data = load_sequences(items, events)
    split = leave_last_out(data.user_ids, data.seqs)
    if not len(split.targets):
        raise EvalError("no user has two or more events: nothing to evaluate")
    results: dict[str, dict[str, float]] = {}
    folder = _trained_folder(model)
    if model is not None and folder is None and model != "minilm":
        raise EvalError(f"no trained scorer called {model!r} (looked in scorers_dir and as a path)")
    if baselines or folder is None:
        results["popularity"] = evaluate_ranker(PopularityRanker(split.histories, data.n_items), split, ks)
        vecs = encode_catalog(data.item_texts, "minilm", device=device, store_url=store_url,
                              progress=progress)
        results["zero-shot minilm"] = evaluate_ranker(TextRanker(vecs), split, ks, progress=progress,
                                                      desc="zero-shot")
        results["transition kNN"] = evaluate_ranker(TransitionKNN(split.histories, data.n_items), split, ks)
    if folder is not None:
        store = None
        if store_url:

            store = Store(store_url)
        scorer = Scorer.load(str(folder), store=store, device=device)
        ranker = scorer.collab.ranker_for(scorer, data)  # type: ignore[union-attr]
        results[f"trained: {folder.name}"] = evaluate_ranker(ranker, split, ks, progress=progress,
                                                            desc="trained")
    return {"protocol": "leave-last-out, full ranking over all items, ties by item_id",
            "data": {"items": data.n_items, "users": len(split.targets),
                     "events": int(sum(len(s) for s in data.seqs)), "fingerprint": data.fingerprint()},
            "results": results, "seconds": round(time.perf_counter() - t0, 1)}


def format_table(report: dict[str, Any]) -> list[list[str]]:
    """Rows (header first) of the results table."""
    res = report["results"]
    cols = list(next(iter(res.values())).keys()) if res else []
    rows = [["model", *cols]]
    for name, m in res.items():
        rows.append([name, *(f"{m[c]:.4f}" for c in cols)])
    return rows


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path

