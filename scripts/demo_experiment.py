"""An A/B push experiment end to end on the embedded default (SQLite, in process), against local stand-ins of
FCM (HTTP/1.1) and APNs (HTTP/2 over TLS) and the real HTTP API for outcome events:

    .venv/bin/python scripts/demo_experiment.py --out out/experiment-demo            # writes copy with SmolLM2
    .venv/bin/python scripts/demo_experiment.py --job JOB_ID --out out/experiment-demo   # a job you reviewed

1. **Copy**: a price-drop campaign with two variants per user, written by the generator for ``--shop-users``
   users of the sample shop and approved where it passes every guardrail (what a reviewer's "approve all that
   pass" does); or the approved variants of an existing job (``--job``).
2. **Audience**: ``--shoppers`` simulated shoppers, each receiving the copy of one of those users (in that
   user's time zone), half with an FCM token and half with an APNs token; 2% of the tokens are stale (the
   providers answer UNREGISTERED / 410) and 1% hit a provider that is briefly unavailable (503, retried).
3. **Experiment**: variants A and B plus a 10% holdout; assignment by hash; sends through the stand-ins with a
   token bucket and retries.
4. **Outcomes**, simulated over ``--days`` days and posted to ``POST /v1/events`` of the API served on loopback:
   delivered, opened, clicked (B is given a higher click rate than A: ``--ctr-a``, ``--ctr-b``), converted with
   revenue (the holdout converts at a lower base rate).
5. **Report** (``report.html``, ``rates.png``, ``sequential.png``, ``summary.json``) and the **winner**.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def generate_job(store: Any, shop_users: int) -> str:
    """Generate two variants per user with the real generator and approve the passing copy."""
    from generator.campaign.runner import CampaignRunner
    from generator.campaign.spec import Audience, Campaign
    from generator.core.config import get_settings
    from generator.core.data import load_shop
    from generator.review import Reviewer, approve_passing

    shop = load_shop(get_settings().shop_dir)
    campaign = Campaign(name="spring-price-drop", type="price_drop", variants=2, candidates=2,
                        audience=Audience(locales=["en_GB", "en_US"], limit=shop_users))
    job_id, _ = CampaignRunner(store=store).run(shop, campaign, job_kind="campaign")
    approved = approve_passing(store, job_id, Reviewer("demo-reviewer", "reviewer"))
    print(f"generated job {job_id}: {approved} messages approved")
    return job_id


def clone_audience(store: Any, job_id: str, shoppers: int, seed: int) -> dict[str, str]:
    """Simulated shoppers s00001...: each gets the messages of one of the job's users; returns time zones."""
    from sqlalchemy import select

    from generator.core.config import get_settings
    from generator.core.data import load_shop
    from generator.db.messages import save_messages
    from generator.db.tables import Message
    from generator.experiments.devices import register

    with store.session() as s:
        msgs = list(s.scalars(select(Message).where(Message.job_id == job_id)))
    users = sorted({m.user_id for m in msgs})
    zones = {u.user_id: u.timezone for u in load_shop(get_settings().shop_dir).users}
    fields = ("title", "body", "deep_link", "item_ids", "prompt", "template", "adapter", "status", "guardrails",
              "ranked_items", "ctr_score")
    rng = np.random.default_rng(seed)
    tz, records = {}, []
    for i in range(shoppers):
        src = users[i % len(users)]
        sid = f"s{i:05d}"
        tz[sid] = zones.get(src, "UTC")
        for m in (m for m in msgs if m.user_id == src):
            records.append({"user_id": sid, "variant": m.variant, **{f: getattr(m, f) for f in fields},
                            "candidates": [], "review_status": m.review_status})
        r = rng.random()
        prefix = "unregistered-" if r < 0.02 else "flaky-" if r < 0.03 else ""
        register(store, user_id=sid, platform="fcm" if i % 2 == 0 else "apns", token=f"{prefix}{sid}-{job_id[:8]}")
    save_messages(store, job_id, records)
    with store.session() as s:  # the clones carry their source's review decision
        from sqlalchemy import update

        for status in ("approved", "rejected"):
            ids = [r["user_id"] for r in records if r["review_status"] == status]
            for k in range(0, len(ids), 500):
                s.execute(update(Message).where(Message.job_id == job_id, Message.user_id.in_(ids[k:k + 500]))
                          .values(review_status=status))
    return tz


def simulate_outcomes(store: Any, experiment_id: str, *, days: int, ctr: dict[str, float], seed: int,
                      ) -> list[dict[str, Any]]:
    """Delivered / opened / clicked / converted events spread over ``days`` days after the start."""
    from generator.experiments import ab as ex

    exp = ex.get_experiment(store, experiment_id)
    start = exp.started_at if exp.started_at.tzinfo else exp.started_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    rng = np.random.default_rng(seed)
    events = []
    for s in ex.sends(store, experiment_id):
        day = timedelta(days=float(rng.uniform(0, days)))
        at = (start + day).isoformat()
        if s.status == "holdout":
            if rng.random() < 0.004:
                events.append({"event_id": f"cv-{s.id}", "type": "converted", "send_id": s.id,
                               "revenue": round(float(rng.lognormal(3.3, 0.5)), 2), "occurred_at": at})
            continue
        if s.status != "sent" or rng.random() > 0.97:
            continue
        events.append({"event_id": f"dl-{s.id}", "type": "delivered", "send_id": s.id, "occurred_at": at})
        if rng.random() < 0.25:
            events.append({"event_id": f"op-{s.id}", "type": "opened", "send_id": s.id, "occurred_at": at})
        if rng.random() < ctr.get(s.arm, 0.0):
            events.append({"event_id": f"ck-{s.id}", "type": "clicked", "send_id": s.id, "occurred_at": at})
            if rng.random() < 0.2:
                events.append({"event_id": f"cv-{s.id}", "type": "converted", "send_id": s.id,
                               "revenue": round(float(rng.lognormal(3.3, 0.5)), 2), "occurred_at": at})
    return events


def run_demo(store: Any, job_id: str, out: Path, *, shoppers: int = 4000, days: int = 14, ctr_a: float = 0.03,
             ctr_b: float = 0.07, seed: int = 7, log: Any = print) -> dict[str, Any]:
    """Steps 2-5 of the module doc on ``job_id``; returns the report's summary."""
    import httpx

    from generator.db.tokens import create_token
    from generator.experiments import ab as ex
    from generator.experiments.report import summary, write_report
    from workers.api import create_app
    from workers.senders import ApnsConfig, ApnsSender, FcmConfig, FcmSender, RetryPolicy
    from workers.senders.standins import ApnsStandIn, FcmStandIn, _UvicornStandIn

    tz = clone_audience(store, job_id, shoppers, seed)
    exp = ex.create_experiment(store, job_id, name="spring-price-drop A/B", holdout=0.1, salt=f"demo-{seed}",
                               rules=ex.SendRules(frequency_cap=1, quiet_start=0, quiet_end=0), seed=seed)
    arms = ex.assign(store, exp.id, sorted(tz))
    log(f"experiment {exp.id}: {len(arms)} shoppers assigned "
        + ", ".join(f"{a}: {sum(v == a for v in arms.values())}" for a in ("A", "B", "holdout")))
    retry = RetryPolicy(max_attempts=4, base=0.05, cap=0.5, seed=seed)
    with FcmStandIn() as fcm, ApnsStandIn() as apns:
        senders = [FcmSender(FcmConfig(fcm.project_id, fcm.access_token, base_url=fcm.url), rate_limit=2000,
                             burst=200, retry=retry),
                   ApnsSender(ApnsConfig(apns.team_id, apns.key_id, apns.private_key, apns.topic, base_url=apns.url,
                                         verify=apns.ssl_context), rate_limit=2000, burst=200, retry=retry)]
        counts = ex.send(store, exp.id, senders, timezones=tz)
        log(f"sent through the FCM (HTTP/{fcm.received[0]['http_version']}) and APNs "
            f"(HTTP/{apns.received[0]['http_version']}, TLS) stand-ins: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        again = ex.send(store, exp.id, senders, timezones=tz)
        log(f"send run again (a redelivered task): {dict(again) or 'nothing to send'}; provider requests: "
            f"FCM {len(fcm.received)}, APNs {len(apns.received)}")
        for s in senders:
            s.close()
    events = simulate_outcomes(store, exp.id, days=days, ctr={"A": ctr_a, "B": ctr_b}, seed=seed)
    token = create_token(store, "demo-app", "campaign_tool")
    with _UvicornStandIn(create_app(store)) as api, httpx.Client(base_url=api.url, timeout=60) as client:
        stored = dup = 0
        for k in range(0, len(events), 1000):
            r = client.post("/v1/events", json={"events": events[k:k + 1000]},
                            headers={"Authorization": f"Bearer {token}"})
            if r.status_code != 200:
                raise RuntimeError(f"POST /v1/events: {r.status_code} {r.text[:500]}")
            stored, dup = stored + r.json()["stored"], dup + r.json()["duplicate"]
        r = client.post("/v1/events", json={"events": events[:50]}, headers={"Authorization": f"Bearer {token}"})
        dup += r.json()["duplicate"]
    log(f"POST /v1/events: {stored} outcome events stored, {dup} re-posted duplicates ignored")
    start = ex.get_experiment(store, exp.id).started_at.replace(tzinfo=UTC)
    files = write_report(store, exp.id, out, now=start + timedelta(days=days), days=days)
    data = summary(store, exp.id)
    ex.stop(store, exp.id, data["decision"]["winner"])
    log(f"wrote {files['html']}")
    return {**data, "files": {k: str(v) for k, v in files.items()}, "experiment_id": exp.id}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/experiment-demo"))
    ap.add_argument("--job", default=None, help="Use this job's approved variants (default: generate a job).")
    ap.add_argument("--shop-users", type=int, default=12, help="Shop users to write copy for (no --job).")
    ap.add_argument("--shoppers", type=int, default=4000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--ctr-a", type=float, default=0.03)
    ap.add_argument("--ctr-b", type=float, default=0.07)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--database", default=None, help="SQLAlchemy URL (default: a new SQLite file under --out).")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.database is None and args.job is None:
        db = Path(tempfile.mkdtemp(prefix="db-", dir=args.out)) / "pushgen.db"
        os.environ["PUSHGEN_DATABASE_URL"] = f"sqlite:///{db.resolve()}"
    elif args.database:
        os.environ["PUSHGEN_DATABASE_URL"] = args.database
    from generator.cli.experiment import print_summary
    from generator.core.config import get_settings
    from generator.db.store import Store

    get_settings.cache_clear()
    store = Store()
    print(f"store {store.url}")
    job_id = args.job or generate_job(store, args.shop_users)
    data = run_demo(store, job_id, args.out, shoppers=args.shoppers, days=args.days, ctr_a=args.ctr_a,
                    ctr_b=args.ctr_b, seed=args.seed)
    print_summary(data)
    print(f"experiment {data['experiment_id']} stopped; winner: {data['decision']['winner'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
