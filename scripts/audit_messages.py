"""Audit a campaign's messages independently of the guardrails: every price, percentage and product name in the
passing copy must be one of the user's ranked items' (or the campaign's) facts.

    python scripts/audit_messages.py --messages out/demo/messages.csv [--shop examples/shop] [--campaign YAML]

Reads the ``messages.csv`` that ``pushgen demo`` / ``pushgen generate`` write. Prints the counts and every
violation; exits 1 when a passing message carries a wrong price, percentage or product name.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.campaign import load_campaign  # noqa: E402
from generator.data import load_shop  # noqa: E402

PRICE = re.compile(r"\$\s?(\d[\d,]*(?:\.\d{1,2})?)")
PCT = re.compile(r"(\d{1,3})\s?%")


def audit(messages: Path, shop_dir: Path, facts: dict | None = None) -> dict:
    """Counts and violations; ``facts`` are the campaign's (a coupon's percentage may appear in the copy)."""
    shop = load_shop(shop_dir)
    campaign_pcts = {int(v) for k, v in (facts or {}).items() if k.endswith("_pct")}
    items = shop.items_by_id
    titles = {i.title for i in shop.items}
    rows = list(csv.DictReader(messages.open(encoding="utf-8")))
    violations = []
    passing = [r for r in rows if r["status"] == "passed"]
    for r in passing:
        text = f"{r['title']}\n{r['body']}"
        ranked = [items[i] for i in r["item_ids"].split() if i in items]
        mine = [it for it in ranked if it.title in text] or ranked  # a price or % is the named item's own
        prices = {Decimal(str(p)).quantize(Decimal("0.01")) for it in mine for p in (it.price, it.sale_price) if p}
        pcts = {round(100 * (1 - it.sale_price / it.price)) for it in mine if it.sale_price and it.price}
        pcts |= campaign_pcts
        for p in PRICE.findall(text):
            if Decimal(p.replace(",", "")).quantize(Decimal("0.01")) not in prices:
                violations.append({"user_id": r["user_id"], "kind": "price", "value": p, "text": text})
        for p in PCT.findall(text):
            if int(p) not in pcts:
                violations.append({"user_id": r["user_id"], "kind": "percentage", "value": p, "text": text})
        named = {t for t in titles if t in text}
        wrong = named - {it.title for it in ranked}
        if wrong:
            violations.append({"user_id": r["user_id"], "kind": "product", "value": sorted(wrong), "text": text})
    return {"messages": len(rows), "passing": len(passing), "violations": violations}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=Path, required=True)
    ap.add_argument("--shop", type=Path, default=Path(__file__).resolve().parent.parent / "examples" / "shop")
    ap.add_argument("--campaign", type=Path, default=None, help="the campaign YAML (its facts)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    facts = load_campaign(args.campaign).facts if args.campaign else None
    report = audit(args.messages, args.shop, facts)
    for v in report["violations"]:
        print(f"{v['user_id']}: wrong {v['kind']} {v['value']}: {v['text']!r}")
    print(f"{report['passing']} passing of {report['messages']} messages; "
          f"{len(report['violations'])} with a wrong price, percentage or product name")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
