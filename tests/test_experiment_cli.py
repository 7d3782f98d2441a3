"""``pushgen experiment create/assign/send/ingest/report/stop`` and ``pushgen loop`` on the embedded default."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from generator.cli import app
from generator.db.store import Store
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job


def test_cli_runs_an_experiment_from_create_to_stop(tmp_path: Path) -> None:
    store = Store()
    users = [f"u{i}" for i in range(60)]
    job = seed_ab_job(store, users)
    runner = CliRunner()
    res = runner.invoke(app, ["experiment", "create", "--job", job, "--holdout", "0.2", "--quiet", "0-0",
                              "--salt", "cli"])
    assert res.exit_code == 0, res.output
    exp_id = res.output.strip().splitlines()[-1]
    assert ex.get_experiment(store, exp_id).salt == "cli"
    res = runner.invoke(app, ["experiment", "assign", exp_id])
    assert res.exit_code == 0 and "60 users assigned" in res.output
    res = runner.invoke(app, ["experiment", "send", exp_id, "--provider", "dry-run",
                              "--dry-run-out", str(tmp_path / "dry.jsonl")])
    assert res.exit_code == 0 and "sent:" in res.output, res.output
    sent = [s for s in ex.sends(store, exp_id) if s.status == "sent"]
    assert len((tmp_path / "dry.jsonl").read_text().splitlines()) == len(sent) > 0
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"event_id": f"e{s.id}", "type": "clicked", "user_id": s.user_id}) + "\n"
                              for s in sent if s.arm == "B"))
    res = runner.invoke(app, ["experiment", "ingest", exp_id, "--events", str(events)])
    assert res.exit_code == 0 and "'stored': " in res.output
    res = runner.invoke(app, ["experiment", "report", exp_id, "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0 and "SRM assigned" in res.output and (tmp_path / "rep" / "report.html").exists()
    res = runner.invoke(app, ["experiment", "stop", exp_id, "--winner", "B"])
    assert res.exit_code == 0 and ex.get_experiment(store, exp_id).winner == "B"
    res = runner.invoke(app, ["experiment", "list"])
    assert exp_id in res.output


def test_cli_send_refuses_an_unknown_provider(tmp_path: Path) -> None:
    from generator.core.errors import PushgenError

    store = Store()
    job = seed_ab_job(store, ["u1"])
    exp = ex.create_experiment(store, job, holdout=0)
    res = CliRunner().invoke(app, ["experiment", "send", exp.id, "--provider", "pigeon"])
    assert res.exit_code != 0 and isinstance(res.exception, PushgenError) and "pigeon" in str(res.exception)
