"""The click-through model: within-group pairs, the significance filter, training, evaluation, save/load, CLI."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from generator.check.ctr import (
    CtrConfig,
    CtrModel,
    TextArm,
    evaluate_ctr,
    is_held_out,
    push_text,
    text_arms,
    train_ctr,
    two_proportion_pvalue,
    within_group_pairs,
)
from generator.core.config import get_settings
from generator.core.data import PastPush, write_table
from generator.core.errors import DataError

FIELDS = ["push_id", "group_id", "title", "body", "sends", "clicks", "sent_at"]


class HashingEncoder:
    """A tiny deterministic bag-of-words encoder (crc32 buckets), so the tests need no real model."""

    dim = 64

    def encode(self, sentences: list[str], **_: Any) -> np.ndarray:
        out = np.zeros((len(sentences), self.dim))
        for r, s in enumerate(sentences):
            for w in s.lower().split():
                out[r, zlib.crc32(w.encode()) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(autouse=True)
def ctr_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PUSHGEN_CTR_DIR", str(tmp_path / "ctr"))
    get_settings.cache_clear()
    yield tmp_path / "ctr"
    get_settings.cache_clear()


def push(push_id: str, group: str, body: str, sends: int, clicks: int, title: str = "") -> dict[str, Any]:
    return {"push_id": push_id, "group_id": group, "title": title, "body": body, "sends": sends, "clicks": clicks,
            "sent_at": "2026-01-01T00:00:00Z"}


NOUNS = ["shoes", "jackets", "lamps", "mugs", "tents", "bikes", "watches", "bags", "chairs", "plants"]


def obvious_pushes(groups: int = 60) -> list[dict[str, Any]]:
    """Each group: a 'flash sale' text (8% CTR) against a same-length plain text (3%), plus a weak third text.
    Whether the winner is longer alternates, so length carries no signal."""
    rows = []
    for g in range(groups):
        noun, other = NOUNS[g % len(NOUNS)], NOUNS[(g + 3) % len(NOUNS)]
        good = f"flash sale on {noun} today"
        plain = f"new {noun} in our store now" if g % 2 else f"see {noun}"
        rows += [push(f"g{g}-a", f"g{g}", good, 5000, 400), push(f"g{g}-b", f"g{g}", plain, 5000, 150),
                 push(f"g{g}-c", f"g{g}", f"{other} catalogue {g}", 5000, 140)]
    return rows


def test_push_text_joins_title_and_body() -> None:
    assert push_text("Hi", "Body") == "Hi\nBody"
    assert push_text(None, "Body") == "Body" and push_text("Hi", "") == "Hi"


def test_two_proportion_pvalue_matches_the_hand_computed_z_test() -> None:
    c1, n1, c2, n2 = 150, 3052, 122, 3033
    pooled = (c1 + c2) / (n1 + n2)
    z = (c1 / n1 - c2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert two_proportion_pvalue(c1, n1, c2, n2) == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert two_proportion_pvalue(c1, n1, c2, n2) == pytest.approx(0.0921, abs=5e-4)  # z = 1.684
    assert two_proportion_pvalue(0, 100, 0, 100) == 1.0


def test_pairs_pool_same_text_drop_ties_and_filter_by_significance() -> None:
    pushes = [PastPush.model_validate(push(*r)) for r in [
        ("1", "g", "A", 500, 50), ("2", "g", "A", 500, 50),  # same text, another image: pooled to 100/1000
        ("3", "g", "B", 1000, 50), ("4", "g", "C", 1000, 98), ("5", "g", "D", 2000, 100),  # D ties B (5%)
        ("6", "h", "A", 1000, 10)]]  # another group: never paired with group g
    arms = text_arms(pushes)
    assert [(a.text, a.sends, a.clicks) for a in arms if a.group_id == "g"] == [
        ("A", 1000, 100), ("B", 1000, 50), ("C", 1000, 98), ("D", 2000, 100)]
    pairs = {(arms[p.a].text, arms[p.b].text): p.p_value for p in within_group_pairs(arms)}
    assert set(pairs) == {("A", "B"), ("A", "C"), ("A", "D"), ("C", "B"), ("C", "D")}  # B-D tie dropped
    significant = {k for k, p in pairs.items() if p < 0.05}
    # by hand: A-B z = 4.25 (p 2e-5); A-C z = 0.15 (p 0.88); C-B z = 4.10; A-D z = 5.18; C-D z = 4.99
    assert significant == {("A", "B"), ("C", "B"), ("A", "D"), ("C", "D")}
    assert pairs[("A", "C")] == pytest.approx(0.881, abs=1e-3)


def test_group_split_is_deterministic_and_about_the_asked_share() -> None:
    ids = [f"test-{k}" for k in range(2000)]
    held = [is_held_out(g, 0.2) for g in ids]
    assert held == [is_held_out(g, 0.2) for g in ids]
    assert 0.17 < sum(held) / len(ids) < 0.23
    assert not any(is_held_out(g, 0.0) for g in ids)


def test_training_learns_an_obvious_signal_and_beats_the_baselines(tmp_path: Path) -> None:
    path = write_table(tmp_path / "pushes.csv", obvious_pushes(), FIELDS)
    model, ev = train_ctr(path, cfg=CtrConfig(holdout_fraction=0.3), encoder=HashingEncoder(), report=lambda _: None)
    assert ev is not None and ev.scope == "held-out" and ev.significant_pairs >= 20
    assert ev.accuracy["bert"] >= 0.95
    assert ev.accuracy["longer-text-wins"] < 0.8
    assert ev.accuracy["chance"] == 0.5
    s = model.score(["flash sale on hats today", "new hats in our store now"])
    assert s[0] > s[1]
    assert model.meta["data"]["sha256"] and model.meta["encoder"] == "minilm" and model.meta["created_at"]


def test_save_load_round_trip_gives_the_same_scores(tmp_path: Path, ctr_dir: Path) -> None:
    assert CtrModel.load() is None
    path = write_table(tmp_path / "pushes.csv", obvious_pushes(30), FIELDS)
    model, _ = train_ctr(path, "shop", CtrConfig(holdout_fraction=0.0), encoder=HashingEncoder(),
                         report=lambda _: None)
    assert (ctr_dir / "shop" / "meta.json").exists() and CtrModel.load() is None
    loaded = CtrModel.load("shop", encoder=HashingEncoder())
    assert loaded is not None
    texts = ["flash sale on mugs today", "see mugs", "Title\nflash sale"]
    assert loaded.score(texts) == pytest.approx(model.score(texts))
    assert loaded.tfidf is not None and np.allclose(loaded.tfidf.score(texts), model.tfidf.score(texts))
    assert loaded.meta["metrics"] is None and loaded.score([]) == []


def test_eval_uses_held_out_groups_of_the_training_file_and_every_group_of_another(tmp_path: Path) -> None:
    train_path = write_table(tmp_path / "train.csv", obvious_pushes(60), FIELDS)
    _, ev_train = train_ctr(train_path, cfg=CtrConfig(holdout_fraction=0.3), encoder=HashingEncoder(),
                            report=lambda _: None)
    ev = evaluate_ctr(train_path, encoder=HashingEncoder())
    assert ev.scope == "held-out" and ev_train is not None
    assert ev.significant_pairs == ev_train.significant_pairs
    assert ev.accuracy["bert"] == pytest.approx(ev_train.accuracy["bert"])
    other = [{**r, "push_id": "x" + r["push_id"], "group_id": "x" + r["group_id"]} for r in obvious_pushes(20)]
    ev_other = evaluate_ctr(write_table(tmp_path / "other.csv", other, FIELDS), encoder=HashingEncoder())
    assert ev_other.scope == "all" and ev_other.groups == 20 and ev_other.accuracy["bert"] >= 0.95


def test_bad_push_file_names_file_row_and_field(tmp_path: Path) -> None:
    rows = obvious_pushes(2)
    rows[1]["clicks"] = rows[1]["sends"] + 1
    path = write_table(tmp_path / "bad.csv", rows, FIELDS)
    with pytest.raises(DataError) as err:
        train_ctr(path, encoder=HashingEncoder(), report=lambda _: None)
    assert str(path) in str(err.value) and "row 2" in str(err.value) and "'clicks'" in str(err.value)


def test_too_few_pairs_is_a_clear_error(tmp_path: Path) -> None:
    from generator.check.ctr import CtrError

    path = write_table(tmp_path / "one.csv", [push("1", "g", "A", 100, 5)], FIELDS)
    with pytest.raises(CtrError, match="training pairs"):
        train_ctr(path, encoder=HashingEncoder(), report=lambda _: None)
    with pytest.raises(CtrError, match="no CTR model"):
        evaluate_ctr(path, encoder=HashingEncoder())


def test_cli_train_then_eval_writes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.cli.ctr import ctr_app
    from generator.core import model_registry

    monkeypatch.setattr(model_registry, "load_sentence_encoder", lambda *a, **k: HashingEncoder())
    path = write_table(tmp_path / "pushes.csv", obvious_pushes(40), FIELDS)
    runner = CliRunner()
    res = runner.invoke(ctr_app, ["train", "--pushes", str(path), "--holdout", "0.3"])
    assert res.exit_code == 0, res.output
    assert "BERT" in res.output and "significant pairs" in res.output
    res = runner.invoke(ctr_app, ["eval", "--pushes", str(path), "--json", str(tmp_path / "ev.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "ev.json").read_text())
    assert set(data["accuracy"]) == {"chance", "longer-text-wins", "tfidf-lr", "bert"}
    assert data["scope"] == "held-out" and data["significant_pairs"] > 0


def test_arm_ctr() -> None:
    assert TextArm("g", "t", 200, 10).ctr == 0.05 and TextArm("g", "t", 0, 0).ctr == 0.0
