"""Blind grading of push copy with ../shared/quality/RUBRIC.md: export a shuffled sheet, score the graded sheet.

    python scripts/grade_sheet.py export --set demo=out/demo50/messages.csv@examples/shop \
        --set pd=out/pd50/messages.csv@out/amazon@out/camp/pd50.yaml --out grading/ [--seed 0] [--parts 2]
    python scripts/grade_sheet.py score --graded grading/graded*.csv --key grading/key.json [--json out.json]

``export`` writes ``sheet.csv`` (or ``sheet-1.csv`` … with ``--parts``) holding, per message, only what a grader
may see: a random row id, the locale, the title and body, the featured item's catalog facts (name, brand, price,
sale price, discount, category, the first line of the description) and the campaign's type and facts, shuffled
across sets.
Which set, user, system or candidate wrote a row (and whether it is a template fallback) goes to ``key.json``,
which graders never see. Users the system gave no copy ("flagged") are not on the sheet and count as not
sendable.

Graders fill ``sendable`` (yes/no), ``failed_rules`` (rule numbers 1-6, e.g. ``2 5``), ``appeal`` (1-5) and
``why``. ``score`` prints per set: messages, sendable (n, %), model-written and sendable (n, %), fallbacks sendable,
failures by rule, and writes the same as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.campaign.spec import load_campaign  # noqa: E402
from generator.core.data import Item, load_shop  # noqa: E402
from generator.write.prompts import format_price  # noqa: E402

SHEET_COLUMNS = ["row", "locale", "title", "body", "item", "campaign", "sendable", "failed_rules", "appeal", "why"]
RULES = {1: "facts", 2: "claims", 3: "sense", 4: "language", 5: "fit", 6: "tone"}


def item_card(item: Item, locale: str) -> str:
    """The facts a grader sees of the featured item, as the shopper would read them."""
    parts = [f"name: {item.title}", f"brand: {item.brand or '-'}",
             f"price: {format_price(item.price, item.currency, locale)}"]
    if item.discount_pct:
        parts += [f"sale price: {format_price(item.current_price, item.currency, locale)}",
                  f"discount: {item.discount_pct}%"]
    parts += [f"category: {item.category or '-'}", f"in stock: {'yes' if item.in_stock else 'no'}"]
    if item.description and item.description != item.title:
        parts.append(f"description: {item.description.splitlines()[0][:200]}")
    return "; ".join(parts)


def parse_set(spec: str) -> tuple[str, Path, Path, Path | None]:
    """``NAME=MESSAGES_CSV@SHOP[@CAMPAIGN_YAML]``."""
    name, _, rest = spec.partition("=")
    paths = rest.split("@")
    if not name or len(paths) not in (2, 3):
        raise SystemExit(f"error: --set {spec!r}: expected NAME=MESSAGES_CSV@SHOP_DIR[@CAMPAIGN_YAML]")
    return name, Path(paths[0]), Path(paths[1]), Path(paths[2]) if len(paths) == 3 else None


def export(sets: list[str], out: Path, seed: int, parts: int) -> None:
    rows: list[dict[str, Any]] = []
    key: dict[str, Any] = {"sets": {}, "rows": {}}
    for spec in sets:
        name, messages, shop_dir, campaign_file = parse_set(spec)
        shop = load_shop(shop_dir)
        facts = load_campaign(campaign_file).facts if campaign_file else {}
        items = shop.items_by_id
        counts: Counter[str] = Counter()
        for r in csv.DictReader(messages.open(encoding="utf-8")):
            counts[r["status"]] += 1
            ids = r["item_ids"].split()
            if r["status"] == "flagged" or not r["body"] or not ids or ids[0] not in items:
                continue
            row_id = f"{len(rows) + 1:04d}"
            rows.append({"row": row_id, "locale": r["locale"], "title": r["title"], "body": r["body"],
                         "item": item_card(items[ids[0]], r["locale"]),
                         "campaign": json.dumps({"type": r["template"].rsplit(".", 1)[0] or "-", **facts},
                                                ensure_ascii=False)})
            key["rows"][row_id] = {"set": name, "user_id": r["user_id"], "status": r["status"]}
        key["sets"][name] = {"messages": sum(counts.values()), **counts}
    random.Random(seed).shuffle(rows)
    for n, r in enumerate(rows, start=1):  # row ids in sheet order say nothing about the set
        old = r["row"]
        r["row"] = f"R{n:04d}"
        key["rows"][r["row"]] = key["rows"].pop(old)
    out.mkdir(parents=True, exist_ok=True)
    chunks = [rows[i::parts] for i in range(parts)]
    for i, chunk in enumerate(chunks, start=1):
        path = out / ("sheet.csv" if parts == 1 else f"sheet-{i}.csv")
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=SHEET_COLUMNS)
            w.writeheader()
            w.writerows(sorted(chunk, key=lambda r: r["row"]))
    (out / "key.json").write_text(json.dumps(key, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"{len(rows)} rows in {parts} sheet(s) under {out}; key.json holds the sets")


def score(graded: list[Path], key_path: Path) -> dict[str, Any]:
    key = json.loads(key_path.read_text(encoding="utf-8"))
    grades = {r["row"]: r for path in graded for r in csv.DictReader(path.open(encoding="utf-8"))}
    missing = sorted(set(key["rows"]) - set(grades))
    if missing:
        raise SystemExit(f"error: {len(missing)} rows are not graded (first: {missing[0]})")
    report: dict[str, Any] = {}
    for name, counts in key["sets"].items():
        mine = [(rid, k) for rid, k in key["rows"].items() if k["set"] == name]
        ok = [(rid, k) for rid, k in mine if grades[rid]["sendable"].strip().lower() in ("yes", "y", "1", "true")]
        rules: Counter[str] = Counter()
        examples: dict[str, list[str]] = {}
        for rid, _ in mine:
            for n in grades[rid].get("failed_rules", "").replace(",", " ").split():
                rule = RULES.get(int(n), n) if n.isdigit() else n
                rules[rule] += 1
                examples.setdefault(rule, []).append(f"{grades[rid]['title']} | {grades[rid]['body']}")
        total = counts["messages"]
        model_ok = sum(1 for _, k in ok if k["status"] == "passed")
        report[name] = {
            "messages": total, "on_sheet": len(mine), "no_copy": counts.get("flagged", 0),
            "sendable": len(ok), "sendable_pct": round(100 * len(ok) / total, 1) if total else 0.0,
            "model_written_sendable": model_ok,
            "model_written_sendable_pct": round(100 * model_ok / total, 1) if total else 0.0,
            "model_written": counts.get("passed", 0), "fallbacks": counts.get("fallback", 0),
            "failures_by_rule": dict(rules.most_common()),
            "failure_examples": {k: v[:5] for k, v in examples.items()},
            "appeal_mean": round(sum(float(grades[rid]["appeal"] or 0) for rid, _ in mine) / len(mine), 2)
            if mine else None,
        }
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("--set", action="append", required=True, dest="sets")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--parts", type=int, default=1, help="split the sheet for several graders")
    sc = sub.add_parser("score")
    sc.add_argument("--graded", type=Path, nargs="+", required=True)
    sc.add_argument("--key", type=Path, required=True)
    sc.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "export":
        export(args.sets, args.out, args.seed, max(1, args.parts))
        return 0
    report = score(args.graded, args.key)
    print("| set | messages | sendable | model-written and sendable | fallbacks | no copy | failures by rule |")
    print("|---|---|---|---|---|---|---|")
    for name, r in report.items():
        rules = ", ".join(f"{k} {v}" for k, v in r["failures_by_rule"].items()) or "-"
        print(f"| {name} | {r['messages']} | {r['sendable']} ({r['sendable_pct']}%) | {r['model_written_sendable']} "
              f"({r['model_written_sendable_pct']}%) | {r['fallbacks']} | {r['no_copy']} | {rules} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
