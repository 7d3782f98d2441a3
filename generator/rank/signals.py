"""The scorer's signals over histories of item indices: text similarity, popularity and item-to-item transitions
(what serving scores with, and the baselines that :mod:`generator.rank.evaluate` measures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import torch


def zscore(x: torch.Tensor) -> torch.Tensor:
    """Per-row standardisation, so signals of different scales can be added."""
    return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-6)


def history_weights(hist: np.ndarray, decay: float, window: int | None = None) -> np.ndarray:
    """Recency weights of a history: ``decay ** age`` (age 0 = last item), zero beyond ``window``."""
    age = np.arange(len(hist))[::-1]
    w = decay ** age.astype(np.float64)
    if window is not None:
        w[age >= window] = 0.0
    return w


def history_matrix(histories: Sequence[np.ndarray], n_items: int, decay: float,
                   window: int | None = None) -> sp.csr_matrix:
    """Sparse ``(users, items)`` matrix of recency weights (repeated items add up)."""
    rows, cols, vals = [], [], []
    for r, h in enumerate(histories):
        w = history_weights(h, decay, window)
        nz = w > 0
        rows.append(np.full(int(nz.sum()), r))
        cols.append(np.asarray(h)[nz])
        vals.append(w[nz])
    if not rows:
        return sp.csr_matrix((0, n_items))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(histories), n_items))


class PopularityRanker:
    """Items by how often they occur in the training sequences."""

    def __init__(self, train_seqs: Sequence[np.ndarray], n_items: int):
        counts = np.bincount(np.concatenate([*train_seqs, np.zeros(0, np.int64)]), minlength=n_items)
        self.counts = counts.astype(np.float32)

    def score(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.counts).expand(len(histories), -1).clone()


class TextRanker:
    """Zero-shot text: cosine between item embeddings and the recency-weighted mean of the history's."""

    def __init__(self, item_vecs: np.ndarray, decay: float = 0.85, window: int | None = None):
        self.item_vecs = np.ascontiguousarray(item_vecs, dtype=np.float32)
        self.decay, self.window = decay, window

    def user_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        h = history_matrix(histories, len(self.item_vecs), self.decay, self.window)
        u = np.asarray(h @ self.item_vecs, dtype=np.float32)
        n = np.linalg.norm(u, axis=1, keepdims=True)
        return u / np.where(n > 0, n, 1.0)

    def score(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.user_vectors(histories)) @ torch.from_numpy(self.item_vecs).T


class TransitionKNN:
    """Item-to-item transitions: counts of ``a -> b`` for consecutive items in the training sequences.

    A user's score for ``b`` sums ``decay ** age`` times the normalised transition rows of their last
    ``window`` items. Rows are normalised by ``(out-degree of a) ** alpha``; ``backward`` adds ``b -> a`` at
    that weight (co-occurrence in either order).
    """

    def __init__(self, train_seqs: Sequence[np.ndarray], n_items: int, *, decay: float = 0.6, window: int = 3,
                 alpha: float = 0.5, backward: float = 0.3, beta: float = 0.0):
        self.n_items, self.decay, self.window = n_items, decay, window
        empty = [np.zeros(0, np.int64)]
        src = np.concatenate([np.asarray(s[:-1]) for s in train_seqs if len(s) > 1] or empty)
        dst = np.concatenate([np.asarray(s[1:]) for s in train_seqs if len(s) > 1] or empty)
        fwd = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n_items, n_items))
        mat = fwd + backward * fwd.T if backward else fwd
        mat = sp.csr_matrix(mat)
        mat.setdiag(0)
        mat.eliminate_zeros()
        out_deg = np.asarray(mat.sum(axis=1)).ravel()
        in_deg = np.asarray(mat.sum(axis=0)).ravel()
        row = 1.0 / np.power(np.maximum(out_deg, 1.0), alpha)
        col = 1.0 / np.power(np.maximum(in_deg, 1.0), beta)
        self.matrix = sp.csr_matrix(sp.diags(row) @ mat @ sp.diags(col), dtype=np.float32)

    @classmethod
    def from_matrix(cls, matrix: sp.spmatrix, *, decay: float, window: int) -> TransitionKNN:
        """A trained transition matrix (as :func:`generator.rank.train.save_trained` stores it), scoring as before."""
        knn = cls([], matrix.shape[0], decay=decay, window=window)
        knn.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        return knn

    def score(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        import torch

        h = history_matrix(histories, self.n_items, self.decay, self.window).astype(np.float32)
        return torch.from_numpy(np.asarray((h @ self.matrix).todense(), dtype=np.float32))
