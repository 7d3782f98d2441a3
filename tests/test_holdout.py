"""Global control groups: stable, salted per brand, monotone in the share, re-drawn only with a new salt; members
get no campaign push from any of the brand's experiments; the uplift report of sent vs control with intervals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from generator.campaign.spec import Campaign
from generator.core.config import DEFAULT_BRAND
from generator.core.data import unit_interval
from generator.core.errors import PushgenError
from generator.db.store import Store
from generator.db.tables import Job
from generator.experiments import ab as ex
from generator.experiments import holdout
from tests.experiment_fixtures import seed_ab_job
from workers.senders import DryRunSender

BRAND = DEFAULT_BRAND
USERS = [f"U{i:05d}" for i in range(3000)]


def _members(c: holdout.Control) -> set[str]:
    return {u for u in USERS if u in c}


def test_membership_is_a_stable_share_monotone_in_the_share_and_redrawn_only_by_a_new_salt() -> None:
    store = Store()
    five = holdout.set_control(store, "Acme", 0.05, salt="acme-test")  # a fixed draw: the bounds below hold for it
    m5 = _members(five)
    assert 0.04 < len(m5) / len(USERS) < 0.06 and m5 == _members(holdout.get_control(store, "Acme"))
    assert m5 == {u for u in USERS if unit_interval(f"global:{five.salt}", u) < 0.05}  # no hash(): any process
    ten = holdout.set_control(store, "Acme", 0.10)
    assert ten.salt == five.salt and _members(ten) >= m5 and 0.09 < len(_members(ten)) / len(USERS) < 0.11
    three = holdout.set_control(store, "Acme", 0.03)
    assert _members(three) <= m5
    fresh = holdout.set_control(store, "Acme", 0.05, new_salt=True)
    assert fresh.salt != five.salt and len(_members(fresh) & m5) < 0.2 * len(m5)  # new people
    other = holdout.set_control(store, "Globex", 0.05)
    assert len(_members(other) & m5) < 0.2 * len(m5)  # salted per brand
    [acme] = [c for c in holdout.controls(store) if c.brand == "Acme"]
    assert [h["share"] for h in acme.history] == [0.05, 0.10, 0.03, 0.05]
    assert "new salt" in acme.history[-1]["reason"] and "monotone" in acme.history[1]["reason"]
    assert Campaign().brand == BRAND  # the brand a job without one is sent under


@pytest.mark.parametrize(("brand", "share", "field"), [("Acme", 0.7, "share"), ("Acme", -0.1, "share"),
                                                       ("", 0.1, "brand"), ("x" * 201, 0.1, "brand")])
def test_bad_settings_name_the_field_and_store_nothing(brand, share, field) -> None:  # type: ignore[no-untyped-def]
    store = Store()
    with pytest.raises(PushgenError, match=field):
        holdout.set_control(store, brand, share)
    assert holdout.controls(store) == []


def test_the_cli_refuses_a_bad_share_in_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run([sys.executable, "-m", "generator", "control", "set", "--brand", "Acme", "--share", "2"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "share" in r.stderr and "Traceback" not in r.stderr
    assert holdout.controls(Store()) == []


def _experiment(store: Store, users: list[str], *, brand: str = BRAND, holdout_share: float = 0.0) -> str:
    job = seed_ab_job(store, users, variants=2)
    with store.session() as s:
        row = s.get(Job, job)
        row.params = {"campaign": {**row.params["campaign"], "brand": brand}}
    exp = ex.create_experiment(store, job, holdout=holdout_share,
                               rules=ex.SendRules(frequency_cap=0, quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, users)
    return exp.id


def test_members_get_no_push_from_any_of_the_brands_experiments() -> None:
    store = Store()
    users = USERS[:400]
    control = holdout.set_control(store, BRAND, 0.25)
    members = {u for u in users if u in control}
    dry = DryRunSender(platform="fcm")
    first = _experiment(store, users, holdout_share=0.1)
    counts = ex.send(store, first, dry)
    sends = {s.user_id: s for s in ex.sends(store, first)}
    pushed = {p["data"]["send_key"] for p in dry.sent}
    for u in users:
        key = ex.idempotency_key(first, u)
        if sends[u].arm == ex.HOLDOUT:
            assert sends[u].status == "holdout" and key not in pushed
        elif u in members:
            assert sends[u].status == holdout.STATUS and key not in pushed
        else:
            assert sends[u].status == "sent" and key in pushed
    assert counts[holdout.STATUS] == sum(sends[u].arm != ex.HOLDOUT for u in members)
    assert ex.send(store, first, dry) == {}  # final: never sent later
    other_brand = _experiment(store, users, brand="Other Shop")
    assert ex.send(store, other_brand, dry) == {"sent": len(users)}  # another brand's control is not this one


def _simulate_outcomes(store: Store, experiment_id: str, *, base: float, push_lift: float,
                       draw: str | None = None) -> None:
    """Conversions: ``base`` for everyone plus ``push_lift`` for users who got the push; opens and clicks only
    after a push; revenue 40 per conversion. Deterministic by hash of ``draw`` (default: the experiment id)."""
    rows = []
    draw = draw or experiment_id
    for s in ex.sends(store, experiment_id):
        r = unit_interval("outcome", f"{draw}:{s.user_id}")
        got = s.status == "sent"
        if got and r < 0.3:
            rows.append({"event_id": f"o-{s.id}", "type": "opened", "send_id": s.id})
        if got and r < 0.1:
            rows.append({"event_id": f"c-{s.id}", "type": "clicked", "send_id": s.id})
        if unit_interval("convert", f"{draw}:{s.user_id}") < base + (push_lift if got else 0.0):
            rows.append({"event_id": f"v-{s.id}", "type": "converted", "send_id": s.id, "revenue": 40.0})
    ex.record_events(store, rows)


def test_the_uplift_report_compares_sent_with_the_global_control_with_intervals() -> None:
    store = Store()
    holdout.set_control(store, BRAND, 0.3, salt="uplift-test")  # fixed draws: the intervals below hold for them
    exp = _experiment(store, USERS)
    ex.send(store, exp, DryRunSender(platform="fcm"))
    _simulate_outcomes(store, exp, base=0.05, push_lift=0.05, draw="uplift-test")
    rep = holdout.experiment_uplift(store, exp)
    assert rep["users"]["sent"] + rep["users"]["global_control"] == len(USERS) and rep["users"]["mixed"] == 0
    m = {r["metric"]: r for r in rep["metrics"]}
    assert m["open_rate"]["global_control"] == 0.0 and 0.25 < m["open_rate"]["sent"] < 0.35
    conv = m["conversion"]
    assert conv["diff_ci"][0] < 0.05 < conv["diff_ci"][1] and conv["diff_ci"][0] > 0 and conv["p_value"] < 0.001
    assert 0.3 < conv["relative_lift"] < 3.0  # true: +100% (10% vs 5%), about 900 control users
    rev = m["revenue_per_user"]
    assert rev["diff"] == pytest.approx(40 * conv["diff"]) and rev["diff_ci"][0] > 0
    from generator.experiments.report import summary

    assert summary(store, exp)["global_control"]["users"] == rep["users"]


def test_the_html_report_has_the_global_control_section(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from generator.experiments.report import write_report

    store = Store()
    holdout.set_control(store, BRAND, 0.3)
    exp = _experiment(store, USERS[:300])
    ex.send(store, exp, DryRunSender(platform="fcm"))
    _simulate_outcomes(store, exp, base=0.05, push_lift=0.05)
    page = write_report(store, exp, tmp_path / "report")["html"].read_text()
    assert "<h2>Global control</h2>" in page and "revenue_per_user" in page.split("Global control")[1]


def test_the_brand_report_pools_experiments_and_leaves_out_users_whose_membership_changed() -> None:
    store = Store()
    users = USERS[:1500]
    holdout.set_control(store, BRAND, 0.1)
    first = _experiment(store, users)
    ex.send(store, first, DryRunSender(platform="fcm"))
    holdout.set_control(store, BRAND, 0.2)  # same salt: only adds members
    second = _experiment(store, users)
    ex.send(store, second, DryRunSender(platform="fcm"))
    for e in (first, second):
        _simulate_outcomes(store, e, base=0.04, push_lift=0.03)
    rep = holdout.brand_uplift(store, BRAND)
    joined = {u for u in users if unit_interval(f"global:{holdout.get_control(store, BRAND).salt}", u) < 0.2} \
        - {u for u in users if unit_interval(f"global:{holdout.get_control(store, BRAND).salt}", u) < 0.1}
    assert rep["experiments"] == 2 and rep["users"]["mixed"] == len(joined)
    assert rep["users"]["global_control"] + rep["users"]["sent"] + rep["users"]["mixed"] == len(users)
    conv = {r["metric"]: r for r in rep["metrics"]}["conversion"]
    assert conv["diff"] > 0 and conv["diff_ci"][0] < conv["diff"] < conv["diff_ci"][1]
    assert holdout.brand_uplift(store, "Nobody")["experiments"] == 0
