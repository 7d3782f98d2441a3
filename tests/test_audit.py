"""The independent audit of campaign output (scripts/audit_messages.py) finds wrong prices, percentages and names."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ["user_id", "variant", "locale", "item_ids", "template", "title", "body", "deep_link", "status", "reasons",
          "ctr_score"]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    return path


def test_audit_flags_wrong_facts_in_passing_copy_only(tmp_path: Path) -> None:
    from generator.core.data import load_shop

    item = next(i for i in load_shop(ROOT / "examples" / "shop").items if i.sale_price and len(i.title) <= 45)
    other = next(i for i in load_shop(ROOT / "examples" / "shop").items
                 if i.item_id != item.item_id and len(i.title) <= 45)
    pct = item.discount_pct
    good = f"{item.title} dropped to ${item.sale_price} ({pct}% off)."
    rows = [
        {"user_id": "ok", "item_ids": item.item_id, "status": "passed", "title": "Deal", "body": good},
        {"user_id": "price", "item_ids": item.item_id, "status": "passed", "title": "Deal",
         "body": f"{item.title} dropped to $1.23."},
        {"user_id": "pct", "item_ids": item.item_id, "status": "passed", "title": "Deal",
         "body": f"{item.title} now {pct + 7}% off."},
        {"user_id": "name", "item_ids": item.item_id, "status": "passed", "title": "Deal",
         "body": f"{other.title} is here."},
        {"user_id": "dropped", "item_ids": item.item_id, "status": "flagged", "title": "Deal", "body": "$1.23"},
        # both are the user's ranked items, but the price in the copy is the unnamed one's
        {"user_id": "swap", "item_ids": f"{item.item_id} {other.item_id}", "status": "passed", "title": "Deal",
         "body": f"{item.title} now ${other.price}."},
    ]
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit_messages.py"), "--messages",
                          str(_write(tmp_path / "m.csv", rows)), "--json", str(tmp_path / "a.json")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    import json

    report = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert report["passing"] == 5
    assert sorted((v["user_id"], v["kind"]) for v in report["violations"]) == [
        ("name", "product"), ("pct", "percentage"), ("price", "price"), ("swap", "price")]
    clean = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit_messages.py"), "--messages",
                            str(_write(tmp_path / "ok.csv", rows[:1]))], capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout


def test_audit_flags_unbacked_claims_pasted_titles_and_rupee_prices(tmp_path: Path, long_titles_shop: Path) -> None:
    import json

    shop = long_titles_shop
    caliper, pen = "L06", "L17"  # Kelvix caliper $29.95 -> $17.97 (40% off); pen ₹990 -> ₹466 (53% off)
    rows = [
        {"user_id": "ok", "item_ids": caliper, "status": "passed", "title": "40% off",
         "body": "Kelvix Digital Caliper now $17.97. Tap to see it."},
        {"user_id": "rupees", "item_ids": pen, "status": "fallback", "title": "Price drop: 53% off",
         "body": "Solimo 3D Pen is now ₹466, down from ₹990. Tap to see it."},
        {"user_id": "truncated", "item_ids": pen, "status": "passed", "title": "52% off",
         "body": "Solimo 3D Pen is now ₹466."},
        {"user_id": "wrong rupees", "item_ids": pen, "status": "passed", "title": "Deal",
         "body": "Solimo 3D Pen is now ₹1,466."},
        {"user_id": "claim", "item_ids": caliper, "status": "passed", "title": "Hurry",
         "body": "The best caliper on the market, now $17.97."},
        {"user_id": "pasted", "item_ids": caliper, "status": "passed", "title": "Deal",
         "body": "Kelvix VTD425 Digital Caliper, 0-6 Inch Stainless Steel, IP54, Extra-Large LCD Screen, "
                 "Inch/Metric/Fraction Conversion"},
    ]
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit_messages.py"), "--messages",
                          str(_write(tmp_path / "m.csv", rows)), "--shop", str(shop), "--json",
                          str(tmp_path / "a.json")], capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stderr
    report = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert report["passing"] == 6
    assert sorted({(v["user_id"], v["kind"]) for v in report["violations"]}) == [
        ("claim", "claim"), ("pasted", "long name"), ("truncated", "percentage"), ("wrong rupees", "price")]
