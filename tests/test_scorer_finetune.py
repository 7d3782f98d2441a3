"""Contrastive bi-encoder fine-tuning and the cross-encoder re-ranker (tiny random BERT, tiny data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from generator.core.config import get_settings
from generator.rank.finetune import FinetuneConfig, mine_hard_negatives, transition_pairs
from generator.rank.rerank import CrossEncoderReranker, RerankConfig
from tests.test_scorer_train import write_data


def test_transition_pairs_hold_out_each_users_last_transition() -> None:
    hist = [np.array([1, 2, 3, 4]), np.array([1, 2, 5]), np.array([7, 7, 8]), np.array([9])]
    train, valid = transition_pairs(hist)
    assert valid == [(3, 4), (2, 5), (7, 8)]  # self-transitions (7 -> 7) are skipped
    assert train == [(1, 2), (2, 3)]  # (1, 2) twice, (2, 3) once: the earlier transitions only
    hist = [np.array([1, 2, 3, 4]), np.array([1, 2, 3, 6]), np.array([5, 2, 3, 9]), np.array([5, 2, 8])]
    train, _ = transition_pairs(hist)
    assert train == [(2, 3), (1, 2), (5, 2)]  # most frequent first, ties by item index


def test_hard_negatives_are_near_the_anchor_but_never_its_followers() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(60, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    pairs = [(0, 1), (2, 3), (4, 5)]
    followers = {0: {1, 7}, 2: {3}, 4: {5}}
    negs = mine_hard_negatives(pairs, vecs, followers, rank_from=1, rank_to=10)
    for (a, b), n in zip(pairs, negs, strict=True):
        assert n not in (a, b) and n not in followers[a]
        near = np.argsort(-(vecs @ vecs[a]))[:11]
        assert n in near


class _Scores:
    """A stand-in cross-encoder: scores pairs by the item text's number (higher number, higher score)."""

    def predict(self, pairs, batch_size=64, show_progress_bar=False):  # type: ignore[no-untyped-def]
        return np.array([float(doc.split()[-1]) for _, doc in pairs])


def test_rerank_reorders_only_the_top_k_and_keeps_them_on_top() -> None:
    texts = [f"item {n}" for n in range(10)]
    first = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0]])  # first stage prefers low ids
    rr = CrossEncoderReranker(_Scores(), RerankConfig(top_k=3), weight=10.0)
    out = rr.rerank(first, [np.array([5])], texts)
    order = torch.argsort(out[0], descending=True).tolist()
    assert order[:3] == [2, 1, 0]  # the cross-encoder's order within the K
    assert order[3:] == [3, 4, 5, 6, 7, 8, 9]  # the rest as before, below the K


@pytest.fixture()
def scorers(tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHGEN_SCORERS_DIR", str(tmp_path / "scorers"))
    get_settings.cache_clear()
    yield tmp_path / "scorers"
    get_settings.cache_clear()


def test_a_finetuned_encoder_and_reranker_are_saved_loaded_and_used(scorers, tmp_path, tiny_encoder) -> None:
    from generator.rank.collab import SeqConfig
    from generator.rank.evaluate import encode_catalog, load_sequences
    from generator.rank.scorer import Scorer
    from generator.rank.train import TrainOptions, train_scorer

    items, events = write_data(tmp_path / "data")
    opt = TrainOptions(encoder=str(tiny_encoder), max_epochs=2, progress=False,
                       seq=SeqConfig(dim=16, layers=1, heads=1, batch_size=16), finetune_encoder=True,
                       finetune=FinetuneConfig(batch_size=16, eval_steps=5, lr=1e-3), rerank_k=5,
                       rerank=RerankConfig(batch_size=16, eval_steps=5, max_users=40))
    folder, meta = train_scorer(items, events, options=opt)
    saved = json.loads((folder / "scorer.json").read_text())
    assert saved["encoder_finetuned"] and saved["encoder_finetune"]["train_pairs"] > 0
    assert saved["rerank"]["top_k"] == 5 and saved["rerank"]["train_pairs"] > 0
    assert (folder / "encoder").is_dir() and (folder / "reranker").is_dir()
    assert not list(scorers.glob(".*"))  # no staging folder left behind

    scorer = Scorer.load()
    assert scorer.encoder_key.startswith("finetuned:") and scorer.collab.reranker is not None
    data = load_sequences(items, events)
    zero = encode_catalog(data.item_texts, str(tiny_encoder), progress=False)
    tuned = scorer.embed_cached(data.item_texts)
    assert not np.allclose(zero, tuned, atol=1e-3)  # the fine-tune changed the encoder
    scores = scorer.collab.ranker_for(scorer, data)([data.seqs[0][:-1], data.seqs[1][:-1]])
    assert scores.shape == (2, data.n_items) and torch.isfinite(scores).all()
