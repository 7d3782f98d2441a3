"""The scorer's chunk-wide array paths give what the per-user code gives: explanations (``explain_many`` against
the per-user reference ``explain_one`` below), user vectors (against a vector per user) and MMR picks (against each
list's own product)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from generator.core.data import Item, load_shop
from generator.rank.scorer import (
    DISCOUNT_CAMPAIGNS,
    EVENT_VERBS,
    RankRules,
    Scorer,
    ScorerConfig,
    UserHistory,
    _mmr_picks_exact,
    _scaled,
    _snippet,
    build_histories,
    explain_many,
    mmr_picks,
    popularity,
)
from tests.test_scorer import FakeEncoder

SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


def _occurrences(h: UserHistory) -> list[tuple[int, list[tuple[float, str]]]]:
    """A history's items, each once in order of first appearance, with the (weight, verb) of each of its events."""
    by_item: dict[int, list[tuple[float, str]]] = {}
    for j, w, kind in zip(h.items, h.weights, h.kinds, strict=True):
        by_item.setdefault(j, []).append((w, EVENT_VERBS.get(kind, kind)))
    return list(by_item.items())


def explain_one(ranked: list[int], h: UserHistory, items: Sequence[Item], item_vecs: np.ndarray,
             review_vecs: dict[str, np.ndarray], pop: np.ndarray, rules: RankRules,
             top: int = 2) -> list[list[str]]:
    """Why each of a user's ranked items: the history items (and review) most like it, or its popularity. The
    cosines of all the ranked items with the user's history come from one matrix product per user."""
    if not ranked:
        return []
    if h.empty:
        whys = [[f"popular: {int(round(pop[i]))} recent interactions" if pop[i] > 0 else "catalog pick"]
                for i in ranked]
    else:
        seen = _occurrences(h)
        cos = (item_vecs[ranked] @ item_vecs[[j for j, _ in seen]].T).tolist()
        texts = [t for t, _, _ in h.reviews]
        review_cos = (item_vecs[ranked] @ np.stack([review_vecs[t] for t in texts]).T).tolist() if texts else []
        whys = []
        for n in range(len(ranked)):
            contrib = []  # per history item: (weighted, cosine, verb) of its strongest event
            for (j, events), c in zip(seen, cos[n], strict=True):
                best, verb = events[0][0] * c, events[0][1]
                for w, v in events[1:]:  # the first of its strongest events
                    if w * c > best:
                        best, verb = w * c, v
                contrib.append((best, items[j].item_id, j, c, verb))
            contrib.sort(key=lambda p: (-p[0], p[1]))
            why = [f"{verb} '{_snippet(items[j].title, 40)}' ({c:.2f})" for _, _, j, c, verb in contrib[:top]]
            if texts:
                best_review = None  # the largest (weighted cosine, text)
                for (t, w, _), c in zip(h.reviews, review_cos[n], strict=True):
                    if best_review is None or (w * c, t) > (best_review[0], best_review[2]):
                        best_review = (w * c, c, t)
                why.append(f"review: '{_snippet(best_review[2])}' ({best_review[1]:.2f})")  # type: ignore[index]
            whys.append(why)
    for i, why in zip(ranked, whys, strict=True):
        it = items[i]
        if rules.campaign_type in DISCOUNT_CAMPAIGNS and it.discount_pct:
            why.append(f"campaign {rules.campaign_type}: {it.discount_pct}% off")
        if rules.boosts.get(it.item_id):
            why.append(f"boosted for campaign {rules.campaign_type or ''}".rstrip())
    return whys


def _setup(config: ScorerConfig):
    shop = load_shop(SHOP)
    scorer = Scorer(FakeEncoder(), "fake", config=config)
    items = sorted(shop.items, key=lambda it: it.item_id)
    index = {it.item_id: i for i, it in enumerate(items)}
    users = [u.user_id for u in shop.users]
    hist = build_histories(shop, index, config, users)
    item_vecs = scorer.embed_items(items)
    texts = sorted({t for h in hist.values() for t, _, _ in h.reviews})
    review_vecs = dict(zip(texts, scorer.embed_cached(texts), strict=True))
    return shop, scorer, items, index, users, hist, item_vecs, review_vecs


@pytest.mark.parametrize("decay", [0.85, 0.5, 0.8])  # 0.5 and 0.8 give events of different kinds equal weights
@pytest.mark.parametrize("rules", [RankRules(k=5), RankRules(k=3, campaign_type="price_drop"),
                                   RankRules(k=4, boosts={"SKU-0003": 0.1, "SKU-0010": 0.2})])
def test_explain_many_words_what_explain_words_per_user(decay: float, rules: RankRules) -> None:
    shop, scorer, items, index, users, hist, item_vecs, review_vecs = _setup(ScorerConfig(recency_decay=decay))
    pop = popularity(shop, index)
    rng = np.random.default_rng(int(decay * 100))
    ranked = [sorted(rng.choice(len(items), size=rng.integers(0, rules.k + 1), replace=False).tolist())
              for _ in users]
    hs = [hist[u] for u in users] + [UserHistory()]  # and one without history (popular items)
    ranked.append([0, 1])
    with threadpool_limits(limits=1, user_api="blas"):
        got = explain_many(ranked, hs, items, item_vecs, review_vecs, pop, rules)
        want = [explain_one(r, h, items, item_vecs, review_vecs, pop, rules)
                for r, h in zip(ranked, hs, strict=True)]
    assert any(h.empty for h in hs) and any(h.reviews for h in hs)
    assert got == want


def test_ranking_explains_as_before() -> None:
    """``rank`` explains with ``explain_many``: the same words as ``explain_one`` on every ranked item."""
    shop, scorer, items, index, users, hist, item_vecs, review_vecs = _setup(ScorerConfig())
    out = scorer.rank(shop, users, RankRules(k=5), progress=False)
    pop = popularity(shop, index)
    for u in users:
        want = explain_one([index[r.item.item_id] for r in out[u]], hist[u], items, item_vecs, review_vecs, pop,
                               RankRules(k=5))
        assert [r.why for r in out[u]] == want


def test_user_vectors_are_the_per_user_sums() -> None:
    shop, scorer, items, index, users, hist, item_vecs, review_vecs = _setup(ScorerConfig(profile_text_weight=0.0))
    hs = [hist[u] for u in users]
    with threadpool_limits(limits=1, user_api="blas"):
        got = scorer.user_vectors(hs, item_vecs, [it.title for it in items], review_vecs)
    want = np.zeros_like(got)
    for r, h in enumerate(hs):  # the per-user loop the scorer had
        if h.items:
            want[r] = np.asarray(h.weights, dtype=np.float32) @ item_vecs[h.items]
        for text, w, _ in h.reviews:
            want[r] += w * review_vecs[text]
    n = np.linalg.norm(want, axis=1, keepdims=True)
    want = (want / np.where(n > 0, n, 1.0)).astype(np.float32)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("kind", ["random", "duplicates", "near", "tied_scores"])
def test_mmr_picks_are_those_of_each_lists_own_product(kind: str) -> None:
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((300, 64)).astype(np.float32)
    if kind == "duplicates":
        vecs[100:200] = vecs[:100]  # equal vectors: equal similarities, ties in every step
    if kind == "near":
        vecs = vecs * 0.02 + vecs[:1]  # all nearly alike: values within rounding of each other
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        for size, k in ((50, 5), (12, 5), (3, 5), (20, 1), (20, 10)):
            idx = rng.integers(0, 300, (300, size))
            rel = rng.standard_normal((300, size))
            if kind == "tied_scores":
                rel = np.round(rel, 1)
            rel = -np.sort(-rel, axis=1)
            for lam in (0.7, 0.0, 0.5, 1.0):
                want = _mmr_picks_exact(idx, _scaled(rel), vecs, min(k, size), lam).tolist()
                assert mmr_picks(idx, rel, vecs, k, lam) == want


def test_mmr_picks_over_a_large_catalog_use_each_lists_product() -> None:
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((6000, 16)).astype(np.float32)
    idx = rng.integers(0, 6000, (200, 30))  # more than 4,096 distinct items
    rel = -np.sort(-rng.standard_normal((200, 30)), axis=1)
    assert mmr_picks(idx, rel, vecs, 5, 0.7) == _mmr_picks_exact(idx, _scaled(rel), vecs, 5, 0.7).tolist()
