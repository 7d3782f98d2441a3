"""What a guardrail changes: the copy a job would have sent without some checks, for blind grading beside the real.

    python scripts/ablate_checks.py --job JOB_ID --without claims sense title_hook --messages out/pd50/messages.csv \
        --out out/ablate/pd50-no-claims-sense.csv [--database-url sqlite:///...]

For every user of the job whose chosen copy would change if the named checks did not exist (a candidate that
failed only those checks, and would have won the choice), writes that candidate as a ``messages.csv`` row with
status ``passed``; users whose choice would not change are left out. ``scripts/grade_sheet.py export`` takes the
file as one more set, so graders judge the copy those checks stopped without knowing it. Prints how many
candidates each check failed alone, and how many choices it changed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.db.jobs import get_job  # noqa: E402
from generator.db.messages import list_messages  # noqa: E402
from generator.db.store import Store  # noqa: E402
from generator.report import MESSAGE_COLUMNS  # noqa: E402
from generator.review import recheck  # noqa: E402


def _failed(message: Any, job: Any, candidate: dict) -> list[str]:
    """Every check a candidate fails, as ``name: reason``: the runner stops at a candidate's first failing check, so
    the checks are run again here against the facts it was held to (``review.recheck``); a draft cut off at the
    length limit fails as incomplete, unchecked."""
    cut = [r for r in candidate.get("reasons", []) if r.startswith("complete:")]
    if cut:
        return cut
    return [f"{r.name}: {r.reason}" for r in recheck(message, job, candidate["title"], candidate["body"])
            if not r.passed]


def _names(reasons: list[str]) -> set[str]:
    return {r.split(":", 1)[0] for r in reasons}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", required=True)
    ap.add_argument("--without", nargs="+", required=True, help="check names to pretend away")
    ap.add_argument("--messages", type=Path, required=True, help="the job's messages.csv (locale, item ids)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args(argv)
    ignored = set(args.without)
    store = Store(args.database_url)
    job = get_job(store, args.job)
    if job is None:
        raise SystemExit(f"error: no job {args.job!r} in the store")
    rows = {(r["user_id"], r["variant"]): r for r in csv.DictReader(args.messages.open(encoding="utf-8"))}
    alone: Counter[str] = Counter()
    changed, out = 0, []
    for m in list_messages(store, args.job):
        cands = m.candidates or []
        reasons = [_failed(m, job, c) for c in cands]
        for fails in map(_names, reasons):
            if fails and fails <= ignored:
                alone.update(fails)
        # the first candidate that would pass, in generation order (greedy first), as the runner picks without a
        # click-through model
        ok = [(c, r) for c, r in zip(cands, reasons, strict=True)
              if _names(r) <= ignored and "complete" not in _names(r)]
        if not ok or m.variant != 0:
            continue
        best, best_reasons = ok[0]
        if (best["title"], best["body"]) == (m.title, m.body):
            continue
        changed += 1
        base = rows.get((m.user_id, str(m.variant)), {})
        out.append({**{k: base.get(k, "") for k in MESSAGE_COLUMNS}, "title": best["title"], "body": best["body"],
                    "status": "passed", "reasons": "; ".join(best_reasons)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(MESSAGE_COLUMNS))
        w.writeheader()
        w.writerows(out)
    print(f"candidates failing only {sorted(ignored)}: {dict(alone)}; choices changed: {changed}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
