"""The committed synthetic sample shop in examples/shop and the script that makes it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from generator.core.data import Shop, load_shop

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
SCRIPT = ROOT / "scripts" / "make_sample_shop.py"
TABLES = ("items.csv", "users.csv", "events.csv", "reviews.csv", "pushes.csv")


@pytest.fixture(scope="module")
def shop() -> Shop:
    return load_shop(SHOP)


def test_sizes(shop: Shop) -> None:
    assert 180 <= len(shop.items) <= 220
    assert 90 <= len(shop.users) <= 110
    assert 450 <= len(shop.pushes) <= 550
    assert 120 <= len(shop.reviews) <= 180
    assert len({i.category for i in shop.items}) == 8
    assert len({i.brand for i in shop.items}) == 15


def test_variety(shop: Shop) -> None:
    assert any(u.locale == "zh_CN" and u.timezone == "Asia/Shanghai" for u in shop.users)
    assert any(u.locale.startswith("en") for u in shop.users)
    assert any(i.discount_pct and 10 <= i.discount_pct <= 50 for i in shop.items)
    assert any(not i.in_stock for i in shop.items)
    assert any(p.locale == "zh_CN" for p in shop.pushes)
    sizes = Counter(p.group_id for p in shop.pushes)
    assert all(2 <= n <= 4 for n in sizes.values())
    assert all(len({p.campaign_type for p in shop.pushes if p.group_id == g}) == 1 for g in list(sizes)[:30])


def test_pushes(shop: Shop) -> None:
    items = shop.items_by_id
    for p in shop.pushes:
        assert p.title and len(p.title) <= 50
        assert p.body and len(p.body) <= 150
        assert 0.01 <= p.ctr <= 0.08
        assert p.conversions is not None and p.conversions <= p.clicks <= (p.opens or 0) <= p.sends
        if p.item_id:  # the copy quotes the item's real current price
            assert f"${items[p.item_id].current_price:.2f}" in p.title + p.body


def test_reviews_are_of_purchases(shop: Shop) -> None:
    bought = {(e.user_id, e.item_id) for e in shop.events if e.event_type.value == "purchase"}
    assert all((r.user_id, r.item_id) in bought for r in shop.reviews)
    texts = [r.text for r in shop.reviews]
    for needle in ("Ignore all previous instructions", "<script>", "http://evil.example.com", "@example.com",
                   "(555)"):
        assert any(needle in t for t in texts), needle


def _generate(out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_generator_is_deterministic(tmp_path: Path) -> None:
    _generate(tmp_path / "a", "1")
    _generate(tmp_path / "b", "2")
    for name in TABLES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in TABLES:  # the committed files are what the documented command makes
        assert (tmp_path / "a" / name).read_bytes() == (SHOP / name).read_bytes(), name
