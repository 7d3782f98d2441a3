"""Audit a campaign's messages independently of the guardrails: every price, percentage and product name in the
sendable copy (model-written and fallback) must be one of the user's ranked items' (or the campaign's) facts, no
superlative, urgency, scarcity or offer claim that the campaign's facts do not state, and no product named by a
pasted catalog title longer than a lock screen shows (a short name is what copy uses).

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
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.campaign.spec import load_campaign  # noqa: E402
from generator.core.data import load_shop  # noqa: E402

SYMBOL = r"(?:US\$|CN¥|[$€£¥￥₹]|Rs\.?)"
PRICE = re.compile(rf"{SYMBOL}\s?(\d[\d,.\u00a0\u202f]*\d|\d)|(\d[\d,.\u00a0\u202f]*\d|\d)\s?(?:元|€|₹|INR|USD|EUR)")
PCT = re.compile(r"(\d{1,3}(?:[.,]\d+)?)\s?[%％]")
# an independent, deliberately plain list (the guardrails keep their own): claims need a campaign fact
CLAIMS = {
    None: ["the best", "best ", "#1", "number one", "on the market", "in the world", "unbeatable", "top of the line",
           "lowest price", "cheapest", "最好", "第一", "最低价", "最便宜", "最佳", "budget", "性价比"],
    "ends_at": ["today only", "limited time", "ends tonight", "ends soon", "last chance", "hurry", "限时", "今天",
                "今日", "最后机会", "抢购"],
    "stock_left": ["left in stock", "only a few left", "while stocks last", "while supplies last", "selling fast",
                   "先到先得", "仅剩", "库存有限"],
    "free_shipping": ["free shipping", "ships free", "包邮", "免运费"],
    "gift": ["free gift", "gift with", "赠品", "买一送一"],
}
LONG_NAME = 45  # characters: a product name longer than this is a pasted catalog title


def _amount(text: str) -> set[Decimal]:
    """Readings of a written number: 1,399 / 1.399,00 / 1 399,50 / 13,99 / 19.99."""
    digits = re.sub(r"[\u00a0\u202f ]", "", text)
    out = set()
    for dec in ".,":
        head, sep, tail = digits.rpartition(dec)
        if sep and len(tail) in (1, 2):
            out.add(Decimal(re.sub(r"[.,]", "", head) + "." + tail))
    out.add(Decimal(re.sub(r"[.,]", "", digits)))
    return {x.quantize(Decimal("0.01")) for x in out}


def _discount(price: Decimal, sale: Decimal | None) -> int | None:
    if not sale or not price or sale >= price:
        return None
    return int(((price - sale) * 100 / price).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _claims(text: str, facts: dict) -> list[str]:
    low = text.lower()
    return [w.strip() for fact, words in CLAIMS.items() for w in words if w in low and not (fact and facts.get(fact))]


def audit(messages: Path, shop_dir: Path, facts: dict | None = None) -> dict:
    """Counts and violations; ``facts`` are the campaign's (a coupon's percentage may appear in the copy)."""
    shop = load_shop(shop_dir)
    campaign_pcts = {int(v) for k, v in (facts or {}).items() if k.endswith("_pct")}
    items = shop.items_by_id
    titles = {i.title for i in shop.items}
    rows = list(csv.DictReader(messages.open(encoding="utf-8")))
    violations = []
    passing = [r for r in rows if r["status"] in ("passed", "fallback")]

    def flag(r: dict, kind: str, value: object, text: str) -> None:
        violations.append({"user_id": r["user_id"], "kind": kind, "value": value, "text": text})

    for r in passing:
        text = f"{r['title']}\n{r['body']}"
        ranked = [items[i] for i in r["item_ids"].split() if i in items]
        mine = [it for it in ranked if it.title in text or it.display_name in text] or ranked
        prices = {Decimal(str(p)).quantize(Decimal("0.01")) for it in mine for p in (it.price, it.sale_price) if p}
        pcts = {it.stated_discount_pct or _discount(it.price, it.sale_price) for it in mine} | campaign_pcts
        for m in PRICE.finditer(text):
            if not _amount(m[1] or m[2]) & prices and (m[1] or m[2]) not in " ".join(it.title for it in mine):
                flag(r, "price", m[0], text)
        for p in PCT.findall(text):
            if Decimal(p.replace(",", ".")) not in {Decimal(x) for x in pcts if x} \
                    and f"{p}%" not in " ".join(it.title for it in mine):
                flag(r, "percentage", p, text)
        named = {t for t in titles if t in text}
        wrong = named - {it.title for it in ranked}
        if wrong:
            flag(r, "product", sorted(wrong), text)
        for claim in _claims(text, facts or {}):
            if claim not in " ".join(it.title.lower() for it in mine):
                flag(r, "claim", claim, text)
        pasted = [it.title for it in mine if it.title in text and len(it.title) > LONG_NAME]
        if pasted:
            flag(r, "long name", pasted[0], text)
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
    print(f"{report['passing']} sendable-status (passed or fallback) of {report['messages']} messages; "
          f"{len(report['violations'])} violations (wrong price, percentage or product, claim, long name)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
