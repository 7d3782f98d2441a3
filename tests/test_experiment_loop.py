"""The learning loop: outcomes and reviewers' decisions -> a refreshed click-through model and the next adapter
version (a real LoRA training run on a tiny random Llama; the click-through model on a hashing encoder)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from generator.db.store import Store
from generator.db.tables import Message
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job
from tests.test_ctr import HashingEncoder
from workers.senders import DryRunSender

NOON_UTC = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ctr_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from generator.core.config import get_settings

    monkeypatch.setenv("PUSHGEN_CTR_DIR", str(tmp_path / "ctr"))
    get_settings.cache_clear()
    return tmp_path / "ctr"


def _run_experiment(store: Store, users: list[str]) -> str:
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, holdout=0.1, salt="loop",
                               rules=ex.SendRules(quiet_start=0, quiet_end=0, frequency_cap=0))
    ex.assign(store, exp.id, users)
    ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC)
    events = []
    for s in ex.sends(store, exp.id):
        n = int(s.user_id[1:])
        if s.status == "sent" and ((s.arm == "B" and n % 2 == 0) or (s.arm == "A" and n % 7 == 0)):
            events.append({"event_id": f"click-{s.id}", "type": "clicked", "send_id": s.id})
    ex.record_events(store, events)
    return exp.id


def test_gather_outcomes_gives_one_past_push_per_sent_push_in_blocks(ctr_dir: Path) -> None:
    from generator.core.data import PastPush
    from generator.learning import gather_outcomes

    store = Store()
    exp_id = _run_experiment(store, [f"u{i}" for i in range(80)])
    rows = gather_outcomes(store, block=20)
    sent = [s for s in ex.sends(store, exp_id) if s.status == "sent"]
    assert len(rows) == len(sent) and {r["sends"] for r in rows} == {1}
    assert sum(r["clicks"] for r in rows) == ex.arm_counts(store, exp_id)["A"]["clicked"] + \
        ex.arm_counts(store, exp_id)["B"]["clicked"]
    assert 2 <= len({r["group_id"] for r in rows}) <= 6 and all(r["group_id"].startswith(exp_id) for r in rows)
    assert {r["adapter"] for r in rows} == {"brand-en-v1"}
    for r in rows:
        PastPush.model_validate(r)  # valid training rows


def test_loop_refreshes_ctr_trains_the_next_adapter_version_and_records_the_run(
        tiny_llama: Path, ctr_dir: Path, tmp_path: Path) -> None:
    from generator.check.ctr import CtrConfig, CtrModel
    from generator.learning import LoopConfig, loop_runs, run_loop
    from generator.review import Reviewer, reject
    from generator.tune.train import LoraTrainConfig
    from generator.write.adapters import get_adapter

    store = Store()
    users = [f"u{i}" for i in range(120)]
    exp_id = _run_experiment(store, users)
    ex.stop(store, exp_id, winner="B")
    with store.session() as s:  # a reviewer rejected one user's variant B copy: a preference pair
        rejected = s.scalar(select(Message.id).where(Message.user_id == "u3", Message.variant == 1))
    reject(store, rejected, Reviewer("alice", "reviewer"), "sounds pushy")
    lines: list[str] = []
    cfg = LoopConfig(out_dir=tmp_path / "loop", adapter_base="acme",
                     ctr_config=CtrConfig(holdout_fraction=0.0, c_grid=(0.1,), tfidf_c_grid=(1.0,), cv_folds=2),
                     adapter_config=LoraTrainConfig(base=str(tiny_llama), brand="Acme", rank=4, alpha=8,
                                                    batch_size=8, max_steps=2, eval_every=2, save_every=100),
                     encoder=HashingEncoder(), report=lines.append)
    run = run_loop(store, cfg)
    assert run.status == "done", run.error
    assert run.counts["ctr"].startswith("trained"), run.counts["ctr"]
    assert run.adapter == "acme-v1" and run.ctr_model == "default"
    winners_sent = [s for s in ex.sends(store, exp_id) if s.arm == "B" and s.status == "sent"]
    assert run.counts["winner_pushes"] == len(winners_sent) and run.counts["preference_pairs"] == 1
    assert run.counts["sends_by_adapter"] == {"brand-en-v1": run.counts["sends"]}
    info = get_adapter("acme-v1")
    assert info.base == str(tiny_llama) and Path(info.data_file).name == "adapter_train.jsonl"
    assert info.metrics["steps"] >= 1 and info.metrics["train_texts"] >= 1
    trained_on = (tmp_path / "loop" / "adapter_train.jsonl").read_text().splitlines()
    assert len(trained_on) == len(winners_sent) + 1  # the winning arm's copy + the reviewer's chosen copy
    model = CtrModel.load("default", encoder=HashingEncoder())
    assert model is not None and model.meta["data"]["texts"] >= 2
    # the next pass trains the next version, and every pass is recorded
    again = run_loop(store, LoopConfig(out_dir=tmp_path / "loop2", adapter_base="acme", train_ctr=False,
                                       adapter_config=cfg.adapter_config, report=lines.append))
    assert again.adapter == "acme-v2"
    assert [r.adapter for r in loop_runs(store)] == ["acme-v2", "acme-v1"]


def test_loop_without_winners_or_pairs_skips_training_with_a_reason(ctr_dir: Path, tmp_path: Path) -> None:
    from generator.learning import LoopConfig, run_loop

    store = Store()
    run = run_loop(store, LoopConfig(out_dir=tmp_path / "l", encoder=HashingEncoder(), report=lambda _: None))
    assert run.status == "done" and run.adapter is None and run.ctr_model is None
    assert run.counts["adapter"].startswith("skipped: no winning copy")
    assert run.counts["ctr"].startswith("skipped")
