"""Data contracts: valid rows load from every format; bad rows name file, row and field."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from generator.core.data import Event, Item, PastPush, Review, User, load_shop, load_table, write_table
from generator.core.errors import DataError

ITEM = {"item_id": "A1", "title": "Glue", "price": "9.99", "sale_price": "7.49", "currency": "USD",
        "in_stock": "true", "url": "https://x/a1"}


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_items_round_trip_in_every_format(tmp_path: Path, suffix: str) -> None:
    item = Item.model_validate(ITEM)
    path = write_table(tmp_path / f"items{suffix}", [item])
    [back] = load_table(path, Item).rows
    assert back == item
    assert back.discount_pct == 25 and back.current_price == Decimal("7.49")


@pytest.mark.parametrize(("change", "field", "needle"), [
    ({"price": "abc"}, "price", "decimal"),
    ({"currency": "usd"}, "currency", "pattern"),
    ({"sale_price": "12.00"}, "sale_price", "above price"),
    ({"in_stock": "maybe"}, "in_stock", "boolean"),
    ({"title": ""}, "title", "Field required"),
])
def test_bad_item_names_file_row_and_field(tmp_path: Path, change: dict, field: str, needle: str) -> None:
    path = write_csv(tmp_path / "items.csv", [ITEM, {**ITEM, "item_id": "A2", **change}])
    with pytest.raises(DataError) as exc:
        load_table(path, Item)
    assert exc.value.row == 2 and exc.value.field == field
    assert str(path) in str(exc.value) and "row 2" in str(exc.value) and needle.lower() in str(exc.value).lower()


def test_skip_invalid_reports_instead_of_stopping(tmp_path: Path) -> None:
    rows = [ITEM, {**ITEM, "item_id": "A2", "price": "-1"}, {**ITEM, "item_id": "A3"}]
    path = write_csv(tmp_path / "items.csv", rows)
    res = load_table(path, Item, skip_invalid=True)
    assert [r.item_id for r in res.rows] == ["A1", "A3"]
    assert res.skipped[0][0] == 2 and "price" in res.skipped[0][1]


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", [ITEM, ITEM])
    with pytest.raises(DataError, match=r"row 2, field 'item_id': duplicate"):
        load_table(path, Item)


def test_jsonl_bad_json_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text(json.dumps({"user_id": "u1"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"users.jsonl, row 2: invalid JSON"):
        load_table(path, User)


def test_other_contracts_validate_their_fields(tmp_path: Path) -> None:
    assert load_table(write_csv(tmp_path / "u.csv", [{"user_id": "u", "locale": "zh_CN",
                                                       "timezone": "Asia/Shanghai"}]), User).rows[0].language == "zh"
    with pytest.raises(DataError, match="field 'timezone'"):
        load_table(write_csv(tmp_path / "u2.csv", [{"user_id": "u", "timezone": "Mars/Base"}]), User)
    with pytest.raises(DataError, match="field 'event_type'"):
        load_table(write_csv(tmp_path / "e.csv", [{"user_id": "u", "item_id": "A1", "event_type": "like",
                                                    "timestamp": "2026-01-01T00:00:00Z"}]), Event)
    with pytest.raises(DataError, match="field 'rating'"):
        load_table(write_csv(tmp_path / "r.csv", [{"user_id": "u", "item_id": "A1", "rating": "6",
                                                    "timestamp": "2026-01-01"}]), Review)
    push = {"push_id": "p", "group_id": "g", "body": "hi", "impressions": "100", "clicks": "5",
            "sent_at": "2026-01-01"}
    row = load_table(write_csv(tmp_path / "p.csv", [push]), PastPush).rows[0]
    assert row.sends == 100 and row.ctr == 0.05 and row.sent_at.tzinfo is not None
    with pytest.raises(DataError, match="field 'clicks'"):
        load_table(write_csv(tmp_path / "p2.csv", [{**push, "clicks": "500"}]), PastPush)
    with pytest.raises(DataError, match="field 'title'"):
        load_table(write_csv(tmp_path / "p3.csv", [{**push, "body": ""}]), PastPush)


def _mini_shop(folder: Path, event_item: str = "A1") -> Path:
    write_csv(folder / "items.csv", [ITEM])
    write_csv(folder / "users.csv", [{"user_id": "u1"}])
    write_csv(folder / "events.csv", [{"user_id": "u1", "item_id": event_item, "event_type": "view",
                                       "timestamp": "2026-01-01T00:00:00Z"}])
    return folder


def test_shop_checks_references(tmp_path: Path) -> None:
    shop = load_shop(_mini_shop(tmp_path))
    assert len(shop.items) == 1 and shop.events[0].item_id == "A1" and shop.reviews == []
    with pytest.raises(DataError, match=r"events.csv, row 1, field 'item_id': unknown item_id 'ZZ'"):
        load_shop(_mini_shop(tmp_path, event_item="ZZ"))
    assert load_shop(tmp_path, skip_invalid=True).events == []


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        write_table(tmp_path / "out.xlsx", [Item.model_validate(ITEM)])
    assert list(tmp_path.iterdir()) == []


def test_cli_validate_exits_non_zero_with_a_clear_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", [ITEM, {**ITEM, "item_id": "A2", "currency": "dollars"}])
    proc = subprocess.run([sys.executable, "-m", "generator", "data", "validate", "items", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "items.csv, row 2, field 'currency'" in proc.stderr.replace("\n", "")
    ok = subprocess.run([sys.executable, "-m", "generator", "data", "validate", "items", str(path),
                         "--skip-invalid"], capture_output=True, text=True)
    assert ok.returncode == 0 and "1 valid items rows, 1 skipped" in ok.stdout


def test_split_by_group_keeps_groups_together_and_is_stable(tmp_path: Path) -> None:
    import csv

    from generator.core.data import split_by_group

    src = tmp_path / "pushes.csv"
    with src.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["push_id", "group_id", "title", "extra"])
        for g in range(60):
            for v in range(3):
                w.writerow([f"p{g}-{v}", f"g{g}", f"t{g}", "kept"])
    a = split_by_group(src, tmp_path / "a.csv", tmp_path / "b.csv", fraction=0.25)
    b = split_by_group(src, tmp_path / "a2.csv", tmp_path / "b2.csv", fraction=0.25)
    assert a == b and a[0] + a[1] == 180 and 0 < a[1] < 90
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "b2.csv").read_text()
    rows = {name: list(csv.DictReader((tmp_path / name).open(encoding="utf-8"))) for name in ("a.csv", "b.csv")}
    groups = {name: {r["group_id"] for r in rs} for name, rs in rows.items()}
    assert not groups["a.csv"] & groups["b.csv"]
    assert all(len([r for r in rows["b.csv"] if r["group_id"] == g]) == 3 for g in groups["b.csv"])
    assert rows["b.csv"][0]["extra"] == "kept"
    with pytest.raises(DataError, match="fraction"):
        split_by_group(src, tmp_path / "x.csv", tmp_path / "y.csv", fraction=1.5)
