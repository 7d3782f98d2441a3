"""Import Upworthy headline A/B tests (Upworthy Research Archive) as pushgen past pushes.

    python scripts/import_upworthy.py /work/shared/data/upworthy/upworthy_dev.csv --out FILE

Input columns: ``test_id, test_week, headline, eyecatcher_id, impressions, clicks, winner``. Each package
becomes one past push: ``push_id`` = ``<test_id>-<n>`` (n = the package's 1-based position within its test,
in file order; a test may hold identical-looking packages), ``group_id`` = ``test_id``, ``campaign_type`` =
``content_recommendation``, ``body`` = headline (no title), ``locale`` = en_US, ``sends`` = impressions,
``clicks``, and ``sent_at`` = the start of ``test_week`` at 00:00 UTC. The extra columns ``test_week``,
``eyecatcher_id`` and ``winner`` are kept.

``test_week`` is ``strftime("%Y%U")`` of the test's creation (weeks start on Sunday; week 00 holds the days
before the year's first Sunday): that is what the data uses (the creation time inside each MongoDB
``test_id`` falls in that week for 97% of tests, against 6% for ISO weeks, and weeks 201400/201500 exist).

The output format follows FILE's suffix (.csv, .jsonl, .parquet). Errors name the file, the 1-based data row
(the header is not a row) and the field; the output is written atomically and only when every row is valid.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import track
from rich.table import Table

from generator.core.data import SUPPORTED_SUFFIXES, PastPush, write_table
from generator.core.errors import DataError

REQUIRED = ("test_id", "test_week", "headline", "eyecatcher_id", "impressions", "clicks", "winner")
COLUMNS = ["push_id", "group_id", "campaign_type", "title", "body", "locale", "item_id", "sends", "opens",
           "clicks", "conversions", "sent_at", "test_week", "eyecatcher_id", "winner"]
SOURCE_FIELD = {"push_id": "test_id", "group_id": "test_id", "body": "headline", "title": "headline",
                "sends": "impressions", "sent_at": "test_week"}
UNRELIABLE_WEEKS = (201326, 201402)  # randomisation problems (data README); keep out of causal claims

out_console = Console()
err_console = Console(stderr=True)


def week_start(value: str) -> datetime:
    """00:00 UTC on the first day of a ``YYYYWW`` week numbered like ``strftime("%Y%U")``."""
    if len(value) != 6 or not value.isdigit():
        raise ValueError(f"{value!r} is not a YYYYWW week")
    year, week = int(value[:4]), int(value[4:])
    if year < 1900:
        raise ValueError(f"{value!r} has an implausible year")
    jan1 = date(year, 1, 1)
    first_sunday = jan1 + timedelta(days=(6 - jan1.weekday()) % 7)
    start = jan1 if week == 0 else first_sunday + timedelta(weeks=week - 1)
    if start.year != year:
        raise ValueError(f"week {week:02d} does not exist in {year}")
    return datetime(start.year, start.month, start.day, tzinfo=UTC)


def _count(path: Path, n: int, name: str, value: str) -> int:
    try:
        num = Decimal(value.strip())
    except InvalidOperation:
        raise DataError(str(path), n, name, f"{value!r} is not a whole number") from None
    if not num.is_finite() or num != num.to_integral_value() or num < 0:
        raise DataError(str(path), n, name, f"{value!r} is not a whole number >= 0")
    return int(num)


def _winner(path: Path, n: int, value: str) -> bool | None:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    if v == "":
        return None
    raise DataError(str(path), n, "winner", f"{value!r} is not True or False")


def convert_row(path: Path, n: int, rec: dict[str, str], package: int) -> dict[str, Any]:
    """One source row as a past-push record; raises DataError naming the source field."""
    test_id = rec["test_id"].strip()
    if not test_id:
        raise DataError(str(path), n, "test_id", "empty test_id")
    try:
        sent_at = week_start(rec["test_week"].strip())
    except ValueError as exc:
        raise DataError(str(path), n, "test_week", str(exc)) from None
    headline = rec["headline"].strip()
    if not headline:
        raise DataError(str(path), n, "headline", "empty headline")
    impressions = _count(path, n, "impressions", rec["impressions"])
    clicks = _count(path, n, "clicks", rec["clicks"])
    if clicks > impressions:
        raise DataError(str(path), n, "clicks", f"{clicks} clicks exceed {impressions} impressions")
    out = {"push_id": f"{test_id}-{package}", "group_id": test_id, "campaign_type": "content_recommendation",
           "title": None, "body": headline, "locale": "en_US", "item_id": None, "sends": impressions,
           "opens": None, "clicks": clicks, "conversions": None,
           "sent_at": sent_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "test_week": int(rec["test_week"]),
           "eyecatcher_id": rec["eyecatcher_id"].strip() or None, "winner": _winner(path, n, rec["winner"])}
    try:
        PastPush.model_validate(out)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        fld = SOURCE_FIELD.get(loc[0], loc[0]) if loc else None
        raise DataError(str(path), n, fld, err.get("msg", "invalid").removeprefix("Value error, ")) from None
    return out


def read_packages(path: Path) -> list[dict[str, Any]]:
    """Every row of the Upworthy CSV as a past push, in file order."""
    if not path.is_file():
        raise DataError(str(path), None, None, "file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DataError(str(path), None, missing[0], f"missing column(s) {', '.join(missing)}; "
                                f"the header has {', '.join(header) or 'nothing'}")
            records = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataError(str(path), None, None, f"malformed CSV: {exc}") from exc
    packages: dict[str, int] = {}
    rows = []
    progress = track(records, description=f"reading {path.name}", console=err_console, transient=True,
                     disable=not err_console.is_terminal)
    for n, rec in enumerate(progress, start=1):
        if None in rec:
            raise DataError(str(path), n, None,
                            f"row has {len(header) + len(rec[None])} cells but the header has {len(header)}")
        short = [c for c in REQUIRED if rec.get(c) is None]
        if short:
            raise DataError(str(path), n, short[0], "row has fewer cells than the header")
        test_id = rec["test_id"].strip()
        packages[test_id] = packages.get(test_id, 0) + 1
        rows.append(convert_row(path, n, rec, packages[test_id]))
    return rows


def summary(rows: list[dict[str, Any]], out: Path) -> Table:
    """Counts of what was imported."""
    tests = {r["group_id"] for r in rows}
    weeks = [r["test_week"] for r in rows]
    sends = sum(r["sends"] for r in rows)
    clicks = sum(r["clicks"] for r in rows)
    lo, hi = UNRELIABLE_WEEKS
    flagged = sum(1 for w in weeks if lo <= w <= hi)
    table = Table(title=f"Upworthy -> {out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("past pushes (packages)", str(len(rows)))
    table.add_row("A/B groups (tests)", str(len(tests)))
    table.add_row("test weeks", f"{min(weeks, default='-')}-{max(weeks, default='-')}")
    table.add_row("sends (impressions)", str(sends))
    table.add_row("clicks", f"{clicks} (CTR {clicks / sends:.2%})" if sends else "0")
    table.add_row("editors' winners", str(sum(1 for r in rows if r["winner"])))
    table.add_row(f"packages in weeks {lo}-{hi} (randomisation problems)", str(flagged))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="the Upworthy CSV (e.g. upworthy_dev.csv)")
    parser.add_argument("--out", type=Path, required=True, help="output file (.csv, .jsonl or .parquet)")
    args = parser.parse_args(argv)
    try:
        if args.out.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise DataError(str(args.out), None, None, f"unsupported output type {args.out.suffix!r}; "
                            f"use one of {', '.join(SUPPORTED_SUFFIXES)}")
        rows = read_packages(args.csv)
        write_table(args.out, rows, COLUMNS)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_console.print("[bold yellow]NOTICE:[/] sent_at is the first day (Sunday, or 1 January for week 00) "
                      "of each test_week at 00:00 UTC; the source has no finer send time.")
    out_console.print(summary(rows, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
