"""Which guardrails a real model's candidates fail, and how often: what the checks' running order is set by.

Runs a campaign with the configured model (the packaged SmolLM2 by default) on a shop, and checks every candidate the
runner checks with every guardrail (the runner stops at a candidate's first failing check; this runs them all). Prints,
per check, the share of candidates that fail it and how many fail it first in ``DEFAULT_CHECKS``' order; writes JSON.

    python scripts/check_failures.py --users 40 --json docs/bench/check_failures_demo.json
    python scripts/make_amazon_shop.py ../shared/data/amazon_scientific --out out/amazon --users 300 --zh-share 0.2
    python scripts/check_failures.py --shop out/amazon --users 40 --json docs/bench/check_failures_amazon.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def tally(shop_dir: Path | None, users: int, candidates: int) -> dict[str, Any]:
    from generator.campaign.runner import CampaignRunner
    from generator.campaign.spec import Audience, Campaign
    from generator.check.guardrails import DEFAULT_CHECKS
    from generator.core.config import get_settings
    from generator.core.data import load_shop
    from generator.db.store import Store

    failing: list[list[str]] = []  # per candidate checked, the checks it fails in order ("complete": cut off)
    verify = CampaignRunner._verify

    def verify_and_tally(cand: Any, ctx: Any) -> None:
        fails = [] if cand.finished else ["complete"]
        for check in DEFAULT_CHECKS if cand.finished else ():
            r = check(cand.title, cand.body, ctx)
            if not all(x.passed for x in (r if isinstance(r, list) else [r])):
                fails.append(check.__name__.removeprefix("check_"))
        failing.append(fails)
        verify(cand, ctx)

    runner = CampaignRunner(store=Store("sqlite://"))
    runner._verify = verify_and_tally  # type: ignore[method-assign]
    runner.run(load_shop(shop_dir or get_settings().shop_dir),
               Campaign(name="check-failures", candidates=candidates, audience=Audience(limit=users)))
    n = len(failing)
    share = Counter(f for fs in failing for f in fs)
    return {"shop": str(shop_dir or "sample"), "users": users, "candidates_checked": n,
            "failing": sum(bool(fs) for fs in failing),
            "fail_share": {k: round(v / n, 3) for k, v in share.most_common()} if n else {},
            "first_failure": dict(Counter(fs[0] for fs in failing if fs).most_common())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shop", type=Path, help="shop folder (default: the sample shop)")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("out/check_failures.json"))
    args = ap.parse_args(argv)
    result = tally(args.shop, args.users, args.candidates)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['candidates_checked']} candidates checked, {result['failing']} failing "
                        f"({result['shop']}, {args.users} users)")
    for col in ("check", "share failing", "fails first"):
        table.add_column(col, justify="right")
    for name, share in result["fail_share"].items():
        table.add_row(name, f"{share:.1%}", str(result["first_failure"].get(name, 0)))
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
