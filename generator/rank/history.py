"""Users' time-ordered histories for the scorer: per user (:class:`UserHistory`) and for many users at once as flat
arrays (:class:`HistoryBatch`), gathered from a table of the whole shop's events made once per shop.

A user's events are ordered by timestamp, then by their order in the file; an event's weight is its type weight
times ``recency_decay`` per later event of the user. Reviews of 3 stars or more with text count, in time order
(then by item id), weighted by their rating.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from generator.core.data import Shop
from generator.core.shop_index import per_shop

EVENT_WEIGHTS: dict[str, float] = {"purchase": 1.0, "cart": 0.8, "wishlist": 0.6, "click": 0.5, "view": 0.4}
"""How much one event of each type says about the user's taste."""


@dataclass
class UserHistory:
    """A user's time-ordered interactions as catalog indices, with the weight each one carries."""

    items: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    reviews: list[tuple[str, float, int]] = field(default_factory=list)  # (text, weight, item index)
    purchased: set[int] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not self.items and not self.reviews


@dataclass
class HistoryBatch:
    """Many users' histories as flat arrays: user ``r``'s events are ``offsets[r]:offsets[r + 1]`` of ``items``
    (catalog indices), ``weights`` and ``kinds`` (indexes into ``kind_names``), in time order; ``reviews`` as in
    :class:`UserHistory`, a list per user."""

    offsets: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    kinds: np.ndarray
    kind_names: list[str]
    reviews: list[list[tuple[str, float, int]]]

    def __len__(self) -> int:
        return len(self.reviews)

    @property
    def sizes(self) -> np.ndarray:
        """Events per user."""
        return np.diff(self.offsets)

    @cached_property
    def empty(self) -> np.ndarray:
        """Per user: no event and no review (made once: the user vectors and the ranking both ask)."""
        return (self.sizes == 0) & np.array([not r for r in self.reviews], dtype=bool)

    def rows(self, start: int, stop: int) -> HistoryBatch:
        """The histories of users ``start`` to ``stop`` (views of this batch's arrays)."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return HistoryBatch(self.offsets[start:stop + 1] - a, self.items[a:b], self.weights[a:b], self.kinds[a:b],
                            self.kind_names, self.reviews[start:stop])

    def item_lists(self) -> list[list[int]]:
        """Each user's history items (catalog indices), in time order."""
        items, offsets = self.items.tolist(), self.offsets.tolist()
        return [items[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    def histories(self) -> list[UserHistory]:
        """One :class:`UserHistory` per user."""
        weights, kinds, offsets = self.weights.tolist(), self.kinds.tolist(), self.offsets.tolist()
        out = []
        for r, items in enumerate(self.item_lists()):
            a, b = offsets[r], offsets[r + 1]
            names = [self.kind_names[c] for c in kinds[a:b]]
            out.append(UserHistory(items=items, weights=weights[a:b], kinds=names, reviews=list(self.reviews[r]),
                                   purchased={i for i, kind in zip(items, names, strict=True) if kind == "purchase"}))
        return out

    @classmethod
    def of(cls, histories: Sequence[UserHistory]) -> HistoryBatch:
        """The batch of these histories, in their order."""
        names: dict[str, int] = {}
        sizes = [len(h.items) for h in histories]
        kinds = [names.setdefault(k, len(names)) for h in histories for k in h.kinds]
        return cls(offsets_of(sizes),
                   np.array([i for h in histories for i in h.items], dtype=np.int64),
                   np.array([w for h in histories for w in h.weights], dtype=np.float64),
                   np.array(kinds, dtype=np.int64), list(names), [list(h.reviews) for h in histories])

    @property
    def purchase_code(self) -> int:
        """The code of ``"purchase"`` in ``kinds`` (-1 when no event is one)."""
        return self.kind_names.index("purchase") if "purchase" in self.kind_names else -1


@dataclass
class _EventTable:
    """A shop's events in each user's time order, as arrays: the user coded ``c`` has the events
    ``start[c]:start[c + 1]``; items and kinds are codes into ``item_ids`` and ``kind_names``. ``reviews``: per
    user, the usable reviews' ``(text, rating, item_id)`` in time order."""

    user_code: dict[str, int]
    start: np.ndarray
    item_code: np.ndarray
    item_ids: list[str]
    kind_code: np.ndarray
    kind_names: list[str]
    reviews: dict[str, list[tuple[str, int, str]]]


def _event_table(shop: Shop) -> _EventTable:
    """The :class:`_EventTable` of ``shop``: its events sorted by user, then timestamp, then file position."""
    events, n = shop.events, len(shop.events)
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    kinds: dict[Any, int] = {}
    user = np.fromiter((users.setdefault(ev.user_id, len(users)) for ev in events), dtype=np.int64, count=n)
    item = np.fromiter((items.setdefault(ev.item_id, len(items)) for ev in events), dtype=np.int64, count=n)
    kind = np.fromiter((kinds.setdefault(ev.event_type, len(kinds)) for ev in events), dtype=np.int64, count=n)
    by_user = np.argsort(user, kind="stable")
    start = np.searchsorted(user[by_user], np.arange(len(users) + 1))
    order = np.fromiter(_time_ordered([ev.timestamp for ev in events], by_user.tolist(), start.tolist()),
                        dtype=np.int64, count=n)
    reviews: dict[str, list[tuple[Any, str, int, str]]] = {}
    for rv in shop.reviews:
        if rv.rating >= 3 and rv.text.strip():
            reviews.setdefault(rv.user_id, []).append((rv.timestamp, rv.item_id, rv.rating, rv.text))
    usable = {u: [(t, rating, item_id) for _, item_id, rating, t in sorted(rs, key=lambda r: (r[0], r[1]))]
              for u, rs in reviews.items()}
    return _EventTable(users, start, item[order], list(items), kind[order],
                       [str(getattr(k, "value", k)) for k in kinds], usable)


def _time_ordered(stamps: list[Any], by_user: list[int], start: list[int]) -> Iterator[int]:
    """The events ``by_user`` (grouped by user, each user's in file order, the user ``c``'s at
    ``start[c]:start[c + 1]``), each user's sorted by timestamp (``stamps``, per event), equal ones in file order."""
    key = stamps.__getitem__
    for a, b in zip(start[:-1], start[1:], strict=True):
        yield from sorted(by_user[a:b], key=key)


def offsets_of(sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of ``sizes`` begins, and the end of the last: ``0, s0, s0 + s1, ...``."""
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)


def ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``starts[r] + 0, 1, ..., sizes[r] - 1`` for every ``r``, concatenated."""
    total = int(sizes.sum())
    ends = np.cumsum(sizes)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - sizes), sizes)


def history_batch(shop: Shop, index: dict[str, int], user_ids: Sequence[str], recency_decay: float,
                  review_weight: float) -> HistoryBatch:
    """The histories of ``user_ids`` (in their order) over the catalog ``index`` (item_id -> catalog index): events
    and reviews of items missing from ``index`` are left out. A review's weight is ``review_weight`` for 5 stars,
    two thirds of it for 4 and one third for 3."""
    table = per_shop(shop, "event_table", lambda: _event_table(shop))
    codes = np.fromiter((table.user_code.get(u, -1) for u in user_ids), dtype=np.int64, count=len(user_ids))
    known = codes >= 0
    starts = np.where(known, table.start[codes], 0)
    sizes = np.where(known, table.start[codes + 1] - starts, 0)
    at = ranges(starts, sizes)
    catalog = np.array([index.get(i, -1) for i in table.item_ids], dtype=np.int64)
    items = catalog[table.item_code[at]]
    keep = items >= 0
    owner = np.repeat(np.arange(len(user_ids)), sizes)[keep]
    counts = np.bincount(owner, minlength=len(user_ids))
    offsets = offsets_of(counts)
    powers = np.array([recency_decay ** m for m in range(int(counts.max(initial=0)))], dtype=np.float64)
    kinds = table.kind_code[at][keep]
    type_weight = np.array([EVENT_WEIGHTS.get(k, 0.5) for k in table.kind_names], dtype=np.float64)
    weights = type_weight[kinds] * powers[offsets[owner + 1] - 1 - np.arange(len(owner))]
    reviews = [[(t, review_weight * (rating - 2) / 3, index[i]) for t, rating, i in table.reviews.get(u, ())
                if i in index] for u in user_ids]
    return HistoryBatch(offsets, items[keep], weights, kinds, table.kind_names, reviews)


__all__ = ["EVENT_WEIGHTS", "HistoryBatch", "UserHistory", "history_batch", "ranges"]
