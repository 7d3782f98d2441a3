"""Training, saving and loading a scorer, and the `scorer train|eval` commands (tiny data, fake encoder)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from generator.core.config import get_settings
from generator.core.data import Event, Shop, User
from generator.rank.collab import SeqConfig
from generator.rank.scorer import RankRules, Scorer
from generator.rank.train import TrainOptions, train_scorer
from tests.test_scorer import FakeEncoder, item

WORDS = ["drill", "glove", "tape"]


def write_data(folder, n_users: int = 60, seed: int = 0):
    """30 items in 3 word clusters; users walk forward through one cluster (i -> i+1)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    items = [f"i{n:02d}" for n in range(30)]
    lines = ["item_id,title,price,currency,in_stock,url"]
    lines += [f"{iid},{WORDS[n // 10]} model {n},1.00,USD,true,https://x/{iid}"
              for n, iid in enumerate(items)]
    (folder / "items.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ev = ["user_id,item_id,event_type,timestamp"]
    for u in range(n_users):
        c = int(rng.integers(3))
        start = int(rng.integers(0, 5))
        for step in range(int(rng.integers(4, 7))):
            ts = (t0 + timedelta(days=step)).isoformat()
            ev.append(f"u{u},{items[c * 10 + start + step]},purchase,{ts}")
    (folder / "events.csv").write_text("\n".join(ev) + "\n", encoding="utf-8")
    return folder / "items.csv", folder / "events.csv"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHGEN_SCORERS_DIR", str(tmp_path / "scorers"))
    monkeypatch.setattr("generator.core.model_registry.load_sentence_encoder",
                        lambda name=None, device=None: FakeEncoder())
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


FAST = TrainOptions(max_epochs=3, progress=False, seq=SeqConfig(dim=16, layers=1, heads=1, batch_size=16))


def test_train_saves_metadata_and_load_picks_up_default(env) -> None:
    items, events = write_data(env / "data")
    folder, meta = train_scorer(items, events, options=FAST)
    assert folder == env / "scorers" / "default"
    saved = json.loads((folder / "scorer.json").read_text())
    for key in ("base_model", "encoder", "data", "hyperparameters", "blend", "valid_metrics", "created_at"):
        assert key in saved
    assert saved["data"]["fingerprint"] == meta["data"]["fingerprint"]
    assert 1 <= saved["seq_training"]["best_epoch"] <= 3
    scorer = Scorer.load()
    assert scorer.collab is not None and scorer.meta["kind"] == "trained"


def test_trained_scorer_ranks_a_shop_with_unknown_items_and_rules(env) -> None:
    items, events = write_data(env / "data")
    train_scorer(items, events, options=FAST)
    scorer = Scorer.load()
    shop_items = [item(f"i{n:02d}", f"{WORDS[n // 10]} model {n}") for n in range(30)]
    shop_items.append(item("new1", "glove model new"))
    shop_items[12] = item("i12", "glove model 12", stock=False)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    evs = [Event(user_id="a", item_id="i10", event_type="purchase", timestamp=t0),
           Event(user_id="a", item_id="i11", event_type="view", timestamp=t0 + timedelta(days=1))]
    shop = Shop(items=shop_items, users=[User(user_id="a"), User(user_id="b")], events=evs, reviews=[],
                pushes=[])
    out = scorer.rank(shop, rules=RankRules(k=5, drop_purchased=True), progress=False)
    got = [r.item.item_id for r in out["a"]]
    assert len(got) == 5 and "i12" not in got and "i10" not in got
    assert all(r.why for r in out["a"]) and len(out["b"]) == 5
    again = scorer.rank(shop, rules=RankRules(k=5, drop_purchased=True), progress=False)
    assert [r.item.item_id for r in again["a"]] == got


def test_cli_eval_prints_baselines_and_trained_model(env) -> None:
    from generator.cli.scorer import scorer_app

    items, events = write_data(env / "data")
    runner = CliRunner()
    res = runner.invoke(scorer_app, ["train", "--items", str(items), "--events", str(events),
                                     "--max-epochs", "2", "--no-cache"])
    assert res.exit_code == 0, res.output
    out = env / "report.json"
    res = runner.invoke(scorer_app, ["eval", "--items", str(items), "--events", str(events),
                                     "--json", str(out), "--no-cache"])
    assert res.exit_code == 0, res.output
    for name in ("popularity", "zero-shot minilm", "transition kNN", "trained: default", "recall@10"):
        assert name in res.output
    report = json.loads(out.read_text())
    assert set(report["results"]["popularity"]) == {"recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr"}
    assert report["data"]["users"] == 60


def test_cli_reports_bad_inputs_cleanly(env) -> None:
    from generator.cli.scorer import scorer_app

    items, events = write_data(env / "data")
    runner = CliRunner()
    res = runner.invoke(scorer_app, ["eval", "--items", str(items), "--events", str(env / "nope.csv")])
    assert res.exit_code == 1 and "not found" in res.output
    res = runner.invoke(scorer_app, ["eval", "--items", str(items), "--events", str(events),
                                     "--model", "ghost", "--no-cache"])
    assert res.exit_code == 1 and "ghost" in res.output
    one = env / "one.csv"
    one.write_text("user_id,item_id,event_type,timestamp\nu1,i01,purchase,2024-01-01T00:00:00\n")
    res = runner.invoke(scorer_app, ["train", "--items", str(items), "--events", str(one), "--no-cache"])
    assert res.exit_code == 1 and "too little data" in res.output
