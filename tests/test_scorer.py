"""Scorer: business rules, explanations, determinism, the embedding cache and bad inputs (fake encoder)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import torch

from generator.core.data import Event, Item, Review, Shop, User
from generator.core.errors import ScorerError
from generator.rank.scorer import RankRules, Scorer, ScorerConfig, content_hash, mmr, topk_deterministic


class FakeEncoder:
    """Bag-of-words hashing encoder: texts sharing words are similar. Counts what it encodes."""

    dim = 64

    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
               show_progress_bar=False):
        self.calls.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[r, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n > 0, n, 1)


T0 = datetime(2024, 1, 1, tzinfo=UTC)


def item(iid: str, title: str, *, stock: bool = True, sale: str | None = None, category: str = "") -> Item:
    return Item(item_id=iid, title=title, category=category, price=Decimal("10.00"),
                sale_price=Decimal(sale) if sale else None, currency="EUR", in_stock=stock,
                url=f"https://shop.test/{iid}")


def ev(user: str, iid: str, kind: str = "view", minutes: int = 0) -> Event:
    return Event(user_id=user, item_id=iid, event_type=kind, timestamp=T0 + timedelta(minutes=minutes))


def make_shop() -> Shop:
    items = [
        item("a1", "camping tent trailblazer", category="outdoor"),
        item("a2", "camping tent lightweight", category="outdoor", stock=False),
        item("a3", "camping sleeping bag", category="outdoor", sale="7.50"),
        item("a4", "camping stove gas", category="outdoor"),
        item("b1", "coffee beans espresso", category="kitchen"),
        item("b2", "coffee grinder burr", category="kitchen", sale="8.00"),
        item("b3", "coffee mug ceramic", category="kitchen"),
    ]
    users = [User(user_id=u) for u in ("u_camp", "u_coffee", "u_new")]
    events = [ev("u_camp", "a1", "purchase", 1), ev("u_camp", "a4", "view", 2),
              ev("u_coffee", "b1", "purchase", 1), ev("u_coffee", "b3", "cart", 2),
              ev("u_coffee", "b1", "view", 3)]
    reviews = [Review(user_id="u_camp", item_id="a1", rating=5, text="great tent for camping trips",
                      timestamp=T0)]
    return Shop(items=items, users=users, events=events, reviews=reviews, pushes=[])


@pytest.fixture()
def scorer() -> Scorer:
    return Scorer(FakeEncoder(), "fake")  # type: ignore[arg-type]


def ids(ranked) -> list[str]:
    return [r.item.item_id for r in ranked]


def test_rank_prefers_items_like_the_history(scorer: Scorer) -> None:
    out = scorer.rank(make_shop(), rules=RankRules(k=3, mmr_lambda=None), progress=False)
    assert set(out) == {"u_camp", "u_coffee", "u_new"}
    assert all(i.startswith("a") for i in ids(out["u_camp"]))
    assert all(i.startswith("b") for i in ids(out["u_coffee"]))
    assert [r.rank for r in out["u_camp"]] == [1, 2, 3]
    scores = [r.score for r in out["u_camp"]]
    assert scores == sorted(scores, reverse=True)


def test_out_of_stock_items_are_dropped_unless_allowed(scorer: Scorer) -> None:
    shop = make_shop()
    out = scorer.rank(shop, ["u_camp"], RankRules(k=7, mmr_lambda=None), progress=False)
    assert "a2" not in ids(out["u_camp"]) and len(out["u_camp"]) == 6
    rules = RankRules(k=7, mmr_lambda=None, drop_out_of_stock=False)
    out = scorer.rank(shop, ["u_camp"], rules, progress=False)
    assert "a2" in ids(out["u_camp"])


def test_purchased_items_are_dropped_on_request(scorer: Scorer) -> None:
    shop = make_shop()
    kept = scorer.rank(shop, ["u_camp"], RankRules(k=3, mmr_lambda=None), progress=False)
    assert "a1" in ids(kept["u_camp"])
    out = scorer.rank(shop, ["u_camp", "u_coffee"], RankRules(k=3, mmr_lambda=None, drop_purchased=True),
                      progress=False)
    assert "a1" not in ids(out["u_camp"])
    assert "b1" not in ids(out["u_coffee"])
    assert "a4" in ids(out["u_camp"])  # only viewed, not purchased: still allowed


def test_price_drop_campaign_only_recommends_discounted_items(scorer: Scorer) -> None:
    out = scorer.rank(make_shop(), rules=RankRules(k=5, campaign_type="price_drop"), progress=False)
    for ranked in out.values():
        assert ranked and all(r.item.discount_pct for r in ranked)
        assert set(ids(ranked)) <= {"a3", "b2"}
        assert any("% off" in w for w in ranked[0].why)
    assert ids(out["u_camp"])[0] == "a3" and ids(out["u_coffee"])[0] == "b2"


def test_other_campaigns_restrict_and_boost_by_item_list(scorer: Scorer) -> None:
    shop = make_shop()
    rules = RankRules(k=3, campaign_type="back_in_stock", only_item_ids=frozenset({"a1", "a3", "b3"}))
    out = scorer.rank(shop, ["u_coffee"], rules, progress=False)
    assert set(ids(out["u_coffee"])) == {"a1", "a3", "b3"}
    boosted = scorer.rank(shop, ["u_coffee"], RankRules(k=1, mmr_lambda=None, campaign_type="new_arrivals",
                                                        boosts={"a4": 5.0}), progress=False)
    assert ids(boosted["u_coffee"]) == ["a4"]
    assert any("boosted" in w for w in boosted["u_coffee"][0].why)


def test_mmr_diversifies_the_top_k() -> None:
    vecs = np.array([[1, 0], [0.999, 0.045], [0, 1]], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cands = [(0, 0.90), (1, 0.89), (2, 0.70)]
    assert [c[0] for c in mmr(cands, vecs, 2, 1.0)] == [0, 1]  # pure relevance
    assert [c[0] for c in mmr(cands, vecs, 2, 0.5)] == [0, 2]  # the near-duplicate gives way
    assert mmr([], vecs, 3, 0.5) == []


def test_mmr_in_rank_spreads_over_categories(scorer: Scorer) -> None:
    shop = make_shop()
    plain = scorer.rank(shop, ["u_camp"], RankRules(k=2, mmr_lambda=None), progress=False)
    diverse = scorer.rank(shop, ["u_camp"], RankRules(k=2, mmr_lambda=0.1), progress=False)
    assert all(i.startswith("a") for i in ids(plain["u_camp"]))
    assert ids(diverse["u_camp"])[0] == ids(plain["u_camp"])[0]
    assert any(i.startswith("b") for i in ids(diverse["u_camp"]))


def test_ties_break_by_item_id_and_results_are_deterministic(scorer: Scorer) -> None:
    items = [item(i, "same title") for i in ("z9", "c3", "m5", "a0", "k2")]
    shop = Shop(items=items, users=[User(user_id="u")], events=[ev("u", "k2", "view")], reviews=[], pushes=[])
    first = scorer.rank(shop, rules=RankRules(k=5, mmr_lambda=None), progress=False)
    assert ids(first["u"]) == ["a0", "c3", "k2", "m5", "z9"]
    again = scorer.rank(Shop(items=list(reversed(items)), users=shop.users, events=shop.events, reviews=[],
                             pushes=[]), rules=RankRules(k=5, mmr_lambda=0.5), progress=False)
    assert ids(again["u"])[0] == "a0"
    third = scorer.rank(shop, rules=RankRules(k=5, mmr_lambda=0.5), progress=False)
    assert ids(third["u"]) == ids(again["u"])


def test_topk_deterministic_orders_ties_by_index() -> None:
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]])
    idx, val = topk_deterministic(scores, 3)
    assert idx.tolist() == [[1, 0, 2], [0, 1, 2]]
    assert val[0].tolist() == pytest.approx([0.9, 0.5, 0.5])


def test_user_without_history_gets_popular_items(scorer: Scorer) -> None:
    out = scorer.rank(make_shop(), ["u_new"], RankRules(k=2, mmr_lambda=None), progress=False)
    # b1: purchase + view (1.4), a1: purchase + review (2.0)
    assert ids(out["u_new"]) == ["a1", "b1"]
    assert out["u_new"][0].why and "popular" in out["u_new"][0].why[0]


def test_every_item_explains_itself_with_history_and_reviews(scorer: Scorer) -> None:
    out = scorer.rank(make_shop(), ["u_camp"], RankRules(k=3), progress=False)
    for r in out["u_camp"]:
        assert any(w.startswith(("bought '", "viewed '")) for w in r.why)
        assert any(w.startswith("review: 'great tent") for w in r.why)
        assert re.search(r"\(-?\d\.\d\d\)", r.why[0])


def test_chunked_ranking_matches_one_chunk(scorer: Scorer) -> None:
    shop = make_shop()
    whole = scorer.rank(shop, rules=RankRules(k=4), progress=False)
    tiny = Scorer(FakeEncoder(), "fake", config=ScorerConfig(chunk_elements=1))  # type: ignore[arg-type]
    chunked = tiny.rank(shop, rules=RankRules(k=4), progress=False)
    assert {u: ids(v) for u, v in whole.items()} == {u: ids(v) for u, v in chunked.items()}


def test_unchanged_items_are_never_re_encoded(tmp_path) -> None:
    from generator.db.embeddings import get_embeddings
    from generator.db.store import Store

    store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
    shop = make_shop()
    enc1 = FakeEncoder()
    Scorer(enc1, "fake", store=store).rank(shop, rules=RankRules(k=2), progress=False)  # type: ignore[arg-type]
    item_texts = {i.text() for i in shop.items}
    assert item_texts <= set(enc1.calls)
    cached = get_embeddings(store, "fake", [content_hash(t) for t in item_texts])
    assert len(cached) == len(item_texts)

    enc2 = FakeEncoder()  # a new process: only the store remembers
    changed = item("b3", "coffee mug enamel", category="kitchen")
    shop.items[-1] = changed
    Scorer(enc2, "fake", store=store).rank(shop, rules=RankRules(k=2), progress=False)  # type: ignore[arg-type]
    assert not (item_texts - {"coffee mug ceramic. kitchen"}) & set(enc2.calls)
    assert changed.text() in enc2.calls
    assert get_embeddings(store, "other-model", [content_hash(changed.text())]) == {}


def test_in_memory_cache_within_one_scorer(scorer: Scorer) -> None:
    shop = make_shop()
    scorer.rank(shop, rules=RankRules(k=2), progress=False)
    n = len(scorer.encoder.calls)  # type: ignore[attr-defined]
    scorer.embed_items(shop.items)
    assert len(scorer.encoder.calls) == n  # type: ignore[attr-defined]


@pytest.mark.parametrize("rules", [RankRules(k=0), RankRules(k=-1), RankRules(mmr_lambda=1.5)])
def test_bad_rules_are_rejected(scorer: Scorer, rules: RankRules) -> None:
    with pytest.raises(ScorerError):
        scorer.rank(make_shop(), rules=rules, progress=False)


def test_unknown_user_is_rejected(scorer: Scorer) -> None:
    with pytest.raises(ScorerError, match="nobody"):
        scorer.rank(make_shop(), ["u_camp", "nobody"], progress=False)


def test_empty_inputs_give_empty_results(scorer: Scorer) -> None:
    shop = make_shop()
    assert scorer.rank(shop, [], progress=False) == {}
    empty = Shop(items=[], users=shop.users, events=[], reviews=[], pushes=[])
    assert scorer.rank(empty, ["u_new"], progress=False) == {"u_new": []}
    all_gone = Shop(items=[item("x", "thing", stock=False)], users=shop.users, events=[], reviews=[],
                    pushes=[])
    assert scorer.rank(all_gone, ["u_new"], progress=False) == {"u_new": []}


def test_to_dict_is_json_ready(scorer: Scorer) -> None:
    r = scorer.rank(make_shop(), ["u_camp"], RankRules(k=1), progress=False)["u_camp"][0]
    d = r.to_dict()
    assert d["rank"] == 1 and d["item_id"] == r.item.item_id and isinstance(d["why"], list)
