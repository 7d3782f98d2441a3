"""The scorer's chunk-wide array paths give what the per-user code gives: explanations (``explain_many`` against
the per-user reference ``explain_one`` below), histories and profile texts (against the per-user references below),
user vectors (against a vector per user), MMR picks (against each list's own product), the top k (against a sort of
each row) and the ranking (against a per-user ranking: sorted scores of the allowed items, then :func:`mmr`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from generator.core.data import Event, EventType, Item, Review, Shop, User, load_shop
from generator.core.shop_index import user_ids_of, users_by_id
from generator.rank.history import EVENT_WEIGHTS, HistoryBatch
from generator.rank.scorer import (
    DISCOUNT_CAMPAIGNS,
    EVENT_VERBS,
    RankRules,
    Scorer,
    ScorerConfig,
    UserHistory,
    _item_rules,
    _mmr_pick_array,
    _mmr_picks_exact,
    _scaled,
    _snippet,
    _topk_by_torch,
    build_histories,
    catalog_sims,
    explain_many,
    mmr,
    mmr_picks,
    popularity,
    topk_deterministic,
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


def histories_one_by_one(shop: Shop, index: dict[str, int], config: ScorerConfig,
                         user_ids: Sequence[str]) -> dict[str, UserHistory]:
    """Each user's history from a sort of the user's own events and reviews."""
    out = {}
    for uid in user_ids:
        h = UserHistory()
        evs = sorted(((n, e) for n, e in enumerate(shop.events) if e.user_id == uid and e.item_id in index),
                     key=lambda p: (p[1].timestamp, p[0]))
        h.kinds = [e.event_type.value for _, e in evs]
        h.items = [index[e.item_id] for _, e in evs]
        h.weights = [EVENT_WEIGHTS.get(kind, 0.5) * config.recency_decay ** (len(evs) - 1 - pos)
                     for pos, kind in enumerate(h.kinds)]
        h.purchased = {i for i, kind in zip(h.items, h.kinds, strict=True) if kind == "purchase"}
        for rv in sorted((r for r in shop.reviews if r.user_id == uid), key=lambda r: (r.timestamp, r.item_id)):
            if rv.rating >= 3 and rv.text.strip() and rv.item_id in index:
                h.reviews.append((rv.text, config.review_weight * (rv.rating - 2) / 3, index[rv.item_id]))
        out[uid] = h
    return out


def shop_with_odd_histories() -> Shop:
    """The example shop and users whose events tie in time, carry naive or offset timestamps, repeat items, name
    items outside the catalog, or who only wrote reviews."""
    shop = load_shop(SHOP)
    ids = sorted(it.item_id for it in shop.items)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    rng = np.random.default_rng(4)
    kinds = [EventType.view, EventType.click, EventType.cart, EventType.wishlist, EventType.purchase]
    offset = timezone(timedelta(hours=-5))
    for k in range(30):
        uid = f"odd{k}"
        shop.users.append(User(user_id=uid))
        for m in range(int(rng.integers(0, 12)) if k % 5 else 0):
            stamp = [t0, t0 + timedelta(minutes=int(rng.integers(0, 5))),
                     (t0 + timedelta(minutes=int(rng.integers(0, 60)))).replace(tzinfo=None),
                     (t0 + timedelta(minutes=int(rng.integers(0, 600)))).astimezone(offset)][k % 4]
            item_id = "not-in-catalog" if m == 3 else ids[int(rng.integers(0, 6 if k % 2 else len(ids)))]
            shop.events.append(Event.model_construct(user_id=uid, item_id=item_id, event_type=kinds[m % 5],
                                                     timestamp=stamp))
        for m in range(int(rng.integers(0, 4))):
            shop.reviews.append(Review(user_id=uid, item_id=ids[m], rating=int(rng.integers(1, 6)),
                                       text=f"review {k} {m}" if m % 3 else "  ", timestamp=t0))
    return shop


@pytest.mark.parametrize("decay", [0.85, 0.5])
def test_histories_are_those_of_each_users_own_events(decay: float) -> None:
    shop = shop_with_odd_histories()
    config = ScorerConfig(recency_decay=decay, review_weight=0.7)
    items = sorted(shop.items, key=lambda it: it.item_id)[:150]  # events on the rest are left out
    index = {it.item_id: i for i, it in enumerate(items)}
    users = [u.user_id for u in shop.users] + ["odd3", "no-such-user"]
    got = build_histories(shop, index, config, users)
    assert got == histories_one_by_one(shop, index, config, users)
    batch = HistoryBatch.of([got[u] for u in users])
    assert batch.histories() == [got[u] for u in users]
    assert batch.rows(10, 40).histories() == [got[u] for u in users[10:40]]
    assert batch.empty.tolist() == [got[u].empty for u in users]


def profile_text_one(h: UserHistory, titles: Sequence[str], n: int) -> str:
    """A user's profile text from the user's own history."""
    recent = list(dict.fromkeys(titles[i] for i in reversed(h.items)))[:n]
    parts = [", ".join(recent)] if recent else []
    parts += [_snippet(t, 120) for t, _, _ in h.reviews[-2:]]
    return ". ".join(parts)


@pytest.mark.parametrize("n", [8, 1, 0])
def test_profile_texts_are_the_per_user_texts(n: int) -> None:
    shop = shop_with_odd_histories()
    scorer = Scorer(FakeEncoder(), "fake", config=ScorerConfig(profile_text_items=n))  # type: ignore[arg-type]
    items = sorted(shop.items, key=lambda it: it.item_id)
    index = {it.item_id: i for i, it in enumerate(items)}
    titles = [it.title for it in items]
    titles[1] = titles[4] = titles[0]  # items of one title count once
    hs = list(build_histories(shop, index, scorer.config, [u.user_id for u in shop.users]).values())
    rows = np.array([r for r, h in enumerate(hs) if not h.empty])
    want = [profile_text_one(hs[r], titles, n) for r in rows]
    assert scorer.profile_texts(HistoryBatch.of(hs), rows, titles) == want
    assert [scorer.profile_text(hs[r], titles) for r in rows] == want


def _topk_by_sorting(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = scores.numpy()
    order = np.stack([np.lexsort((np.arange(rows.shape[1]), -row))[:k] for row in rows])
    return order, np.take_along_axis(rows, order, 1)


@pytest.mark.parametrize("kind", ["random", "ties", "equal", "masked", "signed_zeros", "nan"])
def test_topk_is_a_sort_of_each_row(kind: str) -> None:
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((300, 1733)).astype(np.float32)
    if kind == "ties":
        scores = np.round(scores * 2) / 2
    if kind == "equal":
        scores[:] = 0.25
    if kind == "masked":
        scores[rng.random(scores.shape) < 0.97] = -np.inf
        scores[:5] = -np.inf
    if kind == "signed_zeros":
        scores = np.where(rng.random(scores.shape) < 0.5, np.float32(0.0), np.float32(-0.0)) * (scores > 1)
    if kind == "nan":
        scores[7, 100] = np.nan
    t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    for k in (50, 5, 1, 400):
        idx, val = topk_deterministic(t, k)
        want_idx, want_val = _topk_by_torch(t, k)
        assert np.array_equal(idx, want_idx) and np.array_equal(val, want_val, equal_nan=True)
        assert np.array_equal(np.signbit(val), np.signbit(want_val)) and val.dtype == want_val.dtype
        if kind != "nan":
            assert np.array_equal(idx, _topk_by_sorting(t, k)[0])


@pytest.mark.parametrize("kind", ["random", "duplicates", "near"])
def test_mmr_picks_from_the_catalogs_sims_are_those_of_each_lists_own_product(kind: str) -> None:
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((400, 48)).astype(np.float32)
    if kind == "duplicates":
        vecs[200:] = vecs[:200]
    if kind == "near":
        vecs = vecs * 0.02 + vecs[:1]
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    sims = catalog_sims(vecs)
    with threadpool_limits(limits=1, user_api="blas"):
        for size, k in ((50, 5), (12, 5), (3, 5)):
            idx = rng.integers(0, 400, (300, size))
            rel = -np.sort(-np.round(rng.standard_normal((300, size)), 1), axis=1)
            for lam in (0.7, 0.0, 1.0):
                want = _mmr_picks_exact(idx, _scaled(rel), vecs, min(k, size), lam)
                assert np.array_equal(_mmr_pick_array(idx, rel, vecs, k, lam, sims), want)


def rank_one_by_one(scorer: Scorer, shop: Shop, users: list[str], rules: RankRules) -> dict[str, list]:
    """Each user's ranked (item_id, score): the allowed items by score (then item_id), the pool of them, then
    :func:`mmr` of the pool; the scores those of a product of the users' vectors with the catalog's per chunk of
    users, as the scorer chunks them."""
    items = sorted(shop.items, key=lambda it: it.item_id)
    index = {it.item_id: i for i, it in enumerate(items)}
    vecs = scorer.embed_items(items)
    hist = build_histories(shop, index, scorer.config, users)
    texts = sorted({t for h in hist.values() for t, _, _ in h.reviews})
    review_vecs = dict(zip(texts, scorer.embed_cached(texts), strict=True))
    with threadpool_limits(limits=1, user_api="blas"):
        uvecs = scorer.user_vectors([hist[u] for u in users], vecs, [it.title for it in items], review_vecs)
    chunk = max(1, scorer.config.chunk_elements // len(items))
    scores = np.concatenate([(torch.from_numpy(uvecs[a:a + chunk]) @ torch.from_numpy(vecs).T).numpy()
                             for a in range(0, len(users), chunk)])
    pop = popularity(shop, index)
    pop_score = (np.log1p(pop) / max(math.log1p(pop.max()), 1.0)).astype(np.float32)
    allowed, bonus = _item_rules(items, rules)
    pool = max(rules.mmr_pool, 3 * rules.k) if rules.mmr_lambda is not None else rules.k
    out = {}
    for r, u in enumerate(users):
        row = (pop_score if hist[u].empty else scores[r]) + bonus.astype(np.float32)
        ok = allowed.copy()
        if rules.drop_purchased:
            ok[list(hist[u].purchased)] = False
        cands = sorted(((int(j), float(row[j])) for j in np.flatnonzero(ok)), key=lambda c: (-c[1], c[0]))[:pool]
        if rules.mmr_lambda is not None and len(cands) > rules.k:
            cands = mmr(cands, vecs, rules.k, rules.mmr_lambda)
        out[u] = [(items[j].item_id, s) for j, s in cands[:rules.k]]
    return out


@pytest.mark.parametrize("rules", [
    RankRules(k=5),
    RankRules(k=3, campaign_type="back_in_stock", only_item_ids=frozenset(f"SKU-{n:04d}" for n in range(1, 40, 3))),
    RankRules(k=4, only_item_ids=frozenset({"SKU-0002", "SKU-0005", "SKU-0007"})),
    RankRules(k=5, campaign_type="price_drop", drop_purchased=True),
    RankRules(k=5, mmr_lambda=None, drop_out_of_stock=False, boosts={"SKU-0003": 0.1, "SKU-0010": 0.2}),
])
def test_ranking_is_the_per_user_ranking(rules: RankRules) -> None:
    shop = shop_with_odd_histories()
    scorer = Scorer(FakeEncoder(), "fake", config=ScorerConfig(chunk_elements=40 * len(shop.items)))  # type: ignore[arg-type]
    users = [u.user_id for u in shop.users]
    got = scorer.rank(shop, users, rules, progress=False)
    want = rank_one_by_one(scorer, shop, users, rules)
    assert {u: [(r.item.item_id, r.score) for r in got[u]] for u in users} == want
    assert all(r.rank == n + 1 for u in users for n, r in enumerate(got[u]))


def test_the_shops_user_ids_follow_its_user_list() -> None:
    shop = load_shop(SHOP)
    assert user_ids_of(shop) == {u.user_id for u in shop.users}
    assert users_by_id(shop) == {u.user_id: u for u in shop.users}
    shop.users.append(User(user_id="late-comer"))
    assert "late-comer" in user_ids_of(shop) and users_by_id(shop)["late-comer"] is shop.users[-1]
    shop.users = [User(user_id=shop.users[0].user_id, locale="zh_CN"), *shop.users]  # a new list: a repeated id's last
    assert users_by_id(shop) == {u.user_id: u for u in shop.users} and user_ids_of(shop) == set(users_by_id(shop))
