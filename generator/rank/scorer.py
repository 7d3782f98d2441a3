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
from generator.core.data import Item, Shop
from generator.core.errors import ScorerError
from generator.core.shop_index import per_shop, user_ids_of
from generator.rank.history import EVENT_WEIGHTS, HistoryBatch, UserHistory, history_batch, offsets_of, ranges

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from generator.db.store import Store

log = logging.getLogger(__name__)

EVENT_VERBS: dict[str, str] = {"purchase": "bought", "cart": "carted", "wishlist": "wishlisted",
                               "click": "clicked", "view": "viewed"}

DISCOUNT_CAMPAIGNS = frozenset({"price_drop", "sale", "discount"})
SIMS_MAX_ITEMS = 4096
"""Items whose pairwise similarities diversification (MMR) takes from one matrix product; more: pair by pair."""
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

    def to_dict(self, item: dict[str, Any] | None = None) -> dict[str, Any]:
        """As a message's record keeps it; ``item``: :func:`item_record` of the item, where the caller has it (the
        users of a chunk share items: their records make each item's once)."""
        return {**(item or item_record(self.item)), "score": round(self.score, 6), "rank": self.rank,
                "why": list(self.why)}


def item_record(item: Item) -> dict[str, Any]:
    """What a ranked item's record keeps of the item."""
    return {"item_id": item.item_id, "title": item.title, "price": str(item.current_price),
            "list_price": str(item.price), "currency": item.currency, "discount_pct": item.discount_pct,
            "image_url": item.image_url}


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
    wanted = list(dict.fromkeys(user_ids if user_ids is not None else (u.user_id for u in shop.users)))
    batch = history_batch(shop, index, wanted, cfg.recency_decay, cfg.review_weight)
    return dict(zip(wanted, batch.histories(), strict=True))


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
        self._sims: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None  # a catalog's vectors, their sims
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
    def user_vectors(self, histories: Sequence[UserHistory] | HistoryBatch, item_vecs: np.ndarray,
                     titles: Sequence[str], review_vecs: dict[str, np.ndarray]) -> np.ndarray:
        """One normalised vector per history (zeros for an empty history)."""
        batch = histories if isinstance(histories, HistoryBatch) else HistoryBatch.of(histories)
        cfg = self.config
        agg = np.zeros((len(batch), item_vecs.shape[1]), dtype=np.float32)
        sizes = batch.sizes
        # each history's weights @ its items' vectors: stacked products of one length (the values of one per user)
        for size in np.unique(sizes[sizes > 0]).tolist():
            which = np.flatnonzero(sizes == size)
            at = batch.offsets[which][:, None] + np.arange(size)
            w = batch.weights[at].astype(np.float32)
            agg[which] = (w[:, None, :] @ item_vecs[batch.items[at]])[:, 0, :]
        # the reviews added one at a time, in order, as float32 sums (w * vector in float32, as numpy gives it)
        counts = np.array([len(rs) for rs in batch.reviews], dtype=np.int64)
        if counts.any():
            starts = np.cumsum(counts) - counts
            vecs = np.stack([review_vecs[t] for rs in batch.reviews for t, _, _ in rs])
            weights = np.array([w for rs in batch.reviews for _, w, _ in rs], dtype=np.float32)
            for q in range(int(counts.max())):
                which = np.flatnonzero(counts > q)
                agg[which] += weights[starts[which] + q, None] * vecs[starts[which] + q]
        agg = _normalise(agg)
        rows = np.flatnonzero(~batch.empty) if cfg.profile_text_weight > 0 else np.zeros(0, dtype=np.int64)
        if len(rows):
            prof = self.embed_texts(self.profile_texts(batch, rows, titles))
            a = cfg.profile_text_weight
            agg[rows] = _normalise((1 - a) * agg[rows] + a * prof)
        return agg

    def _catalog_sims(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """:func:`catalog_sims` of a catalog's ``vecs`` when it has at most 4,096 items, else None; kept for the next
        call with the same vectors."""
        if len(vecs) > SIMS_MAX_ITEMS:
            return None
        if self._sims is None or not np.array_equal(self._sims[0], vecs):
            self._sims = (vecs.copy(), catalog_sims(vecs))
        return self._sims[1]

    def profile_text(self, h: UserHistory, titles: Sequence[str]) -> str:
        """The user as text: recent history titles (newest first, deduplicated) and review snippets."""
        return self.profile_texts(HistoryBatch.of([h]), np.zeros(1, dtype=np.int64), titles)[0]

    def profile_texts(self, batch: HistoryBatch, rows: np.ndarray, titles: Sequence[str]) -> list[str]:
        """:meth:`profile_text` of the histories ``rows`` of ``batch``: the titles of the most recent distinct
        titles of each (newest first), then its last two reviews' snippets."""
        recent = _recent_titles(batch, rows, titles, self.config.profile_text_items)
        out = []
        for titles_of, r in zip(recent, rows.tolist(), strict=True):
            parts = [", ".join(titles_of)] if titles_of else []
            parts += [_snippet(t, 120) for t, _, _ in batch.reviews[r][-2:]]
            out.append(". ".join(parts))
        return out

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
        from tqdm.auto import tqdm

        rules = rules or RankRules()
        rules.validate()
        known = user_ids_of(shop)
        if user_ids is None:
            user_ids = sorted(known)
        unknown = [u for u in user_ids if u not in known]
        if unknown:
            raise ScorerError(f"unknown user_id(s): {', '.join(map(repr, unknown[:5]))}")
        if not shop.items or not user_ids:
            return {u: [] for u in user_ids}
        ctx = self._context(shop, user_ids, rules, progress)
        items = ctx.items
        chunk = max(1, self.config.chunk_elements // len(items))
        out: dict[str, list[RankedItem]] = {}
        bar = tqdm(total=len(user_ids), desc="ranking", unit="user", disable=not progress)
        for start in range(0, len(user_ids), chunk):
            uids = user_ids[start:start + chunk]
            hs = ctx.histories.rows(start, start + len(uids))
            ranked, scores = self._rank_chunk(hs, ctx)
            whys_of = explain_many(ranked, hs, items, ctx.vecs, ctx.review_vecs, ctx.pop, rules, ctx.id_rank)
            for uid, idx, vals, whys in zip(uids, ranked, scores, whys_of, strict=True):
                out[uid] = [RankedItem(items[i], s, n, why)
                            for n, i, s, why in zip(range(1, len(idx) + 1), idx, vals, whys, strict=True)]
            bar.update(len(uids))
        bar.close()
        return out

    def _context(self, shop: Shop, user_ids: list[str], rules: RankRules, progress: bool) -> _Ranking:
        """What ranking ``user_ids`` under ``rules`` shares: the catalog, its vectors, the users' histories."""
        import torch

        items = sorted(shop.items, key=lambda it: it.item_id)  # index order = tie-break order
        index = {it.item_id: i for i, it in enumerate(items)}
        texts = [it.text() for it in items]
        item_vecs = self.embed_cached(texts, progress=progress)
        histories = history_batch(shop, index, user_ids, self.config.recency_decay, self.config.review_weight)
        review_texts = sorted({t for rs in histories.reviews for t, _, _ in rs})
        review_vecs = dict(zip(review_texts, self.embed_cached(review_texts), strict=True))
        allowed, bonus = _item_rules(items, rules)
        pop = popularity(shop, index)
        pop_score = np.log1p(pop) / max(math.log1p(pop.max()), 1.0)
        pool = max(rules.mmr_pool, 3 * rules.k) if rules.mmr_lambda is not None else rules.k
        sims = self._catalog_sims(item_vecs) if rules.mmr_lambda is not None else None
        return _Ranking(items=items, texts=texts, vecs=item_vecs, sims=sims, histories=histories,
                        review_vecs=review_vecs, id_rank=_id_ranks(items), pop=pop,
                        pop_score=torch.from_numpy(pop_score.astype(np.float32)), allowed=allowed,
                        bonus=torch.from_numpy(bonus.astype(np.float32)), rules=rules, pool=min(pool, len(items)))

    def _rank_chunk(self, hs: HistoryBatch, ctx: _Ranking) -> tuple[list[list[int]], list[list[float]]]:
        """The ranked items (catalog indices) and their scores of each history of ``hs``: the top scores among
        the items the rules allow, re-ranked by MMR when the rules say so."""
        import torch

        rules = ctx.rules
        cols = np.flatnonzero(ctx.allowed)  # the columns ranked: every item the user-independent rules allow
        if not len(cols):
            return [[] for _ in range(len(hs))], [[] for _ in range(len(hs))]
        uvecs = self.user_vectors(hs, ctx.vecs, [it.title for it in ctx.items], ctx.review_vecs)
        with torch.no_grad():
            scores = torch.from_numpy(uvecs) @ torch.from_numpy(ctx.vecs).T
            if self.collab is not None:
                scores = self.collab.score(scores, hs.item_lists(), [it.item_id for it in ctx.items], ctx.vecs,
                                           ctx.texts)
            empty = hs.empty
            if empty.any():
                scores[torch.from_numpy(empty)] = ctx.pop_score
            if len(cols) < len(ctx.items):
                cols_t = torch.from_numpy(cols)
                scores = scores.index_select(1, cols_t) + ctx.bonus[cols_t]
            else:
                scores = scores + ctx.bonus
            if rules.drop_purchased:
                _drop_purchased(scores, hs, cols, len(ctx.items))
            top_idx, top_val = topk_deterministic(scores, min(ctx.pool, len(cols)))
        return _chosen(cols[top_idx], top_val, ctx.vecs, rules, ctx.sims)


@dataclass
class _Ranking:
    """What ranking one call's users shares: the catalog (sorted by ``item_id``) with its texts and vectors, the
    users' histories, the review vectors, popularity, and the rules with what they make of each item."""

    items: list[Item]
    texts: list[str]
    vecs: np.ndarray
    sims: tuple[np.ndarray, np.ndarray] | None
    """The catalog's similarities and squared norms for MMR (:func:`catalog_sims`), when kept."""
    histories: HistoryBatch
    review_vecs: dict[str, np.ndarray]
    id_rank: np.ndarray
    pop: np.ndarray
    pop_score: torch.Tensor
    """A user without history scores the items by this (log popularity, at most 1)."""
    allowed: np.ndarray
    """Per item: whether the rules that do not depend on the user allow it."""
    bonus: torch.Tensor
    rules: RankRules
    pool: int
    """How many top candidates MMR picks from (``k`` without MMR)."""


def _recent_titles(batch: HistoryBatch, rows: np.ndarray, titles: Sequence[str], n: int) -> list[list[str]]:
    """Per history ``rows[m]`` of ``batch``: the titles of its items, newest first, each title once, at most ``n``."""
    codes: dict[str, int] = {}
    title_code = np.array([codes.setdefault(t, len(codes)) for t in titles], dtype=np.int64)
    sizes = batch.offsets[rows + 1] - batch.offsets[rows]
    at = ranges(batch.offsets[rows], sizes)
    owner = np.repeat(np.arange(len(rows)), sizes)
    age = batch.offsets[rows + 1][owner] - 1 - at  # 0: the newest
    code = title_code[batch.items[at]]
    order = np.lexsort((age, code, owner))  # per user and title: the newest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = (owner[order][1:] != owner[order][:-1]) | (code[order][1:] != code[order][:-1])
    keep = order[first]
    keep = keep[np.lexsort((age[keep], owner[keep]))]  # per user: newest first
    place = np.arange(len(keep)) - np.searchsorted(owner[keep], owner[keep])  # its place among the user's titles
    keep = keep[place < n]
    bounds = np.searchsorted(owner[keep], np.arange(len(rows) + 1)).tolist()
    names = [titles[j] for j in batch.items[at[keep]].tolist()]
    return [names[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _drop_purchased(scores: torch.Tensor, hs: HistoryBatch, cols: np.ndarray, n_items: int) -> None:
    """Sets to ``-inf`` the score of every item (of the ranked columns ``cols``) a user of ``hs`` bought."""
    import torch

    code = hs.purchase_code
    if code < 0:
        return
    col_of = np.full(n_items, -1, dtype=np.int64)
    col_of[cols] = np.arange(len(cols))
    bought = np.flatnonzero(hs.kinds == code)
    user = np.searchsorted(hs.offsets, bought, side="right") - 1
    col = col_of[hs.items[bought]]
    scores[torch.from_numpy(user[col >= 0]), torch.from_numpy(col[col >= 0])] = float("-inf")


def _chosen(top_idx: np.ndarray, top_val: np.ndarray, vecs: np.ndarray, rules: RankRules,
            sims: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[list[list[int]], list[list[float]]]:
    """Each row's ranked items and scores from its top candidates (best first; ``-inf``: not allowed): the first
    ``rules.k``, or MMR's picks among them (``sims``: the catalog's, see :func:`catalog_sims`). Rows whose candidates
    are all allowed are picked from together, as arrays; the others from their allowed candidates."""
    k, lam = rules.k, rules.mmr_lambda
    full = np.isfinite(top_val).all(axis=1)
    rows = np.flatnonzero(full)
    idx, val = top_idx[rows, :k], top_val[rows, :k]
    if lam is not None and top_idx.shape[1] > k and len(rows):
        picks = _mmr_pick_array(top_idx[rows], top_val[rows].astype(np.float64), vecs, k, lam, sims)
        idx, val = np.take_along_axis(top_idx[rows], picks, 1), np.take_along_axis(top_val[rows], picks, 1)
    if full.all():
        return idx.tolist(), val.tolist()
    ranked: list[list[int]] = [[] for _ in range(len(top_idx))]
    scores: list[list[float]] = [[] for _ in range(len(top_idx))]
    for r, i, v in zip(rows.tolist(), idx.tolist(), val.tolist(), strict=True):
        ranked[r], scores[r] = i, v
    rest = np.flatnonzero(~full)
    cands = [[(i, v) for i, v in zip(a, b, strict=True) if v > -math.inf]
             for a, b in zip(top_idx[rest].tolist(), top_val[rest].tolist(), strict=True)]
    if lam is not None:
        many = [n for n, c in enumerate(cands) if len(c) > k]
        for n, picked in zip(many, mmr_many([cands[n] for n in many], vecs, k, lam), strict=True):
            cands[n] = picked
    for r, c in zip(rest.tolist(), cands, strict=True):
        ranked[r], scores[r] = [i for i, _ in c[:k]], [v for _, v in c[:k]]
    return ranked, scores


def _id_ranks(items: Sequence[Item]) -> np.ndarray:
    """Per catalog index (items sorted by ``item_id``), the first index of its ``item_id``: ordering by it is ordering
    by ``item_id``, equal ids equal."""
    out = np.arange(len(items))
    for j in range(1, len(items)):
        if items[j].item_id == items[j - 1].item_id:
            out[j] = out[j - 1]
    return out


def _products(vecs: np.ndarray, left: np.ndarray, left_at: np.ndarray, other: np.ndarray, right: np.ndarray,
              right_at: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``vecs[left[a:b]] @ other[right[c:d]].T`` for every pair ``n`` of ranges (``a, b = left_at[n:n + 2]``,
    ``c, d = right_at[n:n + 2]``), with the same values: the pairs of one shape go through one stacked ``matmul``,
    which multiplies each pair with the kernel a single product of that shape uses. Per shape: the pairs ``n`` (in
    their order) and their products, stacked."""
    left_n, right_n = np.diff(left_at), np.diff(right_at)
    shape = left_n * (int(right_n.max(initial=0)) + 1) + right_n
    order = np.argsort(shape, kind="stable")
    cuts = np.flatnonzero(np.diff(shape[order])) + 1
    out = []
    for which in np.split(order, cuts):
        if not len(which):
            continue
        a, b = int(left_n[which[0]]), int(right_n[which[0]])
        lhs = vecs[left[left_at[which][:, None] + np.arange(a)]]
        rhs = other[right[right_at[which][:, None] + np.arange(b)]]
        out.append((which, lhs @ rhs.transpose(0, 2, 1)))
    return out


def explain_many(ranked: Sequence[list[int]], hs: Sequence[UserHistory] | HistoryBatch, items: Sequence[Item],
                 item_vecs: np.ndarray, review_vecs: dict[str, np.ndarray], pop: np.ndarray, rules: RankRules,
                 id_rank: np.ndarray | None = None, top: int = 2) -> list[list[list[str]]]:
    """Why each ranked item, for many users at once: the history items (and review) most like it, or its
    popularity, with the words and numbers of the per-user reference in ``tests/test_scorer_vectorised.py``. Each
    user's cosines come from a stacked product of pairs of one shape (the values a product per user gives, its
    history items in order of first appearance), and the choice of lines from array operations over all the users'
    events together."""
    batch = hs if isinstance(hs, HistoryBatch) else HistoryBatch.of(hs)
    if id_rank is None:
        id_rank = _id_ranks(items)
    sizes = batch.sizes.tolist()
    whys: list[list[list[str]]] = []
    for r, size, reviews in zip(ranked, sizes, batch.reviews, strict=True):
        if r and not size and not reviews:
            whys.append([[f"popular: {int(round(pop[i]))} recent interactions" if pop[i] > 0 else "catalog pick"]
                         for i in r])
        else:
            whys.append([[] for _ in r])
    with_items = [u for u, r in enumerate(ranked) if r and sizes[u]]
    if with_items:
        _history_lines(whys, ranked, batch, np.array(with_items), items, item_vecs, id_rank, top)
    with_reviews = [u for u, r in enumerate(ranked) if r and batch.reviews[u]]
    if with_reviews:
        _review_lines(whys, ranked, batch.reviews, with_reviews, item_vecs, review_vecs)
    return _campaign_whys(ranked, whys, items, rules)


def _ranked_arrays(ranked: Sequence[list[int]], users: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The ranked items of ``users``, concatenated, and where each user's start (and the last ends)."""
    lists = [ranked[u] for u in users]
    at = offsets_of([len(r) for r in lists])
    return np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(at[-1])), at


def _history_lines(whys: list[list[list[str]]], ranked: Sequence[list[int]], batch: HistoryBatch, users: np.ndarray,
                   items: Sequence[Item], item_vecs: np.ndarray, id_rank: np.ndarray, top: int) -> None:
    """Adds to ``whys[u][n]`` the ``top`` history items of each user ``u`` of ``users`` most like its ranked item
    ``n`` (the largest weight times cosine, then by item_id), each as its strongest event (the first of equal ones),
    its title and its cosine."""
    sizes = batch.offsets[users + 1] - batch.offsets[users]
    at = ranges(batch.offsets[users], sizes)
    ev_user = np.repeat(np.arange(len(users)), sizes)
    ev_j = batch.items[at]
    # groups: (user, history item), in order of first appearance
    _, first_at, group_of = np.unique(ev_user * len(items) + ev_j, return_index=True, return_inverse=True)
    label = np.empty(len(first_at), dtype=np.int64)
    label[np.argsort(first_at, kind="stable")] = np.arange(len(first_at))
    group_of = label[group_of.ravel()]
    by_group = np.argsort(group_of, kind="stable")  # events by group, each group's in their order
    g_first = np.sort(first_at)
    g_user, g_j = ev_user[g_first], ev_j[g_first]
    bounds = np.searchsorted(g_user, np.arange(len(users) + 1))
    left, left_at = _ranked_arrays(ranked, users.tolist())
    ranked_n = np.diff(left_at)
    cg = np.zeros((len(g_j), int(ranked_n.max())), dtype=np.float64)  # each group's cosine with its user's items
    for which, prod in _products(item_vecs, left, left_at, item_vecs, g_j, bounds):
        r, m = prod.shape[1:]
        cg[(bounds[which][:, None] + np.arange(m)).ravel(), :r] = prod.transpose(0, 2, 1).reshape(-1, r)
    starts = np.searchsorted(group_of[by_group], np.arange(len(g_j)))
    prod = batch.weights[at][by_group, None] * cg[group_of[by_group]]  # w * c per event, as Python multiplies
    best = np.maximum.reduceat(prod, starts, axis=0)
    first = np.minimum.reduceat(np.where(prod == best[group_of[by_group]], by_group[:, None], len(ev_j)),
                                starts, axis=0)  # per group and ranked item: the first of its strongest events
    verbs = [EVENT_VERBS.get(name, name) for name in batch.kind_names]
    snips: list[str | None] = [None] * len(items)
    counts = np.diff(bounds)
    for m, n, g in _strongest_groups(best, g_user, bounds, id_rank[g_j], ranked_n, min(top, int(counts.max()))):
        j, kinds, cos = g_j[g].tolist(), batch.kinds[at[first[g, n]]].tolist(), cg[g, n].tolist()
        for i in set(j):
            if snips[i] is None:
                snips[i] = _snippet(items[i].title, 40)
        for u, nn, v, i, c in zip(users[m].tolist(), n.tolist(), kinds, j, cos, strict=True):
            whys[u][nn].append(f"{verbs[v]} '{snips[i]}' ({c:.2f})")


def _strongest_groups(best: np.ndarray, g_user: np.ndarray, bounds: np.ndarray, jr: np.ndarray,
                      ranked_n: np.ndarray, top: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For ``t`` in ``range(top)``: the ``t``-th strongest group of each user ``m`` for its ranked item ``n`` (the
    largest ``best[g, n]`` among the user's groups ``bounds[m]:bounds[m + 1]``, then the smallest ``jr[g]``, then
    the first), as arrays ``(m, n, g)`` over the users with more than ``t`` groups and the ``n`` they ranked."""
    taken = np.zeros(best.shape, dtype=bool)
    heads, counts = bounds[:-1], np.diff(bounds)
    group = np.arange(len(best))[:, None]
    ranked_cols = np.arange(best.shape[1]) < ranked_n[:, None]
    out = []
    for t in range(top):
        val = np.where(taken, -np.inf, best)
        cand = (val == np.maximum.reduceat(val, heads, axis=0)[g_user]) & ~taken
        key = np.where(cand, jr[:, None], np.iinfo(np.int64).max)
        cand &= key == np.minimum.reduceat(key, heads, axis=0)[g_user]
        pick = np.minimum.reduceat(np.where(cand, group, len(best)), heads, axis=0)
        m, n = np.nonzero(ranked_cols & (counts > t)[:, None])
        g = pick[m, n]
        taken[g, n] = True
        out.append((m, n, g))
    return out


def _review_lines(whys: list[list[list[str]]], ranked: Sequence[list[int]],
                  reviews: Sequence[Sequence[tuple[str, float, int]]], users: list[int], item_vecs: np.ndarray,
                  review_vecs: dict[str, np.ndarray]) -> None:
    """Adds to ``whys[u][n]`` the review of each user ``u`` of ``users`` most like its ranked item ``n``: the
    largest weight times cosine, then the greatest text, the first of equal ones; with its cosine."""
    texts = list(dict.fromkeys(t for u in users for t, _, _ in reviews[u]))
    row_of = {t: n for n, t in enumerate(texts)}
    text_rank = np.empty(len(texts), dtype=np.int64)
    text_rank[sorted(range(len(texts)), key=texts.__getitem__)] = np.arange(len(texts))
    own = [reviews[u] for u in users]
    right_at = offsets_of([len(rs) for rs in own])
    right = np.array([row_of[t] for rs in own for t, _, _ in rs], dtype=np.int64)
    weight = np.array([w for rs in own for _, w, _ in rs], dtype=np.float64)
    left, left_at = _ranked_arrays(ranked, users)
    matrix = np.stack([review_vecs[t] for t in texts])
    for which, prod in _products(item_vecs, left, left_at, matrix, right, right_at):
        at = right_at[which][:, None] + np.arange(prod.shape[2])
        wc = weight[at][:, None, :] * prod.astype(np.float64)  # w * c, as Python multiplies
        cand = wc == wc.max(axis=2, keepdims=True)
        key = np.where(cand, text_rank[right[at]][:, None, :], -1)
        pick = np.argmax(cand & (key == key.max(axis=2, keepdims=True)), axis=2)
        cos = np.take_along_axis(prod, pick[..., None], 2)[..., 0].tolist()
        rows = right[np.take_along_axis(at, pick, 1)].tolist()
        for w_n, cs, rs in zip(which.tolist(), cos, rows, strict=True):
            for why, c, row in zip(whys[users[w_n]], cs, rs, strict=True):
                why.append(f"review: '{_snippet(texts[row])}' ({c:.2f})")


def _campaign_whys(ranked: Sequence[list[int]], whys_of: list[list[list[str]]], items: Sequence[Item],
                   rules: RankRules) -> list[list[list[str]]]:
    """The campaign's reasons appended to each ranked item's (a discount campaign's discount, a boost)."""
    discount = rules.campaign_type in DISCOUNT_CAMPAIGNS
    if discount or rules.boosts:
        lines: dict[int, list[str]] = {}
        for r, whys in zip(ranked, whys_of, strict=True):
            for i, why in zip(r, whys, strict=True):
                if i not in lines:
                    lines[i] = _campaign_lines(items[i], rules, discount)
                why += lines[i]
    return whys_of


def _campaign_lines(it: Item, rules: RankRules, discount: bool) -> list[str]:
    """The campaign's reasons for recommending ``it``."""
    out = []
    if discount and it.discount_pct:
        out.append(f"campaign {rules.campaign_type}: {it.discount_pct}% off")
    if rules.boosts.get(it.item_id):
        out.append(f"boosted for campaign {rules.campaign_type or ''}".rstrip())
    return out


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

    Only a row's scores at or above a bound of its k-th largest are sorted (a stable sort: equal scores keep their
    columns' order). The bound is the k-th largest of the maxima of ``4 k`` blocks of columns: those maxima are k
    of the row's scores, so at least k scores reach it. Small matrices, and rows with NaN, take
    :func:`_topk_by_torch`.
    """
    import torch

    n, m = scores.shape
    k = min(k, m)
    blocks = 4 * k
    if not n or not k or m < 2 * blocks:
        return _topk_by_torch(scores, k)
    width = m // blocks
    block_max = scores[:, :blocks * width].unflatten(1, (blocks, width)).amax(dim=2).numpy()
    if np.isnan(block_max).any():
        return _topk_by_torch(scores, k)
    bound = np.partition(block_max, blocks - k, axis=1)[:, blocks - k]
    rows, cols = (t.numpy() for t in torch.nonzero(scores >= torch.from_numpy(bound)[:, None], as_tuple=True))
    count = np.bincount(rows, minlength=n)
    place = np.arange(len(rows)) - (np.cumsum(count) - count)[rows]
    values = scores.numpy()
    neg = np.full((n, int(count.max())), np.inf, dtype=values.dtype)  # each row's candidates, negated, in column order
    at = np.zeros(neg.shape, dtype=np.int64)
    neg[rows, place] = -values[rows, cols]
    at[rows, place] = cols
    order = np.argsort(neg, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(at, order, 1), -np.take_along_axis(neg, order, 1)


def _topk_by_torch(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk_deterministic` from ``torch.topk``, which does not promise an order among equal scores: rows
    where a tie crosses the k-th place are re-sorted exactly (stable sort), others only have their k winners
    ordered."""
    import torch

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
    return _mmr_pick_array(idx, rel, vecs, k, lam).tolist()


def _mmr_pick_array(idx: np.ndarray, rel: np.ndarray, vecs: np.ndarray, k: int, lam: float,
                    sims: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """:func:`mmr_picks` as an array ``(lists, min(k, size))``. ``sims``: the similarities of all of ``vecs`` (a
    product of them, as :func:`catalog_sims` makes) and their squared norms, used in place of a product of the lists'
    items."""
    size = idx.shape[1]
    steps_n = min(k, size)
    if not len(idx) or not steps_n:
        return np.zeros((len(idx), steps_n), dtype=np.int64)
    r = _scaled(rel)
    if sims is not None:
        gram, pos = sims[0], idx
        norm2 = float(sims[1][idx].max())
    else:
        held, pos = np.unique(idx, return_inverse=True)
        if len(held) > SIMS_MAX_ITEMS:
            return _mmr_picks_exact(idx, r, vecs, steps_n, lam)
        pos = pos.reshape(idx.shape)
        own = vecs[held]
        gram = own @ own.T
        norm2 = float(np.einsum("ij,ij->i", own, own, dtype=np.float64).max())
    d = vecs.shape[1]
    gamma = d * 2.0 ** -24 / (1 - d * 2.0 ** -24)
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
    return picks


def catalog_sims(vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The similarities of every pair of ``vecs`` (``vecs @ vecs.T``, float32) and each one's squared norm (float64):
    what :func:`mmr_picks` reads for lists of items of ``vecs``, made once for a catalog."""
    return vecs @ vecs.T, np.einsum("ij,ij->i", vecs, vecs, dtype=np.float64)


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
