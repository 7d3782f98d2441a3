"""The scorer: ranks catalog items per user with a MiniLM bi-encoder, plus collaborative signal once trained.

Item text (title, category, brand, description) and the user (their time-ordered history and their reviews)
are embedded by the same sentence encoder; relevance is cosine similarity. The user vector blends

* an aggregate of history item embeddings, each weighted by event type and recency, plus positive reviews, and
* one encoded "profile text" (the most recent history titles and review snippets).

Item embeddings are cached by content hash in the store (:mod:`generator.db.embeddings`), so an unchanged item
is never re-encoded. A trained scorer (``pushgen scorer train``, see :mod:`generator.rank.train`) adds a
sequence model and item-transition scores, blended with the text score.

Ranking runs over users in chunks (one matmul per chunk, bounded memory, cost linear in users), then applies
the business rules of :class:`RankRules` (stock, purchased, campaign, MMR diversity) with deterministic
tie-breaks (equal scores rank by ``item_id``). Each ranked item says why: the history items and reviews that
matched it most.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from generator.core import model_registry  # by module: tests swap its encoder loader
from generator.core.config import get_settings
from generator.core.data import Event, Item, Review, Shop
from generator.core.errors import ScorerError
from generator.core.shop_index import per_shop

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from generator.db.store import Store

log = logging.getLogger(__name__)

EVENT_WEIGHTS: dict[str, float] = {"purchase": 1.0, "cart": 0.8, "wishlist": 0.6, "click": 0.5, "view": 0.4}
"""How much one event of each type says about the user's taste."""

EVENT_VERBS: dict[str, str] = {"purchase": "bought", "cart": "carted", "wishlist": "wishlisted",
                               "click": "clicked", "view": "viewed"}

DISCOUNT_CAMPAIGNS = frozenset({"price_drop", "sale", "discount"})
"""Campaign types that only recommend discounted items (boosted by their discount)."""


@dataclass
class RankRules:
    """Business rules applied at ranking time."""

    k: int = 5
    """How many items to return per user."""
    drop_out_of_stock: bool = True
    """Never recommend items with ``in_stock == False``."""
    drop_purchased: bool = False
    """Never recommend items the user already bought."""
    campaign_type: str | None = None
    """``"price_drop"`` (also ``"sale"``, ``"discount"``): only discounted items, boosted by discount;
    any other value: no restriction; None: no campaign."""
    mmr_lambda: float | None = 0.7
    """Maximal marginal relevance trade-off over the top K (1.0 = pure relevance); None disables MMR."""
    only_item_ids: frozenset[str] | None = None
    """Restrict to these items (e.g. the items of a back-in-stock or new-arrivals campaign)."""
    boosts: dict[str, float] = field(default_factory=dict)
    """Additive score boost per item_id (e.g. +0.05 for new arrivals)."""
    discount_boost: float = 0.1
    """In a discount campaign, add ``discount_boost * discount_pct / 100`` to the score."""
    mmr_pool: int = 50
    """MMR re-ranks this many top candidates (at least ``3 * k``)."""

    def validate(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ScorerError(f"RankRules.k must be a positive integer, got {self.k!r}")
        if self.mmr_lambda is not None and not 0.0 <= self.mmr_lambda <= 1.0:
            raise ScorerError(f"RankRules.mmr_lambda must be in [0, 1] or None, got {self.mmr_lambda!r}")


@dataclass
class RankedItem:
    """One recommended item for one user."""

    item: Item
    score: float
    rank: int  # 1-based
    why: list[str]  # e.g. ["bought 'Trailblazer Tent' (0.62)", "review: 'great for camping…' (0.41)"]

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item.item_id, "title": self.item.title, "price": str(self.item.current_price),
                "list_price": str(self.item.price), "currency": self.item.currency,
                "discount_pct": self.item.discount_pct, "image_url": self.item.image_url,
                "score": round(self.score, 6), "rank": self.rank, "why": list(self.why)}


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
class ScorerConfig:
    """How the zero-shot user profile is built."""

    recency_decay: float = 0.85
    """Weight of an event is multiplied by this for every later event of the same user."""
    review_weight: float = 0.5
    """Weight of a 5-star review relative to a purchase (reviews below 3 stars are not used)."""
    profile_text_weight: float = 0.3
    """Share of the encoded profile text in the user vector (the rest is the aggregate of embeddings)."""
    profile_text_items: int = 8
    """How many of the most recent history items' titles go into the profile text."""
    chunk_elements: int = 1 << 24
    """Upper bound on users x items scores held at once (float32: 64 MiB)."""


class CollabModel(Protocol):
    """Collaborative/sequence scores of a trained scorer, blended with the text score."""

    def score(self, text_scores: torch.Tensor, histories: Sequence[Sequence[int]], catalog_ids: Sequence[str],
              item_vecs: np.ndarray, item_texts: Sequence[str] | None = None) -> torch.Tensor:
        """Final scores ``(len(histories), len(catalog_ids))`` from text scores, histories (catalog indices),
        the catalog's text embeddings and (for a re-ranker) texts."""
        ...


def content_hash(text: str) -> str:
    """SHA-256 of the text an item is embedded from: the store's embedding cache key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1 << 16)
def _snippet(text: str, n: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def build_histories(shop: Shop, index: dict[str, int], config: ScorerConfig | None = None,
                    user_ids: Sequence[str] | None = None) -> dict[str, UserHistory]:
    """Time-ordered histories (events and reviews) of ``user_ids`` (default: every user of the shop).

    Events are ordered by timestamp, then by their order in the file; an event's weight is its type weight
    times ``recency_decay`` per later event. Events on items missing from ``index`` are ignored.
    """
    cfg = config or ScorerConfig()
    wanted = set(user_ids) if user_ids is not None else {u.user_id for u in shop.users}
    by_user, reviews = per_shop(shop, "by_user", lambda: _group_by_user(shop))
    out: dict[str, UserHistory] = {}
    powers: list[float] = []  # recency_decay ** n, made once per n
    for uid in wanted:
        h = UserHistory()
        evs = sorted(((n, ev) for n, ev in by_user.get(uid, ()) if ev.item_id in index),
                     key=lambda p: (p[1].timestamp, p[0]))
        m = len(evs)
        while len(powers) < m:
            powers.append(cfg.recency_decay ** len(powers))
        h.kinds = [ev.event_type.value for _, ev in evs]
        h.items = [index[ev.item_id] for _, ev in evs]
        h.weights = [EVENT_WEIGHTS.get(kind, 0.5) * powers[m - 1 - pos] for pos, kind in enumerate(h.kinds)]
        h.purchased = {idx for idx, kind in zip(h.items, h.kinds, strict=True) if kind == "purchase"}
        for rv in sorted(reviews.get(uid, []), key=lambda r: (r.timestamp, r.item_id)):
            if rv.rating >= 3 and rv.text.strip() and rv.item_id in index:
                h.reviews.append((rv.text, cfg.review_weight * (rv.rating - 2) / 3, index[rv.item_id]))
        out[uid] = h
    return out


def popularity(shop: Shop, index: dict[str, int]) -> np.ndarray:
    """Weighted interaction count per catalog item (events by type weight; reviews count as purchases)."""
    pop = np.zeros(len(index), dtype=np.float64)
    for item_id, weight in per_shop(shop, "popularity", lambda: _item_weights(shop)).items():
        if item_id in index:
            pop[index[item_id]] = weight
    return pop


def _item_weights(shop: Shop) -> dict[str, float]:
    """Per item, its events' weights then its reviews, summed in file order (as :func:`popularity` always did)."""
    out: dict[str, float] = {}
    for ev in shop.events:
        out[ev.item_id] = out.get(ev.item_id, 0.0) + EVENT_WEIGHTS.get(ev.event_type.value, 0.5)
    for rv in shop.reviews:
        out[rv.item_id] = out.get(rv.item_id, 0.0) + 1.0
    return out


def _group_by_user(shop: Shop) -> tuple[dict[str, list[tuple[int, Event]]], dict[str, list[Review]]]:
    """Each user's events (with their position in the file) and reviews, in file order."""
    events: dict[str, list[tuple[int, Event]]] = {}
    for n, ev in enumerate(shop.events):
        events.setdefault(ev.user_id, []).append((n, ev))
    reviews: dict[str, list[Review]] = {}
    for rv in shop.reviews:
        reviews.setdefault(rv.user_id, []).append(rv)
    return events, reviews


class Scorer:
    """Ranks catalog items for users. Build with :meth:`load`."""

    def __init__(self, encoder: SentenceTransformer, encoder_key: str, *, store: Store | None = None,
                 config: ScorerConfig | None = None, collab: CollabModel | None = None,
                 name: str = "minilm", meta: dict[str, Any] | None = None):
        self.encoder = encoder
        self.encoder_key = encoder_key  # names the vectors in the embedding cache
        self.store = store
        self.config = config or ScorerConfig()
        self.collab = collab
        self.name = name
        self.meta = meta or {}
        self._memory: dict[str, np.ndarray] = {}
        self.encoded_texts = 0  # how many texts this scorer has sent through the encoder (cache misses)

    # loading ----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, name: str | None = None, *, store: Store | None = None,
             device: str | None = None) -> Scorer:
        """A trained scorer by name (a folder under ``scorers_dir`` or a path), or the zero-shot encoder.

        ``None`` means the trained scorer ``scorers_dir/default`` when it exists, else zero-shot ``minilm``.
        Any other name that is not a trained scorer is treated as an encoder (registry name, folder, hub id).
        ``store`` enables the persistent embedding cache (without it, embeddings are cached in memory only).
        """
        folder = _trained_folder(name)
        if folder is None:
            enc_name = name or get_settings().scorer_model
            return cls(model_registry.load_sentence_encoder(enc_name, device=device), enc_name, store=store,
                       name=enc_name, meta={"kind": "zero-shot", "encoder": enc_name})
        from generator.rank.collab import load_trained  # torch: only when a trained scorer is loaded

        collab, meta = load_trained(folder, device=device)
        if meta.get("encoder_finetuned"):
            # its vectors differ from the zero-shot encoder's: a cache key of their own
            encoder = model_registry.load_sentence_encoder(str(folder / "encoder"), device=device)
            key = f"finetuned:{meta['data']['fingerprint']}:{meta['created_at']}"
        else:
            encoder, key = model_registry.load_sentence_encoder(meta["encoder"], device=device), meta["encoder"]
        config = ScorerConfig(recency_decay=meta["hyperparameters"]["text_decay"], profile_text_weight=0.0)
        return cls(encoder, key, store=store, config=config, collab=collab, name=folder.name, meta=meta)

    # embeddings -------------------------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str], *, progress: bool = False,
                    batch_size: int = 64) -> np.ndarray:
        """L2-normalised float32 embeddings of ``texts`` (no caching)."""
        if not texts:
            dim = encoder_dim(self.encoder)
            return np.zeros((0, dim), dtype=np.float32)
        self.encoded_texts += len(texts)
        vecs = self.encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=progress)
        return np.asarray(vecs, dtype=np.float32)

    def embed_cached(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts`` through the content-hash cache: only unseen texts are encoded."""
        from generator.db.embeddings import get_embeddings, put_embeddings

        hashes = [content_hash(t) for t in texts]
        missing = [h for h in dict.fromkeys(hashes) if h not in self._memory]
        if missing and self.store is not None:
            self._memory.update(get_embeddings(self.store, self.encoder_key, missing))
            missing = [h for h in missing if h not in self._memory]
        if missing:
            text_of = dict(zip(hashes, texts, strict=True))
            new = self.embed_texts([text_of[h] for h in missing], progress=progress)
            fresh = dict(zip(missing, new, strict=True))
            self._memory.update(fresh)
            if self.store is not None:
                put_embeddings(self.store, self.encoder_key, fresh)
        dim = encoder_dim(self.encoder)
        if not hashes:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self._memory[h] for h in hashes]).astype(np.float32, copy=False)

    def embed_items(self, items: Sequence[Item], *, progress: bool = False) -> np.ndarray:
        """Embeddings of ``items`` (from ``Item.text()``), cached by content hash."""
        return self.embed_cached([it.text() for it in items], progress=progress)

    # user vectors -----------------------------------------------------------------------------------------
    def user_vectors(self, histories: Sequence[UserHistory], item_vecs: np.ndarray, titles: Sequence[str],
                     review_vecs: dict[str, np.ndarray]) -> np.ndarray:
        """One normalised vector per history (zeros for an empty history)."""
        cfg = self.config
        dim = item_vecs.shape[1]
        agg = np.zeros((len(histories), dim), dtype=np.float32)
        texts: list[str] = []
        rows: list[int] = []
        with_items = [r for r, h in enumerate(histories) if h.items]
        # each history's weights @ its items' vectors: stacked products of one length (the values of one per user)
        by_len: dict[int, list[int]] = {}
        for r in with_items:
            by_len.setdefault(len(histories[r].items), []).append(r)
        for which in by_len.values():
            w = np.array([histories[r].weights for r in which], dtype=np.float32)
            agg[which] = (w[:, None, :] @ item_vecs[[histories[r].items for r in which]])[:, 0, :]
        # the reviews added one at a time, in order, as float32 sums (w * vector in float32, as numpy gives it)
        for q in range(max((len(h.reviews) for h in histories), default=0)):
            which = [r for r, h in enumerate(histories) if len(h.reviews) > q]
            w = np.array([histories[r].reviews[q][1] for r in which], dtype=np.float32)
            agg[which] += w[:, None] * np.stack([review_vecs[histories[r].reviews[q][0]] for r in which])
        for r, h in enumerate(histories):
            if cfg.profile_text_weight > 0 and not h.empty:
                texts.append(self.profile_text(h, titles))
                rows.append(r)
        agg = _normalise(agg)
        if texts:
            prof = self.embed_texts(texts)
            a = cfg.profile_text_weight
            agg[rows] = _normalise((1 - a) * agg[rows] + a * prof)
        return agg

    def profile_text(self, h: UserHistory, titles: Sequence[str]) -> str:
        """The user as text: recent history titles (newest first, deduplicated) and review snippets."""
        recent = list(dict.fromkeys(titles[i] for i in reversed(h.items)))[: self.config.profile_text_items]
        parts = [", ".join(recent)] if recent else []
        parts += [_snippet(t, 120) for t, _, _ in h.reviews[-2:]]
        return ". ".join(parts)

    # ranking ----------------------------------------------------------------------------------------------
    # the per-user products are small: BLAS threads only wait for each other (14x slower with 2 threads on a busy
    # 2-core machine than with one)
    @threadpool_limits.wrap(limits=1, user_api="blas")
    def rank(self, shop: Shop, user_ids: list[str] | None = None, rules: RankRules | None = None,
             progress: bool = True) -> dict[str, list[RankedItem]]:
        """Top ``rules.k`` items per user (every user of the shop by default), with explanations.

        Users with no history get the most popular items that pass the rules. A user may get fewer than
        ``k`` items when fewer pass the rules. Unknown user ids raise :class:`ScorerError`.
        """
        import torch
        from tqdm.auto import tqdm

        rules = rules or RankRules()
        rules.validate()
        known = {u.user_id for u in shop.users}
        if user_ids is None:
            user_ids = sorted(known)
        unknown = [u for u in user_ids if u not in known]
        if unknown:
            raise ScorerError(f"unknown user_id(s): {', '.join(map(repr, unknown[:5]))}")
        if not shop.items or not user_ids:
            return {u: [] for u in user_ids}
        items = sorted(shop.items, key=lambda it: it.item_id)  # index order = tie-break order
        index = {it.item_id: i for i, it in enumerate(items)}
        item_vecs = self.embed_items(items, progress=progress)
        histories = build_histories(shop, index, self.config, user_ids)
        review_texts = sorted({t for h in histories.values() for t, _, _ in h.reviews})
        review_vecs = dict(zip(review_texts, self.embed_cached(review_texts), strict=True))
        titles = [it.title for it in items]
        id_rank = _id_ranks(items)
        catalog_ids = [it.item_id for it in items]
        texts = [it.text() for it in items]
        base_mask, bonus = _item_rules(items, rules)
        pop = popularity(shop, index)
        pop_score = np.log1p(pop) / max(math.log1p(pop.max()), 1.0)
        pool = max(rules.mmr_pool, 3 * rules.k) if rules.mmr_lambda is not None else rules.k
        pool = min(pool, len(items))
        items_t = torch.from_numpy(item_vecs)
        base_mask_t = torch.from_numpy(base_mask)
        bonus_t = torch.from_numpy(bonus.astype(np.float32))
        chunk = max(1, self.config.chunk_elements // len(items))
        out: dict[str, list[RankedItem]] = {}
        bar = tqdm(total=len(user_ids), desc="ranking", unit="user", disable=not progress)
        for start in range(0, len(user_ids), chunk):
            uids = user_ids[start:start + chunk]
            hs = [histories[u] for u in uids]
            uvecs = self.user_vectors(hs, item_vecs, titles, review_vecs)
            with torch.no_grad():
                scores = torch.from_numpy(uvecs) @ items_t.T
                if self.collab is not None:
                    scores = self.collab.score(scores, [h.items for h in hs], catalog_ids, item_vecs, texts)
                empty = torch.tensor([h.empty for h in hs])
                if bool(empty.any()):
                    scores[empty] = torch.from_numpy(pop_score.astype(np.float32))
                scores = scores + bonus_t
                allowed = base_mask_t.expand(len(uids), -1).clone()
                if rules.drop_purchased:
                    for r, h in enumerate(hs):
                        if h.purchased:
                            allowed[r, list(h.purchased)] = False
                scores = scores.masked_fill(~allowed, float("-inf"))
                top_idx, top_val = topk_deterministic(scores, pool)
            full = np.isfinite(top_val).all(axis=1)  # rows with the whole pool allowed (MMR takes them as arrays)
            idx_l, val_l = top_idx.tolist(), top_val.tolist()  # Python numbers: the loop below is per user
            cands = [[(i, v) for i, v in zip(idx_l[r], val_l[r], strict=True) if v > -math.inf]
                     for r in range(len(uids))]
            if rules.mmr_lambda is not None:
                rows = np.flatnonzero(full) if top_idx.shape[1] > rules.k else np.zeros(0, dtype=int)
                for r, picks in zip(rows.tolist(), mmr_picks(top_idx[rows], top_val[rows].astype(np.float64),
                                                              item_vecs, rules.k, rules.mmr_lambda), strict=True):
                    cands[r] = [cands[r][p] for p in picks]
                rest = [r for r, c in enumerate(cands) if len(c) > rules.k and not full[r]]
                for r, picked in zip(rest, mmr_many([cands[r] for r in rest], item_vecs, rules.k,
                                                    rules.mmr_lambda), strict=True):
                    cands[r] = picked
            tops = [c[: rules.k] for c in cands]
            whys_of = explain_many([[i for i, _ in c] for c in tops], hs, items, item_vecs, review_vecs, pop, rules,
                                   id_rank)
            for uid, cand, whys in zip(uids, tops, whys_of, strict=True):
                out[uid] = [RankedItem(item=items[i], score=s, rank=n + 1, why=why)
                            for n, ((i, s), why) in enumerate(zip(cand, whys, strict=True))]
            bar.update(len(uids))
        bar.close()
        return out


def _id_ranks(items: Sequence[Item]) -> np.ndarray:
    """Per catalog index (items sorted by ``item_id``), the first index of its ``item_id``: ordering by it is ordering
    by ``item_id``, equal ids equal."""
    out = np.arange(len(items))
    for j in range(1, len(items)):
        if items[j].item_id == items[j - 1].item_id:
            out[j] = out[j - 1]
    return out


def _batched_products(vecs: np.ndarray, left: Sequence[Sequence[int]], other: np.ndarray,
                      right: Sequence[Sequence[int]]) -> list[tuple[list[int], np.ndarray]]:
    """``vecs[left[n]] @ other[right[n]].T`` for every ``n``, with the same values: the pairs of one shape go through
    one stacked ``matmul``, which multiplies each pair with the kernel a single product of that shape uses. Per
    shape: the positions ``n`` and their products, stacked."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for n, (a, b) in enumerate(zip(left, right, strict=True)):
        by_shape.setdefault((len(a), len(b)), []).append(n)
    return [(which, vecs[np.array([left[n] for n in which])]
             @ other[np.array([right[n] for n in which])].transpose(0, 2, 1)) for which in by_shape.values()]


def explain_many(ranked: Sequence[list[int]], hs: Sequence[UserHistory], items: Sequence[Item],
                 item_vecs: np.ndarray, review_vecs: dict[str, np.ndarray], pop: np.ndarray, rules: RankRules,
                 id_rank: np.ndarray | None = None, top: int = 2) -> list[list[list[str]]]:
    """Why each ranked item, for many users at once: the history items (and review) most like it, or its
    popularity, with the words and numbers of the per-user reference in ``tests/test_scorer_vectorised.py``. Each
    user's cosines come from a stacked product of pairs of one shape (the values a product per user gives, its
    history items in order of first appearance), and each history item's strongest event and each ranked item's
    strongest history items from array operations over all the users' events together."""
    if id_rank is None:
        id_rank = _id_ranks(items)
    out: list[list[list[str]]] = [[] for _ in ranked]
    users = []
    for u, (r, h) in enumerate(zip(ranked, hs, strict=True)):
        if r and h.empty:
            out[u] = [[f"popular: {int(round(pop[i]))} recent interactions" if pop[i] > 0 else "catalog pick"]
                      for i in r]
        elif r:
            users.append(u)
    if not users:
        return _campaign_whys(ranked, out, items, rules)
    k = max(len(ranked[u]) for u in users)
    lines: dict[int, list[list[str]]] = {}
    with_items = [u for u in users if hs[u].items]
    if with_items:
        # every event of these users, in their order; grouped by (user, history item) in order of first appearance
        sizes = np.fromiter((len(hs[u].items) for u in with_items), dtype=np.int64, count=len(with_items))
        ev_user = np.repeat(np.arange(len(with_items)), sizes)
        ev_j = np.fromiter(itertools.chain.from_iterable(hs[u].items for u in with_items), dtype=np.int64,
                           count=int(sizes.sum()))
        ev_w = np.fromiter(itertools.chain.from_iterable(hs[u].weights for u in with_items), dtype=np.float64,
                           count=len(ev_j))
        kinds = list(itertools.chain.from_iterable(hs[u].kinds for u in with_items))
        _, first_at, group_of = np.unique(ev_user * len(items) + ev_j, return_index=True, return_inverse=True)
        label = np.empty(len(first_at), dtype=np.int64)
        label[np.argsort(first_at, kind="stable")] = np.arange(len(first_at))  # groups by first appearance
        group_of = label[group_of.ravel()]
        by_group = np.argsort(group_of, kind="stable")  # events by group, each group's in their order
        g_first = first_at[np.argsort(label)]  # per group (new order): its first event
        g_user, g_j = ev_user[g_first], ev_j[g_first]
        bounds = np.searchsorted(g_user, np.arange(len(with_items) + 1))
        g_j_l, b_l = g_j.tolist(), bounds.tolist()
        cg = np.zeros((len(g_j), k), dtype=np.float64)  # each group's cosine with each ranked item of its user
        for which, prod in _batched_products(item_vecs, [ranked[u] for u in with_items], item_vecs,
                                             [g_j_l[b_l[m]:b_l[m + 1]] for m in range(len(with_items))]):
            r, m = prod.shape[1:]
            rows = (bounds[which][:, None] + np.arange(m)).ravel()
            cg[rows, :r] = prod.transpose(0, 2, 1).reshape(-1, r)
        starts = np.searchsorted(group_of[by_group], np.arange(len(g_j)))
        prod = ev_w[by_group, None] * cg[group_of[by_group]]  # w * c per event, in the doubles Python multiplies
        best = np.maximum.reduceat(prod, starts, axis=0)
        first = np.minimum.reduceat(np.where(prod == best[group_of[by_group]], by_group[:, None], len(ev_j)),
                                    starts, axis=0)  # per group and ranked item: the first of its strongest events
        cg_l, first_l = cg.tolist(), first.tolist()
        verbs = [EVENT_VERBS.get(kind, kind) for kind in kinds]
        snips = [_snippet(items[j].title, 40) for j in g_j_l]
        jr = id_rank[g_j]
        per_user: list[list[list[str]]] = [[] for _ in with_items]
        for n in range(k):
            order = np.lexsort((jr, -best[:, n], g_user)).tolist()  # per user: the strongest, then by item_id
            for m, u in enumerate(with_items):
                if n < len(ranked[u]):
                    a = b_l[m]
                    per_user[m].append([f"{verbs[first_l[g][n]]} '{snips[g]}' ({cg_l[g][n]:.2f})"
                                        for g in order[a:min(a + top, b_l[m + 1])]])
        lines = dict(zip(with_items, per_user, strict=True))
    with_reviews = [u for u in users if hs[u].reviews]
    if with_reviews:
        texts = list(dict.fromkeys(t for u in with_reviews for t, _, _ in hs[u].reviews))
        row_of = {t: n for n, t in enumerate(texts)}
        review_matrix = np.stack([review_vecs[t] for t in texts])
        review_cos: dict[int, list[list[float]]] = {}
        for which, prod in _batched_products(item_vecs, [ranked[u] for u in with_reviews], review_matrix,
                                             [[row_of[t] for t, _, _ in hs[u].reviews] for u in with_reviews]):
            review_cos.update(zip((with_reviews[n] for n in which), prod.tolist(), strict=True))
    for u in users:
        whys = lines.get(u) or [[] for _ in ranked[u]]
        if hs[u].reviews:
            for why, cs in zip(whys, review_cos[u], strict=True):
                best_review = None  # the largest (weighted cosine, text)
                for (t, w, _), c in zip(hs[u].reviews, cs, strict=True):
                    if best_review is None or (w * c, t) > (best_review[0], best_review[2]):
                        best_review = (w * c, c, t)
                why.append(f"review: '{_snippet(best_review[2])}' ({best_review[1]:.2f})")  # type: ignore[index]
        out[u] = whys
    return _campaign_whys(ranked, out, items, rules)


def _campaign_whys(ranked: Sequence[list[int]], whys_of: list[list[list[str]]], items: Sequence[Item],
                   rules: RankRules) -> list[list[list[str]]]:
    """The campaign's reasons appended to each ranked item's (a discount campaign's discount, a boost)."""
    discount = rules.campaign_type in DISCOUNT_CAMPAIGNS
    if discount or rules.boosts:
        for r, whys in zip(ranked, whys_of, strict=True):
            for i, why in zip(r, whys, strict=True):
                it = items[i]
                if discount and it.discount_pct:
                    why.append(f"campaign {rules.campaign_type}: {it.discount_pct}% off")
                if rules.boosts.get(it.item_id):
                    why.append(f"boosted for campaign {rules.campaign_type or ''}".rstrip())
    return whys_of


def _trained_folder(name: str | None) -> Path | None:
    """The folder of a trained scorer called ``name`` (None: 'default'), or None when there is none."""
    base = get_settings().scorers_dir
    if name is None:
        cand = base / "default"
    elif (base / name / "scorer.json").exists():
        cand = base / name
    else:
        cand = Path(name)
    return cand if (cand / "scorer.json").exists() else None


def encoder_dim(encoder: Any) -> int:
    """Embedding size of a sentence-transformers encoder (either method name, by library version)."""
    fn = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(fn() or 384)


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


def _item_rules(items: Sequence[Item], rules: RankRules) -> tuple[np.ndarray, np.ndarray]:
    """Per-item ``(allowed mask, additive bonus)`` from the rules that do not depend on the user."""
    allowed = np.ones(len(items), dtype=bool)
    bonus = np.zeros(len(items), dtype=np.float64)
    discount = rules.campaign_type in DISCOUNT_CAMPAIGNS
    for n, it in enumerate(items):
        if rules.drop_out_of_stock and not it.in_stock:
            allowed[n] = False
        if rules.only_item_ids is not None and it.item_id not in rules.only_item_ids:
            allowed[n] = False
        if discount:
            pct = it.discount_pct
            if not pct:
                allowed[n] = False
            else:
                bonus[n] += rules.discount_boost * pct / 100
        bonus[n] += rules.boosts.get(it.item_id, 0.0)
    return allowed, bonus


def topk_deterministic(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` per row, by score descending then column index ascending (so ties break by item_id).

    ``torch.topk`` does not promise an order among equal scores; rows where a tie crosses the k-th place are
    re-sorted exactly (stable sort), others only have their k winners ordered.
    """
    import torch

    k = min(k, scores.shape[1])
    val, idx = torch.topk(scores, k, dim=1)
    kth = val[:, -1:]
    above = (scores >= kth).sum(dim=1, dtype=torch.int32)  # int32: 3x faster than the default int64 sum
    idx_np, val_np = idx.numpy().copy(), val.numpy().copy()
    for r in torch.nonzero(above > k).flatten().tolist():  # ties at the cut: exact stable sort of the row
        row = scores[r].numpy()
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        idx_np[r], val_np[r] = order, row[order]
    order = np.lexsort((idx_np, -val_np), axis=1) if idx_np.size else idx_np
    return np.take_along_axis(idx_np, order, 1), np.take_along_axis(val_np, order, 1)


def mmr(cands: Sequence[tuple[int, float]], vecs: np.ndarray, k: int, lam: float) -> list[tuple[int, float]]:
    """Maximal marginal relevance: greedily pick ``k`` of ``cands`` (index, score; best first).

    Relevance is min-max scaled over the candidates so ``lam`` means the same for any score scale; equal MMR
    values keep the candidates' order (score, then item_id).
    """
    if not cands:
        return []
    idx = np.array([c[0] for c in cands])
    rel = np.array([c[1] for c in cands], dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    sim = vecs[idx] @ vecs[idx].T
    chosen: list[int] = []
    max_sim = np.full(len(idx), -np.inf)
    left = np.ones(len(idx), dtype=bool)
    for _ in range(min(k, len(idx))):
        red = np.where(np.isfinite(max_sim), max_sim, 0.0)
        val = np.where(left, lam * rel - (1 - lam) * red, -np.inf)
        p = int(np.argmax(val))  # first maximum: earlier candidate wins a tie
        chosen.append(p)
        left[p] = False
        max_sim = np.maximum(max_sim, sim[p])
    return [cands[p] for p in chosen]


def mmr_many(pools: Sequence[Sequence[tuple[int, float]]], vecs: np.ndarray, k: int,
             lam: float) -> list[list[tuple[int, float]]]:
    """:func:`mmr` of many candidate lists, with the same picks: lists of one length go through the greedy steps
    together (array operations over all of them instead of a dozen small ones per list and step)."""
    out: list[list[tuple[int, float]]] = [[] for _ in pools]
    by_size: dict[int, list[int]] = {}
    for n, cands in enumerate(pools):
        if cands:
            by_size.setdefault(len(cands), []).append(n)
    for which in by_size.values():
        idx = np.array([[c[0] for c in pools[n]] for n in which])
        rel = np.array([[c[1] for c in pools[n]] for n in which], dtype=np.float64)
        for n, picks in zip(which, mmr_picks(idx, rel, vecs, k, lam), strict=True):
            out[n] = [pools[n][p] for p in picks]
    return out


def mmr_picks(idx: np.ndarray, rel: np.ndarray, vecs: np.ndarray, k: int, lam: float) -> list[list[int]]:
    """The positions :func:`mmr` picks, for lists of equal length given as rows of item indexes ``idx`` and their
    scores ``rel`` (float64). Each list's similarities are its own product, as in :func:`mmr`.

    Where the lists hold at most 4,096 distinct items, the similarities come from one product of those items'
    vectors, which may round differently in the last bits than a list's own product: two float32 dot products of the
    same vectors, summed in any order, differ by at most ``2 * gamma(d) * |x| |y|`` (``gamma(d) = d u / (1 - d u)``,
    ``u = 2**-24``), so a step whose best value leads the next by more than what that can move them picks what the
    list's own product picks. A list with a closer step is picked again from its own product
    (:func:`_mmr_picks_exact`), as are all the lists where they hold more items."""
    size = idx.shape[1]
    steps_n = min(k, size)
    if not len(idx) or not steps_n:
        return [[] for _ in range(len(idx))]
    r = _scaled(rel)
    held, pos = np.unique(idx, return_inverse=True)
    if len(held) > 4096:
        return _mmr_picks_exact(idx, r, vecs, steps_n, lam).tolist()
    pos = pos.reshape(idx.shape)
    own = vecs[held]
    gram = own @ own.T
    d = vecs.shape[1]
    gamma = d * 2.0 ** -24 / (1 - d * 2.0 ** -24)
    norm2 = float(np.einsum("ij,ij->i", own, own, dtype=np.float64).max())
    margin = 4 * (1 - lam) * 2 * gamma * norm2 * 1.01 + 1e-12  # twice what the sims' rounding can move a value
    rows = np.arange(len(idx))
    max_sim = np.full(idx.shape, -np.inf)
    left = np.ones(idx.shape, dtype=bool)
    unsure = np.zeros(len(idx), dtype=bool)
    steps = []
    for step in range(steps_n):
        red = np.where(np.isfinite(max_sim), max_sim, 0.0)
        val = np.where(left, lam * r - (1 - lam) * red, -np.inf)
        p = np.argmax(val, axis=1)  # first maximum per list: earlier candidate wins a tie
        if step:  # the first step reads no similarity
            best = val[rows, p]
            val[rows, p] = -np.inf
            second = val.max(axis=1)
            unsure |= np.isfinite(second) & (best - second <= margin)
        steps.append(p)
        left[rows, p] = False
        if step + 1 < steps_n:
            max_sim = np.maximum(max_sim, gram[pos[rows, p][:, None], pos])
    picks = np.stack(steps, axis=1)
    again = np.flatnonzero(unsure)
    if len(again):
        picks[again] = _mmr_picks_exact(idx[again], r[again], vecs, steps_n, lam)
    return picks.tolist()


def _scaled(rel: np.ndarray) -> np.ndarray:
    """Each row's scores min-max scaled to [0, 1] (all 1 where a row's are equal), as :func:`mmr` scales them."""
    lo, hi = rel.min(axis=1, keepdims=True), rel.max(axis=1, keepdims=True)
    span = hi - lo
    return np.where(span > 0, (rel - lo) / np.where(span > 0, span, 1.0), 1.0)


def _mmr_picks_exact(ids: np.ndarray, r: np.ndarray, vecs: np.ndarray, steps_n: int, lam: float) -> np.ndarray:
    """:func:`mmr_picks` of scaled scores ``r`` from each list's whole similarity product (``vecs[i] @ vecs[i].T``)."""
    out = []
    size = ids.shape[1]
    for start in range(0, len(ids), 512):  # bounded memory: 512 lists x size x size similarities
        block, rb = ids[start:start + 512], r[start:start + 512]
        sim = np.stack([vecs[i] @ vecs[i].T for i in block])
        rows = np.arange(len(block))
        max_sim = np.full((len(block), size), -np.inf)
        left = np.ones((len(block), size), dtype=bool)
        steps = []
        for _ in range(steps_n):
            red = np.where(np.isfinite(max_sim), max_sim, 0.0)
            val = np.where(left, lam * rb - (1 - lam) * red, -np.inf)
            p = np.argmax(val, axis=1)
            steps.append(p)
            left[rows, p] = False
            max_sim = np.maximum(max_sim, sim[rows, p])
        out.append(np.stack(steps, axis=1))
    return np.concatenate(out) if out else np.zeros((0, steps_n), dtype=np.int64)


def rank_items_for_users(shop: Shop, user_ids: list[str] | None = None, rules: RankRules | None = None, *,
                         scorer: Scorer | None = None,
                         store: Store | None = None) -> dict[str, list[RankedItem]]:
    """Convenience: load the default scorer (trained when present) and rank."""
    return (scorer or Scorer.load(store=store)).rank(shop, user_ids, rules or RankRules(), progress=False)


__all__ = ["RankRules", "RankedItem", "Scorer", "ScorerConfig", "UserHistory",
           "build_histories", "content_hash", "mmr", "popularity", "rank_items_for_users",
           "topk_deterministic"]
