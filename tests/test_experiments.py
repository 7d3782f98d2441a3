"""Experiments: stable assignment (golden vectors, across processes), fixed weights, drops that keep users in their
arm, frequency caps and quiet hours, sends that happen once, idempotent outcome events, Thompson allocation, the
sample-ratio alarm on an injected drop, the events API and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from generator import erasure
from generator.db.jobs import create_job
from generator.db.store import Store
from generator.db.tables import Message
from generator.db.tokens import create_token
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job
from workers.senders import DryRunSender
from workers.senders.base import Attempt

REPO = Path(__file__).resolve().parent.parent
GOLDEN_SALT = "golden-salt"
GOLDEN_WEIGHTS = [("A", 0.45), ("B", 0.45), ("holdout", 0.1)]
GOLDEN = {"u1": "A", "u2": "A", "u3": "A", "u4": "A", "u5": "A", "u6": "B", "u7": "B", "u8": "B", "u9": "B",
          "u10": "A", "u11": "A", "u12": "A", "alice": "holdout", "用户7": "B"}
NOON_UTC = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # 13:00 in London, 20:00 in Shanghai: no quiet hours


@pytest.fixture
def store() -> Store:
    return Store()


def test_golden_vectors_give_fixed_units_and_arms() -> None:
    assert ex.unit_interval(GOLDEN_SALT, "u1") == pytest.approx(0.02408844610092186, abs=0)
    assert ex.unit_interval(GOLDEN_SALT, "alice") == pytest.approx(0.9495344691659142, abs=0)
    assert {u: ex.arm_for(ex.unit_interval(GOLDEN_SALT, u), GOLDEN_WEIGHTS) for u in GOLDEN} == GOLDEN


def test_assignment_is_the_same_in_processes_with_other_hash_seeds() -> None:
    code = ("import json; from generator.experiments.ab import unit_interval, arm_for; "
            f"w={GOLDEN_WEIGHTS!r}; print(json.dumps({{u: arm_for(unit_interval({GOLDEN_SALT!r}, u), w) "
            f"for u in {list(GOLDEN)!r}}}))")
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == GOLDEN


def test_assignments_follow_the_weights_and_are_sticky(store: Store) -> None:
    job = seed_ab_job(store, ["u1"])
    exp = ex.create_experiment(store, job, holdout=0.2, salt="s1")
    users = [f"user{i}" for i in range(6000)]
    first = ex.assign(store, exp.id, users)
    shares = {arm: sum(a == arm for a in first.values()) / len(users) for arm in ("A", "B", "holdout")}
    assert shares["A"] == pytest.approx(0.4, abs=0.025) and shares["B"] == pytest.approx(0.4, abs=0.025)
    assert shares["holdout"] == pytest.approx(0.2, abs=0.02)
    assert ex.assign(store, exp.id, list(reversed(users[:100]))) == {u: first[u] for u in reversed(users[:100])}
    assert ex.get_experiment(store, exp.id).status == "running"
    assert len(ex.assignments(store, exp.id)) == 6000


def test_weights_can_change_before_the_start_but_not_after(store: Store) -> None:
    job = seed_ab_job(store, ["u1", "u2"])
    exp = ex.create_experiment(store, job, holdout=0.1, salt="s")
    ex.set_weights(store, exp.id, {"A": 1, "B": 3, "holdout": 1})
    assert [round(a.weight, 3) for a in ex.arms(store, exp.id)] == [0.2, 0.6, 0.2]
    ex.assign(store, exp.id, ["u1"])
    with pytest.raises(ex.ExperimentError, match="weights are fixed.*new experiment"):
        ex.set_weights(store, exp.id, {"A": 1, "B": 1, "holdout": 0})
    with pytest.raises(ex.ExperimentError, match="fixed weights"):
        ex.rebalance(store, exp.id)


def test_variants_default_to_the_approved_ones_and_weights_must_match_arms(store: Store) -> None:
    job = seed_ab_job(store, ["u1"], variants=3, approve=False)
    with store.session() as s:
        s.execute(update(Message).where(Message.job_id == job, Message.variant < 2).values(review_status="approved"))
    exp = ex.create_experiment(store, job, holdout=0)
    assert [(a.name, a.variant) for a in ex.arms(store, exp.id)] == [("A", 0), ("B", 1)]
    assert exp.control == "A"
    with pytest.raises(ex.ExperimentError, match="weights: 2 given for 3 arms"):
        ex.create_experiment(store, job, weights=[1, 1])


def test_send_goes_once_per_user_and_holdout_gets_nothing(store: Store) -> None:
    users = [f"u{i}" for i in range(1, 13)]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, salt=GOLDEN_SALT, weights=[0.45, 0.45, 0.1],
                               rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, users + ["alice"])
    sender = DryRunSender(platform="fcm")
    counts = ex.send(store, exp.id, sender, timezones={}, now=NOON_UTC)
    assert counts == {"sent": 12, "holdout": 1}
    assert ex.send(store, exp.id, sender, timezones={}, now=NOON_UTC) == {}  # a retried task sends nothing
    assert len(sender.sent) == 12
    rows = {s.user_id: s for s in ex.sends(store, exp.id)}
    assert rows["alice"].status == "holdout" and rows["u6"].arm == "B"
    assert rows["u6"].adapter == "brand-en-v1" and rows["u6"].idempotency_key == ex.idempotency_key(exp.id, "u6")
    by_token = {p["token"]: p for p in sender.sent}
    assert by_token["tok-u6"]["title"] == "Variant 1 for you" and by_token["tok-u1"]["title"] == "Variant 0 for you"
    assert by_token["tok-u6"]["data"]["arm"] == "B"


def test_rejected_copy_is_dropped_but_the_user_stays_in_the_arm(store: Store) -> None:
    users = [f"u{i}" for i in range(1, 13)]
    job = seed_ab_job(store, users)
    with store.session() as s:  # a reviewer rejected u6's variant 1 (arm B)
        s.execute(update(Message).where(Message.job_id == job, Message.user_id == "u6", Message.variant == 1)
                  .values(review_status="rejected"))
    exp = ex.create_experiment(store, job, salt=GOLDEN_SALT, weights=[0.45, 0.45, 0.1],
                               rules=ex.SendRules(quiet_start=0, quiet_end=0))
    before = ex.assign(store, exp.id, users)
    counts = ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC)
    assert counts["dropped"] == 1
    assert {a.user_id: a.arm for a in ex.assignments(store, exp.id)} == before  # nobody moved
    assert ex.arm_counts(store, exp.id)["B"]["assigned"] == 4


def test_quiet_hours_defer_in_the_users_time_zone_then_send(store: Store) -> None:
    job = seed_ab_job(store, ["ldn", "sha"])
    exp = ex.create_experiment(store, job, holdout=0, salt="q", rules=ex.SendRules(quiet_start=21, quiet_end=8))
    ex.assign(store, exp.id, ["ldn", "sha"])
    tz = {"ldn": "Europe/London", "sha": "Asia/Shanghai"}
    late_in_shanghai = datetime(2026, 1, 15, 14, 30, tzinfo=UTC)  # 14:30 London, 22:30 Shanghai
    sender = DryRunSender(platform="fcm")
    assert ex.send(store, exp.id, sender, timezones=tz, now=late_in_shanghai) == {"sent": 1, "deferred": 1}
    assert [p["token"] for p in sender.sent] == ["tok-ldn"]
    next_morning = datetime(2026, 1, 16, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert ex.send(store, exp.id, sender, timezones=tz, now=next_morning) == {"sent": 1}
    assert ex.SendRules(quiet_start=21, quiet_end=8).quiet(datetime(2026, 1, 15, 7, 0, tzinfo=UTC), "Europe/London")
    assert not ex.SendRules(quiet_start=21, quiet_end=8).quiet(late_in_shanghai, "Europe/London")


def test_frequency_cap_counts_pushes_of_other_experiments(store: Store) -> None:
    job = seed_ab_job(store, ["u1", "u2"])
    rules = ex.SendRules(frequency_cap=1, cap_window_hours=24, quiet_start=0, quiet_end=0)
    first = ex.create_experiment(store, job, holdout=0, salt="f1", rules=rules)
    ex.assign(store, first.id, ["u1"])
    assert ex.send(store, first.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC) == {"sent": 1}
    second = ex.create_experiment(store, job, holdout=0, salt="f2", rules=rules)
    ex.assign(store, second.id, ["u1", "u2"])
    assert ex.send(store, second.id, DryRunSender(platform="fcm"), timezones={},
                   now=NOON_UTC + timedelta(hours=1)) == {"capped": 1, "sent": 1}
    assert {s.user_id: s.status for s in ex.sends(store, second.id)} == {"u1": "capped", "u2": "sent"}


def test_outcome_events_are_idempotent_and_counted_per_arm(store: Store) -> None:
    users = [f"u{i}" for i in range(1, 13)]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, salt=GOLDEN_SALT, weights=[0.45, 0.45, 0.1],
                               rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, users + ["alice"])
    ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC)
    key = ex.idempotency_key(exp.id, "u6")
    events = [{"event_id": "e1", "type": "delivered", "send_key": key},
              {"event_id": "e2", "type": "opened", "experiment_id": exp.id, "user_id": "u6"},
              {"event_id": "e3", "type": "clicked", "send_key": key},
              {"event_id": "e3b", "type": "clicked", "send_key": key},  # a second click: one clicking send
              {"event_id": "e4", "type": "converted", "send_key": key, "revenue": 25.0},
              {"event_id": "e5", "type": "converted", "experiment_id": exp.id, "user_id": "alice", "revenue": 10}]
    assert ex.record_events(store, events) == {"stored": 6, "duplicate": 0}
    assert ex.record_events(store, events[:3]) == {"stored": 0, "duplicate": 3}
    counts = ex.arm_counts(store, exp.id)
    assert counts["B"]["clicked"] == 1 and counts["B"]["converted"] == 1 and counts["B"]["revenue"] == 25.0
    assert counts["holdout"]["converted"] == 1 and counts["holdout"]["revenue"] == 10.0
    with pytest.raises(ex.ExperimentError, match="no such send"):
        ex.record_events(store, [{"event_id": "x", "type": "opened", "send_key": "nope"}])
    with pytest.raises(ex.ExperimentError, match="revenue"):
        ex.record_events(store, [{"event_id": "y", "type": "opened", "send_key": key, "revenue": 1}])


def test_thompson_rebalance_moves_traffic_to_the_better_arm_in_a_new_phase(store: Store) -> None:
    users = [f"u{i}" for i in range(400)]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, holdout=0.1, salt="t", allocation="thompson",
                               rules=ex.SendRules(quiet_start=0, quiet_end=0, frequency_cap=0))
    ex.assign(store, exp.id, users[:200])
    ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC)
    events = [{"event_id": f"c-{s.user_id}", "type": "clicked", "send_id": s.id}
              for s in ex.sends(store, exp.id) if s.status == "sent" and (s.arm == "B" or s.user_id.endswith("7"))]
    ex.record_events(store, events)
    weights = ex.rebalance(store, exp.id)
    assert weights["B"] > 0.8 and weights["A"] == pytest.approx(0.9 * 0.05) and weights["holdout"] == pytest.approx(0.1)
    ex.assign(store, exp.id, users[200:])
    phases = {a.user_id: a.phase for a in ex.assignments(store, exp.id)}
    assert phases["u0"] == 0 and phases["u399"] == 1
    shares = ex.expected_shares(store, exp.id, ["A", "B", "holdout"])
    assert shares[1] > shares[0] and sum(shares) == pytest.approx(1.0)


class DroppingSender(DryRunSender):
    """Injects a fault: one arm's pushes fail one time in four (what a broken template or a provider outage
    for one arm's copy would do)."""

    def send_once(self, token: str, push: dict) -> Attempt:
        if push["data"]["arm"] == "B" and int(ex.unit_interval("drop", token) * 4) == 0:
            return Attempt("failed", 400, error="injected drop")
        return super().send_once(token, push)


def test_an_injected_drop_in_one_arm_fires_the_srm_alarm_at_sent_but_not_at_assigned(store: Store) -> None:
    from generator.experiments.stats import srm_stages

    users = [f"u{i}" for i in range(1600)]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, holdout=0, salt="srm",
                               rules=ex.SendRules(quiet_start=0, quiet_end=0, frequency_cap=0))
    ex.assign(store, exp.id, users)
    ex.send(store, exp.id, DroppingSender(platform="fcm", sleep=lambda _: None), timezones={}, now=NOON_UTC)
    counts = ex.arm_counts(store, exp.id)
    srm = srm_stages(counts, {"A": 0.5, "B": 0.5})
    assert not srm["assigned"]["alarm"] and srm["assigned"]["p_value"] > 0.01
    assert srm["sent"]["alarm"] and srm["sent"]["p_value"] < 0.001
    clean = srm_stages(counts | {"B": {**counts["B"], "sent": counts["B"]["assigned"]},
                                 "A": {**counts["A"], "sent": counts["A"]["assigned"]}}, {"A": 0.5, "B": 0.5})
    assert not clean["sent"]["alarm"]


def test_events_api_stores_once_checks_roles_and_names_bad_fields(store: Store) -> None:
    from fastapi.testclient import TestClient

    from workers.api import create_app

    users = ["u1", "u6"]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, holdout=0, salt=GOLDEN_SALT,
                               rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, users)
    ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC)
    tool, reviewer = create_token(store, "shop", "campaign_tool"), create_token(store, "bob", "reviewer")
    client = TestClient(create_app(store))
    body = {"events": [{"event_id": "ev-1", "type": "clicked", "experiment_id": exp.id, "user_id": "u6"},
                       {"event_id": "ev-2", "type": "converted", "experiment_id": exp.id, "user_id": "u6",
                        "revenue": 12.5, "occurred_at": "2026-06-01T13:00:00+00:00"}]}
    auth = {"Authorization": f"Bearer {tool}"}
    assert client.post("/v1/events", json=body, headers=auth).json() == {"stored": 2, "duplicate": 0}
    assert client.post("/v1/events", json=body, headers=auth).json() == {"stored": 0, "duplicate": 2}
    assert client.post("/v1/events", json=body, headers={"Authorization": f"Bearer {reviewer}"}).status_code == 403
    assert client.post("/v1/events", json=body).status_code == 401
    bad = client.post("/v1/events", json={"events": [{"event_id": "x", "type": "opened"}]}, headers=auth)
    assert bad.status_code == 422 and "name the send" in bad.text
    bad = client.post("/v1/events", json={"events": [{"event_id": "x", "type": "bought", "send_id": 1}]},
                      headers=auth)
    assert bad.status_code == 422 and "type" in bad.text
    unknown = client.post("/v1/events", json={"events": [{"event_id": "x", "type": "opened", "send_id": 999}]},
                          headers=auth)
    assert unknown.status_code == 422 and "no such send" in unknown.text
    assert ex.arm_counts(store, exp.id)["B"]["revenue"] == 12.5
    got = client.get(f"/v1/experiments/{exp.id}", headers=auth).json()
    assert {a["name"]: a["clicked"] for a in got["arms"]} == {"A": 0, "B": 1}


def test_report_writes_plots_and_html_and_picks_the_clear_winner(store: Store, tmp_path: Path) -> None:
    from generator.experiments.report import write_report

    users = [f"u{i}" for i in range(600)]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, holdout=0.1, salt="rep",
                               rules=ex.SendRules(quiet_start=0, quiet_end=0, frequency_cap=0))
    ex.assign(store, exp.id, users)
    ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC)
    sends = [s for s in ex.sends(store, exp.id) if s.status == "sent"]
    day = datetime.now(UTC)
    events = []
    for s in sends:  # B: every other user clicks; A: one in ten
        u = int(s.user_id[1:])
        events.append({"event_id": f"d-{s.id}", "type": "delivered", "send_id": s.id, "occurred_at": day})
        if (s.arm == "B" and u % 2 == 0) or (s.arm == "A" and u % 10 == 0):
            events.append({"event_id": f"c-{s.id}", "type": "clicked", "send_id": s.id, "occurred_at": day})
    ex.record_events(store, events)
    files = write_report(store, exp.id, tmp_path / "report")
    assert files["rates"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert files["sequential"].stat().st_size > 1000
    page = files["html"].read_text()
    assert "Decision: <b>B</b>" in page and "data:image/png;base64," in page
    summary = json.loads(files["summary"].read_text())
    assert summary["decision"]["winner"] == "B"
    assert all(not v["alarm"] for v in summary["srm"].values())
    assert summary["arms"][0]["adapters"] == ["brand-en-v1"]


def test_users_assigned_before_generation_wait_for_approved_copy(store: Store) -> None:
    job = create_job(store, kind="api", campaign_type="price_drop", template="auto", adapter=None, locale="en_US",
                     model="m", status="queued", total=4, params={"campaign": {"variants": 2}})
    exp = ex.create_experiment(store, job.id, holdout=0, salt=GOLDEN_SALT,
                               rules=ex.SendRules(quiet_start=0, quiet_end=0))
    assert [a.variant for a in ex.arms(store, exp.id)] == [0, 1]  # from the campaign: nothing generated yet
    arms = ex.assign(store, exp.id, ["u1", "u6"])
    sender = DryRunSender(platform="fcm")
    assert ex.send(store, exp.id, sender, timezones={}, now=NOON_UTC) == {"awaiting": 2}
    seeded = seed_ab_job(store, ["u1", "u6"], approve=False)  # the generator writes the copy ...
    with store.session() as s:
        s.execute(update(Message).where(Message.job_id == seeded).values(job_id=job.id))
        s.execute(update(Message).where(Message.job_id == job.id, Message.user_id == "u1")
                  .values(review_status="approved"))
    assert ex.send(store, exp.id, sender, timezones={}, now=NOON_UTC) == {"sent": 1, "awaiting": 1}
    with store.session() as s:  # ... and a reviewer rejects u6's: dropped, still in its arm
        s.execute(update(Message).where(Message.job_id == job.id, Message.user_id == "u6")
                  .values(review_status="rejected"))
    assert ex.send(store, exp.id, sender, timezones={}, now=NOON_UTC) == {"dropped": 1}
    assert {a.user_id: a.arm for a in ex.assignments(store, exp.id)} == arms == {"u1": "A", "u6": "B"}


def test_erasing_a_user_unlinks_their_assignment_and_send_but_keeps_the_counts(store: Store) -> None:
    users = ["u1", "u6"]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, holdout=0, salt=GOLDEN_SALT, rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, users)
    ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}, now=NOON_UTC)
    before = ex.arm_counts(store, exp.id)
    record = erasure.erase(store, "u6", requested_by="admin")
    assert record.counts["experiment_rows"] == 2 and record.counts["device_tokens"] == 1
    assert "u6" not in {a.user_id for a in ex.assignments(store, exp.id)} | {s.user_id for s in ex.sends(store, exp.id)}
    assert ex.arm_counts(store, exp.id) == before
    assert ex.assign(store, exp.id, ["u1"]) == {"u1": "A"}


@pytest.mark.postgres
def test_two_workers_sending_one_experiment_on_postgresql_send_each_push_once(pg_url: str) -> None:
    import threading

    store = Store(pg_url)
    users = [f"u{i}" for i in range(60)]
    job = seed_ab_job(store, users)
    exp = ex.create_experiment(store, job, holdout=0, salt="pg",
                               rules=ex.SendRules(quiet_start=0, quiet_end=0, frequency_cap=0))
    ex.assign(store, exp.id, users)
    senders = [DryRunSender(platform="fcm"), DryRunSender(platform="fcm")]
    results: list = []
    threads = [threading.Thread(target=lambda s=s: results.append(ex.send(store, exp.id, s, timezones={},
                                                                            now=NOON_UTC))) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    tokens = [p["token"] for s in senders for p in s.sent]
    assert sorted(tokens) == sorted(f"tok-{u}" for u in users)  # every push once, none twice
    assert sum(r["sent"] for r in results) == 60
    store.engine.dispose()
