"""The scorer's learned fusion: features, training, the keep-or-drop check, re-ranking, saving and loading."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from generator.rank.collab import SIGNALS
from generator.rank.ltr import train_ltr
from generator.rank.rerank import FEATURES, LtrConfig, LtrContext, LtrReranker, features
from generator.rank.scorer import Scorer
from generator.rank.signals import zscore
from generator.rank.train import train_scorer
from tests.test_scorer_train import FAST, env, write_data  # noqa: F401  (env is a fixture)

USERS, ITEMS = 600, 60


def synthetic(seed: int = 0):
    """Two informative signals, each only for half of the users (long vs short histories): a fixed-weight blend
    cannot know which one to trust for a user; a ranker that sees the history length can."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, ITEMS, USERS)
    hist_len = rng.choice([2.0, 9.0], USERS).astype(np.float32)
    sig = {k: torch.randn(USERS, ITEMS, generator=g) for k in SIGNALS}
    rows = torch.arange(USERS)
    long = torch.from_numpy(hist_len > 5)
    sig["text"][rows[long], torch.from_numpy(targets)[long]] += 3.5
    sig["seq"][rows[~long], torch.from_numpy(targets)[~long]] += 3.5
    blend = zscore(sig["text"]) + zscore(sig["seq"])
    ctx = LtrContext(np.zeros(ITEMS, np.float32), hist_len, np.zeros(USERS, np.float32))
    users = [f"u{n}" for n in range(USERS)]
    return sig, blend, targets, users, ctx


CFG = LtrConfig(candidates=20, min_child_samples=20, max_trees=200, early_stopping=20)


def test_features_have_one_column_per_name_in_candidate_order() -> None:
    sig, blend, _, _, ctx = synthetic()
    top = torch.topk(blend, 5, dim=1).indices
    x = features(sig, blend, top, ctx)
    assert x.shape == (USERS * 5, len(FEATURES))
    col = {name: n for n, name in enumerate(FEATURES)}
    assert np.allclose(x[:5, col["blend"]], blend[0, top[0]].numpy())
    assert np.allclose(x[:5, col["blend_logrank"]], np.log1p(np.arange(5)))
    # log-rank of a signal over the whole row: the row's best item has rank 0
    best = int(sig["seq"][0].argmax())
    if best in top[0].tolist():
        assert x[top[0].tolist().index(best), col["seq_logrank"]] == 0.0
    assert np.allclose(x[5:10, col["history_len"]], ctx.history_len[1])


def test_the_learned_fusion_beats_a_fixed_blend_when_trust_depends_on_the_user() -> None:
    sig, blend, targets, users, ctx = synthetic()
    ranker, report = train_ltr(sig, blend, targets, users, ctx, CFG)
    assert report["used"] is True and ranker is not None
    assert report["held_out_ltr"]["ndcg@10"] > report["held_out_linear"]["ndcg@10"] + 0.1
    assert report["feature_splits"]["history_len"] > 0
    # on fresh users from the same process it still wins
    sig2, blend2, targets2, _, ctx2 = synthetic(seed=1)
    out = ranker.rerank(blend2, sig2, ctx2)
    hit_ltr = (out.argmax(1).numpy() == targets2).mean()
    hit_lin = (blend2.argmax(1).numpy() == targets2).mean()
    assert hit_ltr > hit_lin + 0.1


def test_a_fusion_that_does_not_help_is_dropped() -> None:
    sig, _, targets, users, ctx = synthetic()
    # a blend that already puts every target first cannot be beaten
    perfect = torch.randn(USERS, ITEMS)
    perfect[torch.arange(USERS), torch.from_numpy(targets)] = 10.0
    ranker, report = train_ltr(sig, perfect, targets, users, ctx, CFG)
    assert ranker is None and report["used"] is False
    assert report["held_out_linear"]["ndcg@10"] == pytest.approx(1.0)


def test_rerank_keeps_the_candidates_on_top_and_the_rest_in_blend_order() -> None:
    sig, blend, targets, users, ctx = synthetic()
    ranker, _ = train_ltr(sig, blend, targets, users, ctx, CFG)
    out = ranker.rerank(blend, sig, ctx)
    top = set(torch.topk(blend[0], CFG.candidates).indices.tolist())
    assert set(torch.topk(out[0], CFG.candidates).indices.tolist()) == top
    rest = [i for i in range(ITEMS) if i not in top]
    assert torch.equal(torch.argsort(out[0, rest], descending=True), torch.argsort(blend[0, rest], descending=True))


def test_saved_reranker_predicts_the_same(tmp_path) -> None:
    sig, blend, targets, users, ctx = synthetic()
    ranker, _ = train_ltr(sig, blend, targets, users, ctx, CFG)
    ranker.save(tmp_path)
    again = LtrReranker.load(tmp_path, CFG)
    assert torch.allclose(again.rerank(blend, sig, ctx), ranker.rerank(blend, sig, ctx))


def test_a_trained_scorer_loads_and_applies_its_learned_fusion(env) -> None:  # noqa: F811
    items, events = write_data(env / "data")
    folder, meta = train_scorer(items, events, options=replace(FAST, fusion="linear"))
    assert "ltr" not in meta and Scorer.load().collab.ltr is None
    scorer = Scorer.load()
    n = len(scorer.collab.item_ids)
    # a re-ranker over this vocabulary (trained on synthetic signals of the right shape), saved as training would
    g = torch.Generator().manual_seed(0)
    sig = {k: torch.randn(200, n, generator=g) for k in SIGNALS}
    tg = np.random.default_rng(0).integers(0, n, 200)
    sig["trans"][torch.arange(200), torch.from_numpy(tg)] += 4.0
    blend = zscore(sig["text"]) + 0.2 * zscore(sig["trans"])
    ctx = LtrContext(np.zeros(n, np.float32), np.full(200, 3, np.float32), np.zeros(200, np.float32))
    cfg = LtrConfig(candidates=10, min_child_samples=5, max_trees=50, early_stopping=10)
    ranker, report = train_ltr(sig, blend, tg, [f"u{i}" for i in range(200)], ctx, cfg)
    assert ranker is not None
    ranker.save(folder)
    saved = json.loads((folder / "scorer.json").read_text())
    (folder / "scorer.json").write_text(json.dumps({**saved, "ltr": report}))
    loaded = Scorer.load()
    assert loaded.collab.ltr is not None
    data_hist = [np.array([0, 1, 2]), np.array([10, 11])]
    catalog = loaded.collab.item_ids
    vecs = loaded.embed_cached([f"text {i}" for i in catalog], progress=False)
    text = torch.from_numpy(vecs[[2, 11]]) @ torch.from_numpy(vecs).T
    with_ltr = loaded.collab.score(text, data_hist, catalog, vecs)
    loaded.collab.ltr = None
    without = loaded.collab.score(text, data_hist, catalog, vecs)
    assert with_ltr.shape == without.shape == (2, n)
    # the learned fusion re-orders within the blend's top 10 and leaves the rest alone
    for row in range(2):
        assert set(torch.topk(with_ltr[row], 10).indices.tolist()) == set(torch.topk(without[row], 10).indices.tolist())
    assert not torch.equal(torch.argsort(with_ltr, 1), torch.argsort(without, 1))


def test_unknown_fusion_is_a_clear_error(env) -> None:  # noqa: F811
    from generator.rank.evaluate import EvalError

    items, events = write_data(env / "data")
    with pytest.raises(EvalError, match="fusion must be"):
        train_scorer(items, events, options=replace(FAST, fusion="magic"))
