"""The experiment end to end on the embedded default (scripts/demo_experiment.py): assign, send through the FCM
and APNs stand-ins, outcomes over the real HTTP API, report with plots, a winner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from generator.db.store import Store
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job

REPO = Path(__file__).resolve().parent.parent


def _demo():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("demo_experiment", REPO / "scripts" / "demo_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_runs_assign_send_ingest_report_and_picks_the_better_variant(tmp_path: Path) -> None:
    store = Store()
    job = seed_ab_job(store, ["U001", "U002", "U021", "U050"])
    lines: list[str] = []
    data = _demo().run_demo(store, job, tmp_path / "report", shoppers=400, days=5, ctr_a=0.02, ctr_b=0.35,
                            seed=3, log=lines.append)
    assert data["decision"]["winner"] == "B"
    assert ex.get_experiment(store, data["experiment_id"]).winner == "B"
    arms = {a["name"]: a for a in data["arms"]}
    assert sum(a["assigned"] for a in arms.values()) == 400 and arms["holdout"]["sent"] == 0
    assert arms["B"]["clicked"] > arms["A"]["clicked"]
    assert all(not v["alarm"] for v in data["srm"].values())
    text = "\n".join(lines)
    assert "FCM (HTTP/1.1)" in text and "APNs (HTTP/2, TLS)" in text  # both providers, each on its platform
    assert "nothing to send" in text and "re-posted duplicates ignored" in text
    statuses = {k for a in arms.values() for k in a["send_status"]}
    assert {"sent", "holdout"} <= statuses and statuses <= {"sent", "holdout", "dead_token"}
    assert Path(data["files"]["html"]).read_text().count("data:image/png;base64,") == 2
