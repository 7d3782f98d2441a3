"""scripts/grade_sheet.py: a blind, shuffled sheet out; per-set sendable rates back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["user_id", "variant", "locale", "item_ids", "template", "adapter", "title", "body", "deep_link", "status",
           "reasons", "ctr_score"]


def _messages(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for user, status, body in rows:
            w.writerow({"user_id": user, "variant": "0", "locale": "en_US", "item_ids": "L06 L01",
                        "template": "price_drop.en", "title": "Now 40% off", "body": body, "status": status})
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "grade_sheet.py"), *args], capture_output=True,
                          text=True, check=True)


def test_export_hides_the_source_and_score_counts_per_set(tmp_path: Path, long_titles_shop: Path) -> None:
    shop = long_titles_shop
    a = _messages(tmp_path / "a.csv", [("secret-user-1", "passed", "Kelvix caliper, $17.97"),
                                       ("secret-user-2", "fallback", "Kelvix Digital Caliper is now $17.97"),
                                       ("secret-user-3", "flagged", "")])
    b = _messages(tmp_path / "b.csv", [("secret-user-4", "passed", "The best caliper in the world")])
    _run("export", "--set", f"alpha={a}@{shop}", "--set", f"beta={b}@{shop}", "--out", str(tmp_path / "g"))
    sheet = (tmp_path / "g" / "sheet.csv").read_text(encoding="utf-8")
    for secret in ("secret-user", "alpha", "beta", "passed", "fallback", "flagged"):
        assert secret not in sheet
    rows = list(csv.DictReader(sheet.splitlines()))
    assert len(rows) == 3 and all("Kelvix VTD425 Digital Caliper" in r["item"] for r in rows)
    for r in rows:
        good = "best" not in r["body"]
        r.update(sendable="yes" if good else "no", failed_rules="" if good else "2", appeal="3", why="")
    with (tmp_path / "graded.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _run("score", "--graded", str(tmp_path / "graded.csv"), "--key", str(tmp_path / "g" / "key.json"),
         "--json", str(tmp_path / "score.json"))
    score = json.loads((tmp_path / "score.json").read_text(encoding="utf-8"))
    assert (score["alpha"]["messages"], score["alpha"]["sendable"], score["alpha"]["model_written_sendable"],
            score["alpha"]["no_copy"]) == (3, 2, 1, 1)
    assert (score["beta"]["sendable"], score["beta"]["failures_by_rule"]) == (0, {"claims": 1})
