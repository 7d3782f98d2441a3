"""Ranking metrics, the leave-last-out split and the baselines, against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generator.core.errors import DataError
from generator.rank.evaluate import (
    evaluate_ranker,
    leave_last_out,
    load_sequences,
    metrics_from_ranks,
    mrr,
    ndcg_at_k,
    recall_at_k,
    target_ranks,
)
from generator.rank.signals import PopularityRanker, TextRanker, TransitionKNN

RANKS = np.array([0, 1, 9, 10, 49, 100])


def test_recall_counts_targets_inside_the_cutoff() -> None:
    assert recall_at_k(RANKS, 10) == pytest.approx(3 / 6)
    assert recall_at_k(RANKS, 50) == pytest.approx(5 / 6)
    assert recall_at_k(RANKS, 1) == pytest.approx(1 / 6)


def test_ndcg_by_hand() -> None:
    expected10 = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(11)) / 6
    assert ndcg_at_k(RANKS, 10) == pytest.approx(expected10)
    assert ndcg_at_k(RANKS, 10) == pytest.approx(0.3200, abs=1e-4)
    expected50 = expected10 + (1 / math.log2(12) + 1 / math.log2(51)) / 6
    assert ndcg_at_k(RANKS, 50) == pytest.approx(expected50)
    assert ndcg_at_k(np.array([0]), 10) == 1.0


def test_mrr_by_hand() -> None:
    assert mrr(RANKS) == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 50 + 1 / 101) / 6)


def test_metrics_from_ranks_names_and_empty_input() -> None:
    m = metrics_from_ranks(RANKS)
    assert list(m) == ["recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr"]
    assert metrics_from_ranks(np.zeros(0, dtype=np.int64))["recall@10"] == 0.0


@pytest.mark.parametrize("bad", [lambda: recall_at_k(RANKS, 0), lambda: ndcg_at_k(np.array([-1]), 10)])
def test_metrics_reject_bad_arguments(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def test_target_ranks_full_ranking_with_ties_by_index() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.2], [0.5, 0.5, 0.5, 0.1], [0.5, 0.5, 0.5, 0.1]])
    assert target_ranks(scores, [2, 1, 0]).tolist() == [1, 1, 0]
    assert target_ranks(torch.tensor([[0.0, 1.0]]), [0]).tolist() == [1]


def test_leave_last_out_holds_out_the_last_item_and_drops_single_event_users() -> None:
    split = leave_last_out(["a", "b", "c"], [np.array([3, 1, 2]), np.array([5]), np.array([0, 4])])
    assert split.users == ["a", "c"]
    assert [h.tolist() for h in split.histories] == [[3, 1], [0]]
    assert split.targets.tolist() == [2, 4]


def test_popularity_baseline_counts_training_items_only() -> None:
    pop = PopularityRanker([np.array([0, 1, 1]), np.array([1, 2])], 4)
    s = pop.score([np.array([0]), np.array([2])])
    assert s.shape == (2, 4) and s[0].tolist() == [1, 3, 1, 0]


def test_transition_knn_by_hand() -> None:
    seqs = [np.array([0, 1, 2]), np.array([0, 1]), np.array([3, 2])]
    knn = TransitionKNN(seqs, 4, decay=0.5, window=2, alpha=0.0, backward=0.0)
    s = knn.score([np.array([0]), np.array([0, 1])]).numpy()
    assert s[0].tolist() == [0, 2, 0, 0]  # 0 -> 1 twice
    # last item 1 (weight 1): 1 -> 2 once; previous item 0 (weight 0.5): 0 -> 1 twice
    assert s[1].tolist() == pytest.approx([0, 1.0, 1.0, 0])
    back = TransitionKNN(seqs, 4, decay=0.5, window=1, alpha=0.0, backward=0.5).score([np.array([2])]).numpy()
    assert back[0].tolist() == pytest.approx([0, 0.5, 0, 0.5])  # 1 -> 2 and 3 -> 2, seen backwards


def test_text_baseline_prefers_recent_history() -> None:
    vecs = np.eye(3, dtype=np.float32)
    s = TextRanker(vecs, decay=0.5).score([np.array([0, 1])])
    assert int(s[0].argmax()) == 1 and float(s[0, 0]) < float(s[0, 1])


def test_evaluate_ranker_end_to_end_on_a_perfect_and_a_hopeless_model() -> None:
    split = leave_last_out(["a", "b"], [np.array([0, 1]), np.array([1, 2])])
    perfect = lambda hs: torch.nn.functional.one_hot(torch.tensor([1, 2]), 3).float()[: len(hs)]  # noqa: E731
    assert evaluate_ranker(perfect, split)["ndcg@10"] == 1.0
    hopeless = lambda hs: -torch.nn.functional.one_hot(torch.tensor([1, 2]), 3).float()[: len(hs)]  # noqa: E731
    m = evaluate_ranker(hopeless, split, ks=(1, 2))
    assert m["recall@1"] == 0.0 and m["recall@2"] == 0.0 and m["mrr"] == pytest.approx(1 / 3)


def _write(path, header, rows) -> None:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def test_load_sequences_orders_events_by_time_not_file_order(tmp_path) -> None:
    _write(tmp_path / "items.csv", "item_id,title,price,currency,in_stock,url",
           [f"{i},Item {i},1.00,USD,true,https://x/{i}" for i in ("b", "a", "c")])
    _write(tmp_path / "events.csv", "user_id,item_id,event_type,timestamp",
           ["u1,c,purchase,2024-01-03T00:00:00", "u1,a,purchase,2024-01-01T00:00:00",
            "u1,b,view,2024-01-02T00:00:00", "u2,a,purchase,2024-01-01T00:00:00"])
    data = load_sequences(tmp_path / "items.csv", tmp_path / "events.csv")
    assert data.item_ids == ["a", "b", "c"] and data.user_ids == ["u1", "u2"]
    assert data.seqs[0].tolist() == [0, 1, 2]
    assert len(data.fingerprint()) == 16


def test_load_sequences_rejects_unknown_items_and_bad_rows(tmp_path) -> None:
    ev_header = "user_id,item_id,event_type,timestamp"
    _write(tmp_path / "items.csv", "item_id,title,price,currency,in_stock,url", ["a,A,1.00,USD,true,https://x/a"])
    _write(tmp_path / "events.csv", ev_header, ["u1,zz,purchase,2024-01-01T00:00:00"])
    with pytest.raises(DataError, match="row 1.*item_id"):
        load_sequences(tmp_path / "items.csv", tmp_path / "events.csv")
    _write(tmp_path / "bad.csv", ev_header, ["u1,a,teleport,2024-01-01T00:00:00"])
    with pytest.raises(DataError, match="event_type"):
        load_sequences(tmp_path / "items.csv", tmp_path / "bad.csv")
    with pytest.raises(DataError, match="not found"):
        load_sequences(tmp_path / "items.csv", tmp_path / "missing.csv")
