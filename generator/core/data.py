"""Data contracts: catalog items, users, events, reviews and past pushes.

Each kind is a typed pydantic model. Files are CSV, JSONL or Parquet (chosen by extension). A bad row stops
the load with a :class:`~generator.core.errors.DataError` naming file, row and field; ``skip_invalid=True`` skips
bad rows and reports them instead. Writers are atomic: a file is either written whole or not at all.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from generator.core.errors import DataError
from generator.core.formatting import discount_percent
from generator.core.inputs import InputError, check_locale, check_value, misspelt_key
from generator.core.names import short_name


def unit_interval(salt: object, key: str) -> float:
    """A number in [0, 1) fixed by (salt, key): the first 8 bytes of SHA-256 over ``salt:key``. pushgen's one way
    to split or bucket by id (experiment arms, held-out groups and users), the same on every machine and process
    (never Python's ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (read in 1 MiB blocks): what trained models record of their data."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


SUPPORTED_SUFFIXES = (".csv", ".jsonl", ".parquet")
_UMASK = os.umask(0o022)  # read once: written tables get normal permissions, not mkstemp's 0600
os.umask(_UMASK)


class Contract(BaseModel):
    """Base of every row model: strict about unknown columns' types, trims strings, empty string = missing."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore", frozen=True)
    kind: ClassVar[str] = "row"

    @model_validator(mode="before")
    @classmethod
    def _empty_is_missing(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
        return data


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class Item(Contract):
    """A catalog item. ``sale_price`` (when set) is the current discounted price."""

    kind: ClassVar[str] = "items"
    item_id: str = Field(min_length=1)
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    category: str = ""
    brand: str = ""
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    sale_price: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    in_stock: bool
    url: str = Field(min_length=1)
    image_url: str = ""
    short_name: str = Field(default="", max_length=60,
                            description="What a push calls the item (\"Gorilla Glue\"); derived from the title "
                            "and brand when empty (generator.core.names.short_name).")
    stated_discount_pct: int | None = Field(default=None, ge=1, le=99,
                                            description="The catalog's own stated discount, when it has one.")

    @field_validator("sale_price")
    @classmethod
    def _sale_below_price(cls, v: Decimal | None, info: Any) -> Decimal | None:
        price = info.data.get("price")
        if v is not None and price is not None and v > price:
            raise ValueError(f"sale_price {v} is above price {price}")
        return v

    @property
    def current_price(self) -> Decimal:
        return self.sale_price if self.sale_price is not None else self.price

    @property
    def discount_pct(self) -> int | None:
        """Whole-percent discount: the catalog's stated one, else half-up rounding of what a shopper computes
        from ``price`` and ``sale_price`` (:func:`generator.core.formatting.discount_percent`, the one rule)."""
        if self.sale_price is None:
            return None
        return discount_percent(self.price, self.sale_price, self.stated_discount_pct)

    @property
    def display_name(self) -> str:
        """The name copy uses: the catalog's ``short_name``, else one derived from title and brand."""
        return self.short_name or short_name(self.title, self.brand, self.category)

    def text(self) -> str:
        """The text the scorer embeds: title, category, brand and description."""
        parts = [self.title, self.category, self.brand, self.description]
        return ". ".join(p for p in parts if p)


def language_of(locale: str) -> str:
    """The language part of a locale: ``zh`` for ``zh_CN`` or ``zh-CN``."""
    return locale.replace("-", "_").split("_")[0]


class User(Contract):
    kind: ClassVar[str] = "users"
    user_id: str = Field(min_length=1)
    locale: str = Field(default="en_US", pattern=r"^[a-z]{2,3}([_-][A-Za-z]{2,4})?$")
    timezone: str = "UTC"
    push_opt_in: bool = True

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, v: str) -> str:
        return check_locale(v)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @property
    def language(self) -> str:
        return language_of(self.locale)


class EventType(StrEnum):
    view = "view"
    cart = "cart"
    purchase = "purchase"
    wishlist = "wishlist"
    click = "click"


class Event(Contract):
    kind: ClassVar[str] = "events"
    user_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    event_type: EventType
    timestamp: datetime

    _tz = field_validator("timestamp")(lambda cls, v: _aware(v))


class Review(Contract):
    kind: ClassVar[str] = "reviews"
    user_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    rating: int = Field(ge=1, le=5)
    text: str = ""
    timestamp: datetime

    _tz = field_validator("timestamp")(lambda cls, v: _aware(v))


class PastPush(Contract):
    """A push that was sent before, with how it performed. ``impressions`` is accepted for ``sends``."""

    kind: ClassVar[str] = "pushes"
    push_id: str = Field(min_length=1)
    group_id: str = Field(min_length=1)
    campaign_type: str = Field(default="generic", min_length=1)
    title: str | None = None
    body: str | None = None
    locale: str = "en_US"
    item_id: str | None = None
    sends: int = Field(ge=0)
    opens: int | None = Field(default=None, ge=0)
    clicks: int = Field(ge=0)
    conversions: int | None = Field(default=None, ge=0)
    sent_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _impressions_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sends" not in data and "impressions" in data:
            data = {**data, "sends": data["impressions"]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PastPush:
        if not self.title and not self.body:
            raise ValueError("title: a push needs a title or a body")
        if self.clicks > self.sends:
            raise ValueError(f"clicks: {self.clicks} clicks exceed {self.sends} sends")
        return self

    _tz = field_validator("sent_at")(lambda cls, v: _aware(v))

    @property
    def ctr(self) -> float:
        return self.clicks / self.sends if self.sends else 0.0


CONTRACTS: dict[str, type[Contract]] = {c.kind: c for c in (Item, User, Event, Review, PastPush)}
C = TypeVar("C", bound=Contract)


@dataclass
class LoadResult(Generic[C]):
    """Rows that passed validation, and ``(row, message)`` for those skipped with ``skip_invalid``."""

    rows: list[C]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # the file row of each kept row


def _read_raw(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, record)``; row numbers are 1-based data rows (the CSV header is not a row). A file that
    cannot be read as its format (a folder, bytes that are not UTF-8, broken CSV quoting) or a value outside the
    input limits (:func:`generator.core.inputs.check_value`) is a :class:`DataError` naming the file and row."""
    if path.is_dir():
        raise DataError(str(path), None, None, "is a folder, not a file")
    n = 0
    try:
        for n, rec in _read_rows(path):
            try:
                check_value(rec)
            except InputError as exc:
                field, _, problem = str(exc).partition(": ")
                raise DataError(str(path), n, field or None, problem) from None
            yield n, rec
    except UnicodeDecodeError:
        raise DataError(str(path), n + 1, None, "not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError(str(path), n + 1, None, f"not valid CSV: {exc}") from None
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read: {exc.strerror or exc}") from None


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is not in the header
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise DataError(str(path), None, None, "empty file: no header row")
            for n, rec in enumerate(reader, start=1):
                if None in rec:  # more cells than header columns
                    raise DataError(str(path), n, None, f"row has {len(reader.fieldnames) + len(rec[None])} "
                                    f"cells but the header has {len(reader.fieldnames)}")
                yield n, rec
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8-sig") as fh:
            n = 0
            for line in fh:
                if not line.strip():
                    continue
                n += 1
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(str(path), n, None, f"invalid JSON: {exc.msg}") from exc
                if not isinstance(rec, dict):
                    raise DataError(str(path), n, None, "each line must be a JSON object")
                yield n, rec
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(str(path), None, None, f"cannot read Parquet: {exc}") from exc
        for n, rec in enumerate(table.to_pylist(), start=1):
            yield n, rec
    else:
        raise DataError(str(path), None, None, f"unsupported file type {suffix!r}; use one of {SUPPORTED_SUFFIXES}")


def _describe(exc: ValidationError) -> tuple[str | None, str]:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
    msg = err.get("msg", "invalid")
    if not loc and ":" in msg:  # model-level validators put the field first: "title: ..."
        head, _, rest = msg.removeprefix("Value error, ").partition(":")
        if head.isidentifier():
            return head, rest.strip()
    return (loc[0] if loc else None), msg.removeprefix("Value error, ")


def _check_columns(path: Path, contract: type[Contract], record: dict[str, Any]) -> None:
    """Extra columns are allowed (exports carry more than pushgen reads), but one that looks like a misspelt
    contract column which the file lacks (``push_optin``) is an error: its value would be silently ignored."""
    for column in record:
        meant = misspelt_key(str(column), contract.model_fields, present=record)
        if meant:
            raise DataError(str(path), None, str(column), f"unknown column; did you mean {meant!r}?")


def load_table(path: str | Path, contract: type[C], *, skip_invalid: bool = False) -> LoadResult[C]:
    """Read and validate every row of ``path`` against ``contract``.

    Raises :class:`DataError` (file, row, field) on the first bad row unless ``skip_invalid`` is set.
    Duplicate primary keys (``item_id`` for items, ``user_id`` for users, ``push_id`` for pushes) are errors.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, None, "file not found")
    key = {"items": "item_id", "users": "user_id", "pushes": "push_id"}.get(contract.kind)
    seen: dict[str, int] = {}
    result: LoadResult[C] = LoadResult(rows=[])
    for n, rec in _read_raw(path):
        if not result.rows and not result.skipped:
            _check_columns(path, contract, rec)
        try:
            row = contract.model_validate(rec)
            if key:
                k = getattr(row, key)
                if k in seen:
                    raise DataError(str(path), n, key, f"duplicate {key} {k!r} (first on row {seen[k]})")
                seen[k] = n
        except ValidationError as exc:
            fld, msg = _describe(exc)
            err = DataError(str(path), n, fld, msg)
            if not skip_invalid:
                raise err from None
            result.skipped.append((n, str(err)))
            continue
        except DataError as err:
            if not skip_invalid:
                raise
            result.skipped.append((n, str(err)))
            continue
        result.rows.append(row)
        result.numbers.append(n)
    return result


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, StrEnum):
        return v.value
    return v


def write_table(path: str | Path, rows: Sequence[Contract] | Iterable[dict[str, Any]],
                columns: Sequence[str] | None = None) -> Path:
    """Write rows (contract models or dicts) to CSV/JSONL/Parquet atomically (temp file, then rename)."""
    path = Path(path)
    recs = [r.model_dump() if isinstance(r, BaseModel) else dict(r) for r in rows]
    recs = [{k: _jsonable(v) for k, v in r.items()} for r in recs]
    if columns is None:
        columns = list(recs[0].keys()) if recs else []
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
                w.writeheader()
                for r in recs:
                    w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
        elif suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for r in recs:
                    fh.write(json.dumps({k: r.get(k) for k in columns}, ensure_ascii=False) + "\n")
        elif suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in recs]), tmp)
        else:
            raise DataError(str(path), None, None, f"unsupported file type {suffix!r}")
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def split_by_group(path: str | Path, train_out: str | Path, heldout_out: str | Path, *, fraction: float = 0.2,
                   salt: str = "pushgen-split", key: str = "group_id") -> tuple[int, int]:
    """Split a table into two files by group (every row of a group lands on the same side), keeping all columns.
    A group is held out when a stable hash of ``salt`` and its id falls below ``fraction``, so the same
    groups are held out on every machine and for any file that holds them. Returns the row counts."""
    if not 0 < fraction < 1:
        raise DataError(str(path), None, None, f"fraction must be between 0 and 1, not {fraction}")
    path = Path(path)
    train, held = [], []
    columns: list[str] = []
    for n, rec in _read_raw(path):
        if not rec.get(key):
            raise DataError(str(path), n, key, "missing: every row needs a group")
        columns = columns or list(rec)
        # blake2b, not unit_interval's sha256: changing the digest would move every split already published
        digest = hashlib.blake2b(f"{salt}:{rec[key]}".encode(), digest_size=8).digest()
        (held if int.from_bytes(digest, "big") / 2**64 < fraction else train).append(rec)
    write_table(train_out, train, columns)
    write_table(heldout_out, held, columns)
    return len(train), len(held)


def find_table(folder: Path, name: str) -> Path | None:
    """``folder/name.{csv,jsonl,parquet}``, whichever exists first."""
    for suffix in SUPPORTED_SUFFIXES:
        p = folder / f"{name}{suffix}"
        if p.exists():
            return p
    return None


@dataclass
class Shop:
    """A whole shop's data, with cross-file references checked."""

    items: list[Item]
    users: list[User]
    events: list[Event]
    reviews: list[Review]
    pushes: list[PastPush]
    skipped: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    @property
    def items_by_id(self) -> dict[str, Item]:
        return {i.item_id: i for i in self.items}


def load_shop(folder: str | Path, *, skip_invalid: bool = False) -> Shop:
    """Load ``items``, ``users``, ``events``, ``reviews`` and (optional) ``pushes`` tables from ``folder``.

    Events and reviews must refer to known users and items; a dangling reference is a :class:`DataError`
    naming the file, row and field (or is skipped with ``skip_invalid``).
    """
    folder = Path(folder)
    tables: dict[str, Any] = {}
    skipped: dict[str, list[tuple[int, str]]] = {}
    for kind, contract, required in (("items", Item, True), ("users", User, True), ("events", Event, True),
                                      ("reviews", Review, False), ("pushes", PastPush, False)):
        p = find_table(folder, kind)
        if p is None:
            if required:
                raise DataError(str(folder / f"{kind}.csv"), None, None,
                                f"missing {kind} table (.csv, .jsonl or .parquet)")
            tables[kind] = []
            continue
        res = load_table(p, contract, skip_invalid=skip_invalid)
        tables[kind], skipped[kind] = res.rows, res.skipped
        tables[f"{kind}_path"], tables[f"{kind}_numbers"] = p, res.numbers
    item_ids = {i.item_id for i in tables["items"]}
    user_ids = {u.user_id for u in tables["users"]}
    for kind in ("events", "reviews"):
        if not tables[kind]:
            continue
        kept = []
        for n, row in zip(tables[f"{kind}_numbers"], tables[kind], strict=True):
            problem = None
            if row.user_id not in user_ids:
                problem = ("user_id", f"unknown user_id {row.user_id!r} (not in the users table)")
            elif row.item_id not in item_ids:
                problem = ("item_id", f"unknown item_id {row.item_id!r} (not in the items table)")
            if problem:
                err = DataError(str(tables[f"{kind}_path"]), n, problem[0], problem[1])
                if not skip_invalid:
                    raise err
                skipped.setdefault(kind, []).append((n, str(err)))
            else:
                kept.append(row)
        tables[kind] = kept
    return Shop(items=tables["items"], users=tables["users"], events=tables["events"],
                reviews=tables["reviews"], pushes=tables["pushes"], skipped=skipped)


ContractKind = Literal["items", "users", "events", "reviews", "pushes"]


def erase_user_rows(folder: str | Path, user_id: str, kinds: Sequence[str] = ("events", "reviews")) -> dict[str, int]:
    """Remove every row of ``user_id`` from the shop's ``kinds`` tables (privacy erasure); returns rows removed
    per kind. Each file is rewritten atomically, the others' rows left as they were; concurrent erasures in one
    folder take turns under a file lock."""
    from filelock import FileLock

    folder = Path(folder)
    removed: dict[str, int] = {}
    with FileLock(str(folder / ".erase.lock")):
        for kind in kinds:
            path = find_table(folder, kind)
            if path is None:
                removed[kind] = 0
                continue
            rows = [rec for _, rec in _read_raw(path)]
            kept = [rec for rec in rows if str(rec.get("user_id")) != user_id]
            removed[kind] = len(rows) - len(kept)
            if removed[kind]:
                write_table(path, kept, columns=list(rows[0].keys()))
    return removed


_SHOPS: dict[str, tuple[tuple[int, ...], Shop]] = {}


def cached_shop(folder: str | Path) -> Shop:
    """The shop in ``folder``, loaded once per process and again whenever one of its files changes (an erasure
    rewrites the events and reviews, and no worker may keep using the old rows)."""
    folder = Path(folder)
    stamp = tuple(p.stat().st_mtime_ns for p in sorted(folder.iterdir()) if p.is_file())
    hit = _SHOPS.get(str(folder))
    if hit is None or hit[0] != stamp:
        _SHOPS[str(folder)] = (stamp, load_shop(folder))
        # the shop's rows live as long as the process: out of the cyclic collector's sight, each full collection
        # (one per chunk or so) no longer walks millions of events (1.7 s at 100,000 users); refcounting frees
        # them as before once a changed shop replaces them
        gc.freeze()
    return _SHOPS[str(folder)][1]
