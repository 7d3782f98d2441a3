"""A global control group end to end, with a known truth: a brand holds back a share of its users from every
campaign push; several weekly A/B campaigns go out (dry-run sender) to everyone else; simulated shoppers open,
click and buy (a baseline conversion rate for everyone, a known extra for users who got the push); the uplift
report compares sent users with the global control on opens, clicks, conversions and revenue, with intervals.

    python scripts/demo_global_control.py --users 4000 --campaigns 3 --share 0.1 \
        --json docs/bench/global_control_demo.json

No model runs: each campaign's approved copy is written straight into the store (two variants per user).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from sqlalchemy import update

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from generator.core.config import DEFAULT_BRAND  # noqa: E402
from generator.db.jobs import create_job  # noqa: E402
from generator.db.messages import save_messages  # noqa: E402
from generator.db.store import Store  # noqa: E402
from generator.db.tables import Message  # noqa: E402
from generator.experiments import ab as ex  # noqa: E402
from generator.experiments import holdout  # noqa: E402
from generator.experiments.devices import register  # noqa: E402
from workers.senders import DryRunSender  # noqa: E402

BRAND = DEFAULT_BRAND


def campaign_job(store: Store, users: list[str], week: int) -> str:
    """A done, approved A/B job of the brand's weekly campaign."""
    job = create_job(store, kind="api", campaign_type="price_drop", template="price_drop.en", adapter=None,
                     locale="en_US", model="demo", status="done", total=2 * len(users),
                     params={"campaign": {"name": f"week-{week}", "type": "price_drop", "variants": 2,
                                          "brand": BRAND}})
    save_messages(store, job.id, [{"user_id": u, "variant": v, "title": f"Week {week}: your pick is on sale",
                            "body": f"Variant {v}: now 20% off.", "deep_link": f"https://shop/p/{u}",
                            "item_ids": ["I1"], "prompt": "", "template": "price_drop.en", "status": "passed",
                            "guardrails": [], "candidates": [], "ranked_items": [{"item_id": "I1"}]}
                           for u in users for v in range(2)])
    with store.session() as s:
        s.execute(update(Message).where(Message.job_id == job.id).values(review_status="approved"))
    return job.id


def outcomes(store: Store, experiment_id: str, rng: np.random.Generator, truth: dict[str, float]) -> int:
    """Simulated shoppers: opens and clicks only after a push; conversions at the baseline for everyone plus the
    push's extra for those who got one; revenue per order lognormal around ``order_value``."""
    rows = []
    for s in ex.sends(store, experiment_id):
        got = s.status == "sent"
        if got and rng.random() < truth["open"]:
            rows.append({"event_id": f"o-{s.id}", "type": "opened", "send_id": s.id})
            if rng.random() < truth["click_given_open"]:
                rows.append({"event_id": f"c-{s.id}", "type": "clicked", "send_id": s.id})
        if rng.random() < truth["baseline_conversion"] + (truth["push_extra_conversion"] if got else 0.0):
            value = float(rng.lognormal(np.log(truth["order_value"]) - 0.18, 0.6))
            rows.append({"event_id": f"v-{s.id}", "type": "converted", "send_id": s.id, "revenue": round(value, 2)})
    ex.record_events(store, rows)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--campaigns", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.1, help="The brand's global control share.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default=None, help="Database URL (default: a throw-away SQLite file).")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    truth = {"open": 0.22, "click_given_open": 0.3, "baseline_conversion": 0.03, "push_extra_conversion": 0.012,
             "order_value": 45.0}
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or f"sqlite:///{tmp}/demo.db")
        control = holdout.set_control(store, BRAND, args.share, salt=f"demo-{args.seed}")
        users = [f"U{i:06d}" for i in range(args.users)]
        for u in users:
            register(store, user_id=u, platform="fcm", token=f"tok-{u}")
        for week in range(1, args.campaigns + 1):
            exp = ex.create_experiment(store, campaign_job(store, users, week), holdout=0,
                                       rules=ex.SendRules(frequency_cap=0, quiet_start=0, quiet_end=0))
            ex.assign(store, exp.id, users)
            counts = ex.send(store, exp.id, DryRunSender(platform="fcm"))
            events = outcomes(store, exp.id, rng, truth)
            print(f"week {week}: sends {dict(sorted(counts.items()))}, {events} outcome events")
        report = holdout.brand_uplift(store, BRAND)
    from generator.cli.features import print_uplift

    print_uplift(report, f"{BRAND}: {report['experiments']} campaigns, global control share {control.share:g} "
                         f"(truth: +{truth['push_extra_conversion']:.1%} conversion per campaign for pushed users)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {**vars(args), "json": str(args.json)}, "truth": truth,
                                         "report": report}, indent=1, default=str))


if __name__ == "__main__":
    main()
