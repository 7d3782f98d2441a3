"""`pushgen demo` end to end with the real packaged models, offline, on the embedded default."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator.check.guardrails import mentions_item
from generator.core.data import load_shop
from generator.db.messages import list_messages
from generator.db.store import Store

REPO = Path(__file__).resolve().parent.parent


def _pushgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "generator", *args], capture_output=True, text=True,
                          env={**os.environ}, timeout=900)


@pytest.mark.slow
def test_demo_writes_checked_messages_and_stores_the_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _pushgen("demo", "--users", "5", "--out", str(out), "--candidates", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((out / "messages.csv").open(encoding="utf-8")))
    assert len(rows) == 5 and len({r["user_id"] for r in rows}) == 5
    items = load_shop(REPO / "examples" / "shop").items_by_id
    for r in rows:
        assert r["status"] in ("passed", "fallback", "flagged")
        if r["status"] == "flagged":
            assert r["reasons"], r
        else:
            assert r["reasons"] == "", r
            ranked = [items[i] for i in r["item_ids"].split()]
            assert any(mentions_item(f"{r['title']} {r['body']}", it) for it in ranked), r
            assert r["deep_link"].startswith("https://shop.example.com/p/")
    html = (out / "review.html").read_text(encoding="utf-8")
    assert html.count('class="msg ') == 5 and "<script" not in html.lower()
    job_line = next(line for line in proc.stdout.splitlines() if line.startswith("job "))
    stored = list_messages(Store(), job_line.split()[1])
    assert sorted(m.user_id for m in stored) == sorted(r["user_id"] for r in rows)
    assert all(m.guardrails and m.prompt and m.ranked_items for m in stored)


def test_demo_on_a_bad_shop_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shutil.copytree(REPO / "examples" / "shop", shop)
    lines = (shop / "items.csv").read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace(",USD,", ",usd,")
    (shop / "items.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = _pushgen("demo", "--users", "2", "--shop", str(shop), "--out", str(out))
    assert proc.returncode == 2
    assert "items.csv, row 3, field 'currency'" in proc.stderr
    assert not out.exists()
