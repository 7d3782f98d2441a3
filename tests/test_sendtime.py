"""Send-time optimisation: recency-weighted profiles of opens and clicks, the best allowed hour, the fallback for
users with little history, the random-hour control arm, per-user scheduling inside experiments (quiet hours and
frequency caps kept), erasure, the report, and bad settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import update

from generator import erasure
from generator.core.errors import PushgenError
from generator.db import tables
from generator.db.store import Store
from generator.experiments import ab as ex
from generator.experiments import schedule
from generator.experiments import sendtime as st
from tests.experiment_fixtures import seed_ab_job
from workers.senders import DryRunSender

CFG = st.SendTimeConfig(window_start=8, window_end=22, min_events=2.0)
ALLOWED = st.allowed_hours(CFG, 22, 7)  # 8..21


def test_recent_opens_count_more_than_old_ones() -> None:
    prof = st.hour_profile([9, 9, 19], [0.0, 14.0, 28.0], [1.0, 1.0, 2.0], half_life_days=14.0)
    assert prof[9] == pytest.approx(1.5) and prof[19] == pytest.approx(0.5) and prof.sum() == pytest.approx(2.0)
    # an old habit (twenty 8 o'clock opens three months ago) loses to a new one (four 19 o'clock opens this week)
    old_new = st.hour_profile([8] * 20 + [19] * 4, [90.0] * 20 + [1.0, 2.0, 3.0, 4.0])
    assert st.best_hour(old_new, ALLOWED, CFG) == (19, "history")


def test_best_hour_is_an_allowed_hour_and_little_history_gets_the_fallback() -> None:
    late = st.hour_profile([23, 23, 23, 22], [1, 2, 3, 4])  # a night owl: the latest allowed hour wins
    assert st.best_hour(late, ALLOWED, CFG) == (21, "history")
    one_open = st.hour_profile([13], [0])
    population = st.hour_profile([12] * 30 + [18] * 50, [0] * 80)
    assert st.best_hour(one_open, ALLOWED, CFG, population) == (18, "fallback")  # the population's best hour
    fixed = st.SendTimeConfig(window_start=8, window_end=22, fallback_hour=10, min_events=2.0)
    assert st.best_hour(one_open, ALLOWED, fixed, population) == (10, "fallback")
    assert st.best_hour(np.zeros(24), ALLOWED, fixed) == (10, "fallback")
    assert st.window_hours(20, 2) == [20, 21, 22, 23, 0, 1] and st.window_hours(5, 5) == list(range(24))


def test_the_random_hour_arm_is_a_stable_share_independent_of_the_variant_arm() -> None:
    users = [f"U{i:05d}" for i in range(4000)]
    control = [u for u in users if st.unit_interval("salt:timing", u) < 0.2]
    assert 0.18 < len(control) / len(users) < 0.22
    arm = {u: ex.arm_for(st.unit_interval("salt", u), [("A", 0.5), ("B", 0.5)]) for u in users}
    share_a = sum(arm[u] == "A" for u in control) / len(control)
    assert 0.45 < share_a < 0.55
    hours = [st.random_hour("salt", u, ALLOWED) for u in control]
    assert set(hours) == set(ALLOWED) and hours == [st.random_hour("salt", u, ALLOWED) for u in control]


def _stamp(store: Store, experiment_id: str, at: datetime) -> None:
    """Date an experiment's sends at ``at`` (send() stamps the wall clock; the frequency cap reads it)."""
    with store.session() as s:
        s.execute(update(tables.Send).where(tables.Send.experiment_id == experiment_id).values(sent_at=at))


def _opens(store: Store, users: list[str], hour_utc: int, days: int, start: datetime) -> None:
    """A past experiment over a job of these users whose pushes they opened at ``hour_utc`` on ``days`` days."""
    job = seed_ab_job(store, users, variants=1, token_prefix="past-")
    past = ex.create_experiment(store, job, holdout=0, rules=ex.SendRules(frequency_cap=0, quiet_start=0,
                                                                          quiet_end=0))
    ex.assign(store, past.id, users)
    ex.send(store, past.id, DryRunSender(platform="fcm"), now=start)
    _stamp(store, past.id, start)
    ex.record_events(store, [{"event_id": f"{u}-{d}", "type": "opened", "experiment_id": past.id, "user_id": u,
                              "occurred_at": start + timedelta(days=d, hours=hour_utc - start.hour, minutes=10)}
                             for u in users for d in range(days)])


def test_sends_wait_for_each_users_hour_and_keep_quiet_hours_and_caps() -> None:
    store = Store()
    t0 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
    users = [f"U{i}" for i in range(1, 9)]
    _opens(store, users[:4], hour_utc=17, days=5, start=t0)  # U1-U4 open at 19:10 Berlin time (UTC+2)
    job = seed_ab_job(store, users, variants=1)
    exp = ex.create_experiment(store, job, holdout=0, rules=ex.SendRules(frequency_cap=1, quiet_start=22,
                                                                         quiet_end=7))
    ex.assign(store, exp.id, users)
    zones = {u: "Europe/Berlin" for u in users}
    now = datetime(2026, 5, 10, 5, 0, tzinfo=UTC)  # 07:00 in Berlin
    counts = schedule.plan(store, exp.id, st.SendTimeConfig(window_start=8, window_end=22, control_share=0.0,
                                                      fallback_hour=10), now=now, timezones=zones)
    assert counts == {"optimised/history": 4, "optimised/fallback": 4}
    with store.session() as s:
        rows = {r.user_id: r for r in s.query(tables.SendTime).filter_by(experiment_id=exp.id)}
    assert {u: rows[u].local_hour for u in users} == {**{u: 19 for u in users[:4]}, **{u: 10 for u in users[4:]}}
    assert rows["U1"].scheduled_for.astimezone(ZoneInfo("Europe/Berlin")).hour == 19
    dry = DryRunSender(platform="fcm")
    assert ex.send(store, exp.id, dry, now=now, timezones=zones) == {"scheduled": 8}
    at_ten = datetime(2026, 5, 10, 8, 5, tzinfo=UTC)  # 10:05 Berlin
    assert ex.send(store, exp.id, dry, now=at_ten, timezones=zones) == {"sent": 4, "scheduled": 4}
    _stamp(store, exp.id, at_ten)
    assert sorted(p["data"]["send_key"] for p in dry.sent) == sorted(ex.idempotency_key(exp.id, u) for u in users[4:])
    # U1 got another push an hour before its time: the frequency cap holds at 19:00
    other = seed_ab_job(store, ["U1"], variants=1, token_prefix="other-")
    exp2 = ex.create_experiment(store, other, holdout=0, rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp2.id, ["U1"])
    assert ex.send(store, exp2.id, dry, now=datetime(2026, 5, 10, 16, 0, tzinfo=UTC)) == {"sent": 1}
    _stamp(store, exp2.id, datetime(2026, 5, 10, 16, 0, tzinfo=UTC))
    at_seven = datetime(2026, 5, 10, 17, 2, tzinfo=UTC)  # 19:02 Berlin
    assert ex.send(store, exp.id, dry, now=at_seven, timezones=zones) == {"sent": 3, "capped": 1}


def test_a_missed_hour_moves_to_the_next_day() -> None:
    store = Store()
    job = seed_ab_job(store, ["U1"], variants=1)
    exp = ex.create_experiment(store, job, holdout=0, rules=ex.SendRules(quiet_start=22, quiet_end=7))
    ex.assign(store, exp.id, ["U1"])
    now = datetime(2026, 5, 10, 7, 0, tzinfo=UTC)
    schedule.plan(store, exp.id, st.SendTimeConfig(fallback_hour=12, control_share=0.0), now=now, timezones={})
    dry = DryRunSender(platform="fcm")
    late = datetime(2026, 5, 10, 15, 30, tzinfo=UTC)  # 3.5 h after noon: the send run was down
    assert ex.send(store, exp.id, dry, now=late, timezones={}) == {"scheduled": 1}
    with store.session() as s:
        assert s.get(tables.SendTime, (exp.id, "U1")).scheduled_for.replace(tzinfo=UTC) == datetime(2026, 5, 11, 12,
                                                                                               tzinfo=UTC)
    assert ex.send(store, exp.id, dry, now=datetime(2026, 5, 11, 12, 20, tzinfo=UTC), timezones={}) == {"sent": 1}


def test_the_report_compares_the_optimised_arm_with_the_random_hour_arm_and_erasure_covers_send_times() -> None:
    store = Store()
    users = [f"U{i:03d}" for i in range(200)]
    job = seed_ab_job(store, users, variants=1)
    exp = ex.create_experiment(store, job, holdout=0, rules=ex.SendRules(frequency_cap=0, quiet_start=0,
                                                                         quiet_end=0))
    ex.assign(store, exp.id, users)
    now = datetime(2026, 5, 10, 0, 0, tzinfo=UTC)
    counts = schedule.plan(store, exp.id, st.SendTimeConfig(control_share=0.3), now=now, timezones={})
    assert 40 < counts["random/random"] < 80 and counts["random/random"] + counts["optimised/fallback"] == 200
    assert schedule.plan(store, exp.id, now=now, timezones={}) == {}  # sticky: planning again adds nobody
    dry = DryRunSender(platform="fcm")
    for hour in range(24):  # the send run, every hour of the day: each user goes out at their own hour
        ex.send(store, exp.id, dry, now=now + timedelta(hours=hour, minutes=5), timezones={})
    assert len(dry.sent) == 200
    with store.session() as s:
        timing = {r.user_id: r.timing for r in s.query(tables.SendTime)}
    opened = [u for u in users if timing[u] == "optimised" or u.endswith("0")]
    ex.record_events(store, [{"event_id": f"o-{u}", "type": "opened", "experiment_id": exp.id, "user_id": u}
                             for u in opened])
    rep = st.report(store, exp.id)
    arms = rep["arms"]
    assert arms["optimised"]["planned"] + arms["random"]["planned"] == 200
    assert arms["optimised"]["opened"] == arms["optimised"]["sent"] == arms["optimised"]["planned"]
    open_rate = next(c for c in rep["comparisons"] if c["metric"] == "open_rate")
    assert open_rate["value"] == 1.0 and open_rate["diff"] > 0.5 and open_rate["p_value"] < 0.001
    from generator.experiments.report import summary

    assert summary(store, exp.id)["send_time"]["arms"] == arms
    erasure.erase(store, "U001", requested_by="test")
    with store.session() as s:
        assert s.get(tables.SendTime, (exp.id, "U001")) is None
        assert s.query(tables.SendTime).count() == 200
    assert st.report(store, exp.id)["arms"] == arms  # the counts survive, the person does not


@pytest.mark.parametrize(("kwargs", "field"), [({"window_start": 24}, "window_start"),
                                               ({"window_end": -1}, "window_end"),
                                               ({"fallback_hour": 30}, "fallback_hour"),
                                               ({"control_share": 1.0}, "control_share")])
def test_bad_settings_name_the_field(kwargs, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PushgenError, match=field):
        st.SendTimeConfig(**kwargs)


def test_a_window_inside_the_quiet_hours_is_refused() -> None:
    with pytest.raises(PushgenError, match="quiet"):
        st.allowed_hours(st.SendTimeConfig(window_start=22, window_end=23), 21, 8)


def test_the_schedule_command_plans_and_refuses_a_bad_window(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    store = Store()
    job = seed_ab_job(store, ["U1", "U2"], variants=1)
    exp = ex.create_experiment(store, job, holdout=0)
    ex.assign(store, exp.id, ["U1", "U2"])
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "generator", "experiment", "schedule", exp.id, *args],
                              capture_output=True, text=True, env=env, timeout=120)

    bad = cli("--window", "9-25")
    assert bad.returncode == 2 and "window_end" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("--window", "nine-five").returncode == 2
    with store.session() as s:
        assert s.query(tables.SendTime).count() == 0
    ok = cli("--window", "10-20", "--control", "0")
    assert ok.returncode == 0 and "optimised/fallback: 2" in ok.stdout
    with store.session() as s:
        assert {r.local_hour for r in s.query(tables.SendTime)} <= set(range(10, 20))


def test_the_simulation_runs_and_writes_its_numbers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "sim.json"
    r = subprocess.run([sys.executable, "scripts/sim_send_time.py", "--users", "300", "--days", "8", "--json",
                        str(out)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
                       timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert set(data["comparisons"]) == {"random", "fixed"} and len(data["daily_open_rate"]["optimised"]) == 8
    assert 0 < data["oracle_open_rate"] < 1 and "lift" in r.stdout
    assert all(0 <= x <= 1 for x in data["learned_within_1h"])
