"""Import Amazon "Industrial & Scientific" data (UniSRec preprocessing) as pushgen items, users and events.

    python scripts/import_amazon_scientific.py /work/shared/data/amazon_scientific --out DIR [--format csv]

Reads ``Scientific.text``, ``Scientific.item2index``, ``Scientific.user2index``, ``Scientific.train.inter``,
``Scientific.valid.inter`` and, when present, ``Scientific.test.inter``. Indices are mapped back to ASINs
(``item_id``) and reviewer ids (``user_id``). Each user's full purchase sequence is rebuilt from the splits:
train holds every prefix (histories may be cut to the last N items, so consecutive rows are stitched), valid
adds the second-to-last item and test the last one. Users only in train get their longest train sequence.

The source has no prices, stock or timestamps: items get neutral defaults (price 10.00 USD, in stock) and
events get synthetic ordinal timestamps (2018-01-01 plus one day per position). Both are announced when run.

Errors name the file, its 1-based line (header included) and the field; nothing is written unless every file
parses: the tables go to a temporary folder, are checked with :func:`generator.core.data.load_shop`, and only then
move into ``DIR``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from generator.core.data import load_shop, write_table
from generator.core.errors import DataError

PREFIX = "Scientific"
CATEGORY_ROOT = "Industrial & Scientific"
NEUTRAL_PRICE = "10.00"
TITLE_MAX = 500
EPOCH = datetime(2018, 1, 1, tzinfo=UTC)
ITEM_COLUMNS = ["item_id", "title", "description", "category", "brand", "price", "sale_price", "currency",
                "in_stock", "url", "image_url"]
USER_COLUMNS = ["user_id", "locale", "timezone", "push_opt_in"]
EVENT_COLUMNS = ["user_id", "item_id", "event_type", "timestamp"]

out_console = Console()
err_console = Console(stderr=True)


@dataclass
class Row:
    """One parsed ``.inter`` line: user index, history (item indices, oldest first) and target."""

    line: int
    user: int
    history: list[int]
    target: int


@dataclass
class Source:
    """Everything read from the folder, indices already checked."""

    items: list[dict[str, str]] = field(default_factory=list)
    asin_of: dict[int, str] = field(default_factory=dict)
    reviewer_of: dict[int, str] = field(default_factory=dict)
    splits: dict[str, list[Row]] = field(default_factory=dict)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for non-blank lines; a RecBole header (``name:type`` columns) is skipped."""
    if not path.is_file():
        raise DataError(str(path), None, None, "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    lines = text.split("\n")
    progress = track(lines, description=f"reading {path.name}", console=err_console, transient=True,
                     disable=not err_console.is_terminal)
    for n, line in enumerate(progress, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if n == 1 and ":token" in line:
            continue
        yield n, line


def _fields(path: Path, n: int, line: str, names: Sequence[str]) -> list[str]:
    parts = line.split("\t")
    if len(parts) != len(names):
        raise DataError(str(path), n, None, f"expected {len(names)} tab-separated fields "
                        f"({', '.join(names)}), found {len(parts)}")
    return parts


def _index(path: Path, n: int, name: str, value: str) -> int:
    value = value.strip()
    if not value.isdigit():
        raise DataError(str(path), n, name, f"{value!r} is not a non-negative integer index")
    return int(value)


def read_mapping(path: Path, key: str) -> dict[int, str]:
    """``index -> id`` from a ``<id>\\t<index>`` file; ids and indices must be unique."""
    by_index: dict[int, str] = {}
    line_of: dict[str, int] = {}
    for n, line in _lines(path):
        ident, idx = _fields(path, n, line, (key, "index"))
        ident = ident.strip()
        if not ident:
            raise DataError(str(path), n, key, "empty id")
        i = _index(path, n, "index", idx)
        if ident in line_of:
            raise DataError(str(path), n, key, f"duplicate {key} {ident!r} (first on line {line_of[ident]})")
        if i in by_index:
            raise DataError(str(path), n, "index", f"duplicate index {i} (already used by {by_index[i]!r})")
        by_index[i], line_of[ident] = ident, n
    return by_index


def split_text(text: str) -> tuple[str, str, str]:
    """``(title, category, brand)`` from ``"<title>. <category path>. <brand>. "``.

    The category path always starts with "Industrial & Scientific", which is how the title is told apart from
    the rest even when the title or brand contains ". " (``Mr. Heater``); an empty category shows as ". . ".
    Without either marker the title is the text up to the first ". " and the brand is the last part.
    """
    body = text.rstrip()
    if body.endswith("."):
        body = body[:-1]
    cut = body.find(f". {CATEGORY_ROOT}")
    if cut >= 0:
        category, _, brand = body[cut + 2:].partition(". ")
        return body[:cut].strip(), category.strip(), brand.strip()
    cut = body.find(". . ")
    if cut >= 0:
        return body[:cut].strip(), "", body[cut + 4:].strip()
    parts = body.split(". ")
    return parts[0].strip(), "", parts[-1].strip() if len(parts) > 2 else ""


def read_items(path: Path, asin_of: dict[int, str], mapping_path: Path) -> list[dict[str, str]]:
    """Item rows from ``Scientific.text``; every indexed item must have a text line."""
    items: list[dict[str, str]] = []
    line_of: dict[str, int] = {}
    for n, line in _lines(path):
        asin, text = _fields(path, n, line, ("item_id", "text"))
        asin = asin.strip()
        if not asin:
            raise DataError(str(path), n, "item_id", "empty item id")
        if asin in line_of:
            raise DataError(str(path), n, "item_id",
                            f"duplicate item {asin!r} (first on line {line_of[asin]})")
        if not text.strip():
            raise DataError(str(path), n, "text", "empty text: an item needs at least a title")
        title, category, brand = split_text(text)
        if not title:
            raise DataError(str(path), n, "text", "no title before the first '. '")
        if len(title) > TITLE_MAX:
            title = title[:TITLE_MAX - 1].rstrip() + "…"
        line_of[asin] = n
        items.append({"item_id": asin, "title": title, "description": text.strip(), "category": category,
                      "brand": brand, "price": NEUTRAL_PRICE, "sale_price": "", "currency": "USD",
                      "in_stock": "true", "url": f"https://www.amazon.com/dp/{asin}", "image_url": ""})
    missing = [i for i in sorted(asin_of) if asin_of[i] not in line_of]
    if missing:
        asin = asin_of[missing[0]]
        raise DataError(str(mapping_path), _line_in(mapping_path, asin), "item_id",
                        f"item {asin!r} has no text line in {path.name} ({len(missing)} such items)")
    return items


def _line_in(path: Path, ident: str) -> int | None:
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.split("\t", 1)[0].strip() == ident:
            return n
    return None


def read_inter(path: Path, src: Source) -> list[Row]:
    """Rows of a ``.inter`` split, with user and item indices checked against the mappings."""
    rows: list[Row] = []
    for n, line in _lines(path):
        user, hist, target = _fields(path, n, line, ("user_id", "item_id_list", "item_id"))
        u = _index(path, n, "user_id", user)
        if u not in src.reviewer_of:
            raise DataError(str(path), n, "user_id", f"unknown user index {u} (not in {PREFIX}.user2index)")
        history = [_index(path, n, "item_id_list", tok) for tok in hist.split()]
        t = _index(path, n, "item_id", target)
        for name, idx in [*(("item_id_list", i) for i in history), ("item_id", t)]:
            if idx not in src.asin_of:
                raise DataError(str(path), n, name, f"unknown item index {idx} (not in {PREFIX}.item2index)")
        rows.append(Row(n, u, history, t))
    return rows


def extend(seq: list[int], history: list[int], target: int) -> list[int] | None:
    """``seq`` + ``target`` when ``history`` continues ``seq`` (possibly cut to its last items), else None."""
    if not seq:
        return [*history, target]
    if len(history) <= len(seq) and seq[len(seq) - len(history):] == history:
        return [*seq, target]
    if len(history) > len(seq) and history[len(history) - len(seq):] == seq:
        return [*history, target]
    return None


def _stitch(rows: list[Row]) -> tuple[list[int], Row | None]:
    seq: list[int] = []
    for row in rows:
        nxt = extend(seq, row.history, row.target)
        if nxt is None:
            return seq, row
        seq = nxt
    return seq, None


def train_sequence(rows: list[Row], path: Path) -> list[int]:
    """One user's sequence from their train rows (each a prefix + next item, in any file order).

    Rows are put in time order by history length; rows of equal length (histories cut to a fixed window) keep
    the file's order, newest first as RecBole writes them, or oldest first if that is what fits.
    """
    newest_first = sorted(rows, key=lambda r: (len(r.history), -r.line))
    seq, bad = _stitch(newest_first)
    if bad is None:
        return seq
    seq2, bad2 = _stitch(sorted(rows, key=lambda r: (len(r.history), r.line)))
    if bad2 is None:
        return seq2
    raise DataError(str(path), bad.line, "item_id_list",
                    "history does not continue this user's shorter train rows (not a prefix sequence)")


def sequences(src: Source, paths: dict[str, Path]) -> dict[int, list[int]]:
    """Every user's full sequence: stitched train rows, then the valid row, then the test row."""
    by_user: dict[int, list[Row]] = {}
    for row in src.splits["train"]:
        by_user.setdefault(row.user, []).append(row)
    seqs = {u: train_sequence(rows, paths["train"]) for u, rows in by_user.items()}
    for split in ("valid", "test"):
        seen: dict[int, int] = {}
        for row in src.splits.get(split, []):
            if row.user in seen:
                raise DataError(str(paths[split]), row.line, "user_id",
                                f"user index {row.user} appears twice in {split} "
                                f"(first on line {seen[row.user]})")
            seen[row.user] = row.line
            nxt = extend(seqs.get(row.user, []), row.history, row.target)
            if nxt is None:
                raise DataError(str(paths[split]), row.line, "item_id_list",
                                f"history does not match user index {row.user}'s sequence from the earlier "
                                "split(s)")
            seqs[row.user] = nxt
    return seqs


def read_source(folder: Path) -> tuple[Source, dict[str, Path]]:
    """Parse and check every input file of ``folder``."""
    if not folder.is_dir():
        raise DataError(str(folder), None, None, "not a folder")
    paths = {name: folder / f"{PREFIX}.{name}" for name in ("text", "item2index", "user2index")}
    paths |= {split: folder / f"{PREFIX}.{split}.inter" for split in ("train", "valid", "test")}
    src = Source()
    src.asin_of = read_mapping(paths["item2index"], "item_id")
    src.reviewer_of = read_mapping(paths["user2index"], "user_id")
    src.items = read_items(paths["text"], src.asin_of, paths["item2index"])
    for split in ("train", "valid", "test"):
        if split == "test" and not paths["test"].exists():
            continue
        src.splits[split] = read_inter(paths[split], src)
    return src, paths


def build_tables(src: Source, seqs: dict[int, list[int]]) -> dict[str, list[dict[str, str]]]:
    """Items, users (in index order) and one purchase event per sequence position."""
    users, events = [], []
    for u in sorted(src.reviewer_of):
        reviewer = src.reviewer_of[u]
        users.append({"user_id": reviewer, "locale": "en_US", "timezone": "UTC", "push_opt_in": "true"})
        for pos, idx in enumerate(seqs.get(u, [])):
            ts = (EPOCH + timedelta(days=pos)).strftime("%Y-%m-%dT%H:%M:%SZ")
            events.append({"user_id": reviewer, "item_id": src.asin_of[idx], "event_type": "purchase",
                           "timestamp": ts})
    return {"items": src.items, "users": users, "events": events}


def write_tables(tables: dict[str, list[dict[str, str]]], out: Path, fmt: str) -> None:
    """Write to a temporary sibling folder, check it with ``load_shop``, then move the files into ``out``."""
    columns = {"items": ITEM_COLUMNS, "users": USER_COLUMNS, "events": EVENT_COLUMNS}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, rows in tables.items():
            write_table(tmp / f"{name}.{fmt}", rows, columns[name])
        load_shop(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in tables:
            os.replace(tmp / f"{name}.{fmt}", out / f"{name}.{fmt}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder with the Scientific.* files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv", help="table format")
    args = parser.parse_args(argv)
    try:
        src, paths = read_source(args.folder)
        seqs = sequences(src, paths)
        tables = build_tables(src, seqs)
        write_tables(tables, args.out, args.format)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_console.print("[bold yellow]NOTICE:[/] the source has no prices or stock: every item got the neutral "
                      f"defaults price {NEUTRAL_PRICE} USD and in_stock=true. Do not use them in pricing "
                      "copy.")
    out_console.print("[bold yellow]NOTICE:[/] the source has no timestamps: event timestamps are synthetic "
                      f"ordinal ones ({EPOCH:%Y-%m-%d} + one day per position in each user's sequence); only "
                      "their order is real.")
    splits = " + ".join(f"{s} {len(rows)}" for s, rows in src.splits.items())
    table = Table(title=f"Amazon Scientific -> {args.out} ({args.format})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("details")
    lengths = [len(s) for s in seqs.values()]
    table.add_row("items", str(len(tables["items"])),
                  f"{sum(1 for i in tables['items'] if i['category'])} with a category path")
    table.add_row("users", str(len(tables["users"])), f"{len(seqs)} with events")
    table.add_row("events", str(len(tables["events"])),
                  f"purchases; sequence length {min(lengths, default=0)}-{max(lengths, default=0)}; "
                  f"source rows {splits}")
    out_console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
