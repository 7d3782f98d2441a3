"""Build a real-catalogue shop from the Amazon "Industrial & Scientific" data, for trying pushgen as a real shop would.

    python scripts/make_amazon_shop.py ../shared/data/amazon_scientific --out DIR [--users N] [--zh-share 0.2]
        [--currency USD] [--locale en_US] [--seed 0]

Real items (titles, brands, category paths), real purchase histories (the train and valid splits, as
``scripts/import_amazon_scientific.py`` rebuilds them) and users; what the source lacks is synthetic and
deterministic (the same for the same ``--seed`` on every machine):

- prices: log-uniform between 4 and ``--max-price`` (400) dollars' worth in the shop's currency, ending in .99,
  .49 or .00 (rupee and yen prices are whole, as shoppers there see them: ₹1,399);
- discounts: about 40% of the items are on sale, 5-60% off, with sale prices ending like list prices (so the
  rounding of the percentage matters: 12.21 → 6.11 is 50% off, not 49%);
- stock: about 92% in stock; locales: ``--zh-share`` of the users read Chinese (zh_CN), the rest ``--locale``.

A ``README.md`` in ``DIR`` says all of this. Nothing is written unless everything parses (see the importer).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from import_amazon_scientific import build_tables, read_source, sequences, write_tables

from generator.core.data import unit_interval
from generator.core.errors import DataError

WHOLE_CURRENCIES = {"INR", "JPY", "KRW", "IDR", "VND"}
RATES = {"USD": 1, "EUR": 1, "GBP": 1, "CNY": 7, "INR": 80, "JPY": 150}  # rough scale of a price, not a rate


def _price(asin: str, seed: int, currency: str, top: float = 400) -> Decimal:
    scale = RATES.get(currency, 1)
    raw = math.exp(math.log(4) + unit_interval(f"price{seed}", asin) * (math.log(top) - math.log(4))) * scale
    if currency in WHOLE_CURRENCIES:
        step = 100 if raw > 1000 else 10
        return Decimal(max(step, int(raw / step) * step) - 1)  # ₹1,399, ₹899, ₹99
    ending = (Decimal("0.99"), Decimal("0.49"), Decimal("0.00"))[int(unit_interval(f"end{seed}", asin) * 3)]
    return Decimal(int(raw)) + ending


def _sale(asin: str, price: Decimal, seed: int, currency: str) -> Decimal | None:
    if unit_interval(f"sale{seed}", asin) >= 0.4:
        return None
    off = 0.05 + unit_interval(f"off{seed}", asin) * 0.55
    sale = price * Decimal(str(1 - off))
    if currency in WHOLE_CURRENCIES:
        return max(Decimal(1), sale.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    cents = (Decimal("0.99"), Decimal("0.49"), Decimal("0.11"))[int(unit_interval(f"cents{seed}", asin) * 3)]
    sale = Decimal(int(sale)) + cents
    return sale if Decimal("0.5") <= sale < price else None


def price_items(items: list[dict[str, str]], seed: int, currency: str, top: float = 400) -> None:
    """Give every item its synthetic price, discount and stock, in place."""
    for row in items:
        asin = row["item_id"]
        price = _price(asin, seed, currency, top)
        sale = _sale(asin, price, seed, currency)
        row.update(price=str(price), sale_price="" if sale is None else str(sale), currency=currency,
                   in_stock="true" if unit_interval(f"stock{seed}", asin) < 0.92 else "false")


def pick_users(tables: dict[str, list[dict[str, str]]], n: int | None, zh_share: float, locale: str,
               seed: int) -> None:
    """Keep ``n`` users with a history (a deterministic sample), their events, and give them locales."""
    with_events = {e["user_id"] for e in tables["events"]}
    users = sorted((u for u in tables["users"] if u["user_id"] in with_events),
                   key=lambda u: unit_interval(f"user{seed}", u["user_id"]))
    users = users[:n] if n else users
    for u in users:
        zh = unit_interval(f"zh{seed}", u["user_id"]) < zh_share
        u.update(locale="zh_CN" if zh else locale, timezone="Asia/Shanghai" if zh else "UTC")
    keep = {u["user_id"] for u in users}
    tables["users"] = sorted(users, key=lambda u: u["user_id"])
    tables["events"] = [e for e in tables["events"] if e["user_id"] in keep]


README = """# Amazon Industrial & Scientific shop (built by scripts/make_amazon_shop.py)

Real item titles, brands and category paths and real purchase histories (Amazon Review Data 2018, Ni, Li,
McAuley; UniSRec preprocessing; research use). Built with: `{command}`.

Synthetic and deterministic (seed {seed}): prices (log-uniform 4-{top:g} dollars' worth, in {currency}),
sale prices (about 40% of items, 5-60% off), stock (about 92% in stock), user locales ({zh_share:.0%} zh_CN,
the rest {locale}) and event timestamps (one day per position in a user's sequence; only the order is real).
Do not read the prices as Amazon's.

{users} users, {items} items, {events} purchase events.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder with the Scientific.* files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (the shop)")
    parser.add_argument("--users", type=int, default=None, help="keep this many users (default: all with a history)")
    parser.add_argument("--zh-share", type=float, default=0.2, help="share of users with locale zh_CN")
    parser.add_argument("--currency", default="USD", help="the shop's currency (ISO code)")
    parser.add_argument("--locale", default="en_US", help="locale of the other users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-price", type=float, default=400,
                        help="top of the price range, in dollars' worth (rupee prices are 80x: 2000 gives ₹1,59,999)")
    args = parser.parse_args(argv)
    if args.users is not None and args.users < 1 or not 0 <= args.zh_share <= 1:
        print("error: --users must be >= 1 and --zh-share between 0 and 1", file=sys.stderr)
        return 2
    try:
        src, paths = read_source(args.folder)
        tables = build_tables(src, sequences(src, paths))
        price_items(tables["items"], args.seed, args.currency.upper(), args.max_price)
        pick_users(tables, args.users, args.zh_share, args.locale, args.seed)
        write_tables(tables, args.out, "csv")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python scripts/make_amazon_shop.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (args.out / "README.md").write_text(README.format(
        command=command, seed=args.seed, top=args.max_price, currency=args.currency.upper(), zh_share=args.zh_share,
        locale=args.locale, users=len(tables["users"]), items=len(tables["items"]), events=len(tables["events"])),
        encoding="utf-8")
    print(f"{args.out}: {len(tables['users'])} users, {len(tables['items'])} items, "
          f"{len(tables['events'])} events ({args.currency.upper()}, {args.zh_share:.0%} zh_CN)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
