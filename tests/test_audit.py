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
    from generator.data import load_shop

    item = next(i for i in load_shop(ROOT / "examples" / "shop").items if i.sale_price)
    other = next(i for i in load_shop(ROOT / "examples" / "shop").items if i.item_id != item.item_id)
    pct = round(100 * (1 - item.sale_price / item.price))
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
