"""The Amazon Scientific and Upworthy importers on tiny fixtures built in tmp_path (no shared data needed)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from generator.core.data import PastPush, load_shop, load_table

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


amazon = _script("import_amazon_scientific")
upworthy = _script("import_upworthy")

TEXT = (
    "item_id:token\ttext:token_seq\n"
    "A1\tMr. Heater Connector Kit 3/8 Male. Industrial & Scientific Hydraulics Fittings. Mr. Heater. \n"
    "A2\tGorilla Glue, 8 ounce. Industrial & Scientific Tapes, Adhesives & Sealants. Gorilla. \n"
    "A3\tTPI Exhaust Fan, 24 Diameter. . TPI. \n"
)
HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def make_amazon(folder: Path, *, train: str | None = None, valid: str | None = None,
                test: str | None = None) -> Path:
    """3 items, 2 users: user 0 (RU1) bought 0 1 2 0, user 1 (RU2) is only in train with 2 1."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "text": TEXT,
        "item2index": "A1\t0\nA2\t1\nA3\t2\n",
        "user2index": "RU1\t0\nRU2\t1\n",
        "train.inter": HEADER + (train if train is not None else "0\t0 1\t2\n0\t0\t1\n1\t2\t1\n"),
        "valid.inter": HEADER + (valid if valid is not None else "0\t0 1 2\t0\n"),
    }
    if test is not None:
        files["test.inter"] = HEADER + test
    for name, text in files.items():
        (folder / f"Scientific.{name}").write_text(text, encoding="utf-8")
    return folder


def sequences(out: Path) -> dict[str, list[str]]:
    shop = load_shop(out)
    seqs: dict[str, list[str]] = {}
    last: dict[str, datetime] = {}
    for e in shop.events:
        assert e.event_type.value == "purchase"
        assert e.user_id not in last or e.timestamp > last[e.user_id]
        last[e.user_id] = e.timestamp
        seqs.setdefault(e.user_id, []).append(e.item_id)
    return seqs


def test_amazon_happy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_amazon(tmp_path / "src")
    out = tmp_path / "out"
    assert amazon.main([str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "neutral" in printed and "synthetic" in printed
    assert sequences(out) == {"RU1": ["A1", "A2", "A3", "A1"], "RU2": ["A3", "A2"]}
    shop = load_shop(out)
    assert [u.user_id for u in shop.users] == ["RU1", "RU2"]
    items = shop.items_by_id
    assert items["A1"].title == "Mr. Heater Connector Kit 3/8 Male"
    assert items["A1"].category == "Industrial & Scientific Hydraulics Fittings"
    assert items["A1"].brand == "Mr. Heater"
    a3 = items["A3"]
    assert (a3.title, a3.category, a3.brand) == ("TPI Exhaust Fan, 24 Diameter", "", "TPI")
    assert str(items["A2"].price) == "10.00" and items["A2"].in_stock
    assert items["A2"].url == "https://www.amazon.com/dp/A2"
    assert shop.events[0].timestamp == datetime(2018, 1, 1, tzinfo=UTC)


def test_amazon_uses_test_split_when_present(tmp_path: Path) -> None:
    src = make_amazon(tmp_path / "src", test="0\t0 1 2 0\t1\n")
    out = tmp_path / "out"
    assert amazon.main([str(src), "--out", str(out), "--format", "parquet"]) == 0
    assert (out / "events.parquet").exists() and not (out / "events.csv").exists()
    assert sequences(out) == {"RU1": ["A1", "A2", "A3", "A1", "A2"], "RU2": ["A3", "A2"]}


def test_amazon_stitches_histories_cut_to_a_window(tmp_path: Path) -> None:
    # user 0 bought 0 1 2 0 1 2 with histories cut to the last 2 items, train rows newest first
    train = "0\t2 0\t1\n0\t1 2\t0\n0\t0 1\t2\n0\t0\t1\n1\t2\t1\n"
    src = make_amazon(tmp_path / "src", train=train, valid="0\t0 1\t2\n")
    out = tmp_path / "out"
    assert amazon.main([str(src), "--out", str(out), "--format", "jsonl"]) == 0
    assert sequences(out)["RU1"] == ["A1", "A2", "A3", "A1", "A2", "A3"]


@pytest.mark.parametrize(("train", "valid", "file", "where"), [
    ("0\t0 7\t2\n0\t0\t1\n", None, "Scientific.train.inter", "row 2, field 'item_id_list'"),
    ("0\t0 1\t2\n0\t0\tX\n", None, "Scientific.train.inter", "row 3, field 'item_id'"),
    (None, "5\t0 1 2\t0\n", "Scientific.valid.inter", "row 2, field 'user_id'"),
    (None, "0\t0 1 2\n", "Scientific.valid.inter", "row 2"),
    (None, "0\t2 2 1\t0\n", "Scientific.valid.inter", "row 2, field 'item_id_list'"),
])
def test_amazon_malformed_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], train: str | None,
                               valid: str | None, file: str, where: str) -> None:
    src = make_amazon(tmp_path / "src", train=train, valid=valid)
    out = tmp_path / "out"
    assert amazon.main([str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and file in err and where in err
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_amazon_item_without_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_amazon(tmp_path / "src")
    (src / "Scientific.item2index").write_text("A1\t0\nA2\t1\nA3\t2\nA4\t3\n", encoding="utf-8")
    assert amazon.main([str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Scientific.item2index, row 4, field 'item_id'" in err and "A4" in err


def test_amazon_failure_leaves_existing_output_alone(tmp_path: Path) -> None:
    src = make_amazon(tmp_path / "src")
    out = tmp_path / "out"
    assert amazon.main([str(src), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (src / "Scientific.valid.inter").write_text(HEADER + "0\t0 1 2\t9\n", encoding="utf-8")
    assert amazon.main([str(src), "--out", str(out)]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(("text", "parts"), [
    ("Glue, 8 oz. Industrial & Scientific Tapes. Gorilla. ", ("Glue, 8 oz", "Industrial & Scientific Tapes",
                                                              "Gorilla")),
    ("Tape: 2 in. x 18 yds. (Red). Industrial & Scientific Safety Tape. J.V. Converting. ",
     ("Tape: 2 in. x 18 yds. (Red)", "Industrial & Scientific Safety Tape", "J.V. Converting")),
    ("Lugs 8 AWG. Industrial & Scientific Ring Terminals. . ", ("Lugs 8 AWG", "Industrial & Scientific Ring "
                                                                "Terminals", "")),
    ("Eyewear, Clear. . . ", ("Eyewear, Clear", "", "")),
    ("Odd text. Other. Brand.", ("Odd text", "", "Brand")),
])
def test_split_text(text: str, parts: tuple[str, str, str]) -> None:
    assert amazon.split_text(text) == parts


UPWORTHY = (
    "test_id,test_week,headline,eyecatcher_id,impressions,clicks,winner\n"
    "t1,201446,Headline A,e1,3052,150,True\n"
    "t1,201446,Headline A,e1,3033,122,False\n"
    't2,201500,"Comma, headline",,2933,68,False\n'
)


def test_upworthy_happy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "up.csv"
    src.write_text(UPWORTHY, encoding="utf-8")
    out = tmp_path / "pushes" / "upworthy.csv"
    assert upworthy.main([str(src), "--out", str(out)]) == 0
    assert "past pushes" in capsys.readouterr().out
    pushes = load_table(out, PastPush).rows
    assert [p.push_id for p in pushes] == ["t1-1", "t1-2", "t2-1"]
    assert [p.group_id for p in pushes] == ["t1", "t1", "t2"]
    first = pushes[0]
    assert (first.title, first.body, first.sends, first.clicks, first.campaign_type, first.locale) == (
        None, "Headline A", 3052, 150, "content_recommendation", "en_US")
    assert first.sent_at == datetime(2014, 11, 16, tzinfo=UTC)  # Sunday starting week 46 (%U)
    assert pushes[2].sent_at == datetime(2015, 1, 1, tzinfo=UTC)  # week 00: days before the first Sunday
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["test_week"], r["eyecatcher_id"], r["winner"]) for r in rows] == [
        ("201446", "e1", "True"), ("201446", "e1", "False"), ("201500", "", "False")]


@pytest.mark.parametrize(("row", "field"), [
    ("t1,201446,Headline A,e1,3052,lots,True", "clicks"),
    ("t1,201446,Headline A,e1,3052,-3,True", "clicks"),
    ("t1,201446,Headline A,e1,100,150,True", "clicks"),
    ("t1,2014,Headline A,e1,3052,150,True", "test_week"),
    ("t1,201453,Headline A,e1,3052,150,True", "test_week"),
    ("t1,201446,,e1,3052,150,True", "headline"),
    ("t1,201446,Headline A,e1,3052,150,maybe", "winner"),
])
def test_upworthy_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, field: str) -> None:
    src = tmp_path / "up.csv"
    src.write_text(UPWORTHY.splitlines(keepends=True)[0] + "t0,201446,Fine,e0,10,1,False\n" + row + "\n",
                   encoding="utf-8")
    out = tmp_path / "upworthy.csv"
    assert upworthy.main([str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(src) in err and f"row 2, field '{field}'" in err
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".upworthy")]  # no temp file left


def test_upworthy_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "up.csv"
    src.write_text("test_id,test_week,headline\nt1,201446,Hi\n", encoding="utf-8")
    assert upworthy.main([str(src), "--out", str(tmp_path / "o.csv")]) == 2
    assert "missing column(s) eyecatcher_id" in capsys.readouterr().err


def test_week_start() -> None:
    assert upworthy.week_start("201446") == datetime(2014, 11, 16, tzinfo=UTC)
    assert upworthy.week_start("201401") == datetime(2014, 1, 5, tzinfo=UTC)
    assert upworthy.week_start("201400") == datetime(2014, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        upworthy.week_start("201453")
