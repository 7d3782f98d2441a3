"""Guardrails: named checks that every candidate message must pass before anyone may send it.

Each check returns a :class:`CheckResult` (name, passed, reason). Lengths are counted in grapheme clusters
(what a person sees as one character: an emoji with modifiers, a Chinese character), and the whole push
payload is measured in bytes after JSON encoding, as FCM and APNs do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation

import regex

from generator.data import Item
from generator.prompts import CURRENCY_SYMBOLS

MAX_PAYLOAD_BYTES = 4096


@dataclass(frozen=True)
class PlatformLimits:
    """Visible-length limits, in grapheme clusters, before a platform truncates the text."""

    title: int
    body: int


PLATFORMS: dict[str, PlatformLimits] = {
    # iOS lock screen shows about this much of a title and four lines of body; Android about 65 / 240.
    "ios": PlatformLimits(title=50, body=150),
    "android": PlatformLimits(title=65, body=240),
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class GuardContext:
    """What the copy may claim: the user's ranked items (the featured one first) and the campaign's facts."""

    items: Sequence[Item]
    locale: str = "en_US"
    platforms: Sequence[str] = ("ios", "android")
    extra_percentages: set[int] = field(default_factory=set)  # e.g. a coupon's discount

    @property
    def allowed_amounts(self) -> dict[Decimal, set[str]]:
        out: dict[Decimal, set[str]] = {}
        for it in self.items:
            for amount in (it.price, it.sale_price):
                if amount is not None:
                    out.setdefault(Decimal(amount).quantize(Decimal("0.01")), set()).add(it.currency)
        return out

    @property
    def allowed_percentages(self) -> set[int]:
        return {it.discount_pct for it in self.items if it.discount_pct} | self.extra_percentages


def graphemes(text: str) -> int:
    """Length in user-perceived characters (extended grapheme clusters)."""
    return len(regex.findall(r"\X", text))


_SYMBOL_CURRENCIES: dict[str, set[str]] = {}
for _code, _sym in CURRENCY_SYMBOLS.items():
    _SYMBOL_CURRENCIES.setdefault(_sym, set()).add(_code)
_SYMBOL_CURRENCIES["￥"] = {"CNY", "JPY"}
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_MONEY_BEFORE = regex.compile(rf"(?P<sym>[$€£¥￥])\s?(?P<num>{_NUMBER})")
_MONEY_AFTER = regex.compile(rf"(?<![\d.])(?P<num>{_NUMBER})\s?(?P<code>[A-Z]{{3}}\b|元|美元|欧元|英镑|dollars?\b)",
                             regex.I)
_BARE_DECIMAL = regex.compile(r"(?<![\d.,$€£¥￥])\d+\.\d{2}(?![\d%])")
_PERCENT = regex.compile(r"(?P<num>\d+(?:\.\d+)?)\s?(?:%|％|percent\b|per cent\b)", regex.I)
_WORDS_CURRENCY = {"元": {"CNY"}, "美元": {"USD"}, "欧元": {"EUR"}, "英镑": {"GBP"}, "dollar": {"USD"},
                   "dollars": {"USD"}}


def _amount(num: str) -> Decimal | None:
    try:
        return Decimal(num.replace(",", "")).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None


def money_mentions(text: str) -> list[tuple[Decimal, set[str], str]]:
    """Every amount of money in ``text`` as ``(amount, possible currencies, matched text)``."""
    found: list[tuple[Decimal, set[str], str]] = []
    spans: list[tuple[int, int]] = []
    for m in _MONEY_BEFORE.finditer(text):
        amt = _amount(m["num"])
        if amt is not None:
            found.append((amt, _SYMBOL_CURRENCIES.get(m["sym"], set()), m[0]))
            spans.append(m.span())
    for m in _MONEY_AFTER.finditer(text):
        amt, code = _amount(m["num"]), m["code"]
        if amt is None or any(a <= m.start() < b for a, b in spans):
            continue
        currencies = _WORDS_CURRENCY.get(code.lower(), {code.upper()})
        found.append((amt, currencies, m[0]))
        spans.append(m.span())
    for m in _BARE_DECIMAL.finditer(text):  # "now 19.99": an amount with no currency at all
        if not any(a <= m.start() < b for a, b in spans):
            amt = _amount(m[0])
            if amt is not None:
                found.append((amt, set(), m[0]))
    return found


# --- checks -------------------------------------------------------------------------------------------------

def check_lengths(title: str, body: str, ctx: GuardContext) -> list[CheckResult]:
    out = []
    for part, text in (("title", title), ("body", body)):
        n = graphemes(text)
        limit = min(PLATFORMS[p].__getattribute__(part) for p in ctx.platforms)
        if n == 0:
            out.append(CheckResult(f"{part}_length", False, f"{part} is empty"))
        elif n > limit:
            out.append(CheckResult(f"{part}_length", False, f"{part} has {n} characters, limit {limit}"))
        else:
            out.append(CheckResult(f"{part}_length", True))
    return out


def push_payloads(title: str, body: str, deep_link: str = "") -> dict[str, dict[str, object]]:
    """The FCM HTTP v1 and APNs payloads this copy would travel in (minimal form)."""
    data = {"deep_link": deep_link} if deep_link else {}
    return {
        "fcm": {"message": {"notification": {"title": title, "body": body}, "data": data}},
        "apns": {"aps": {"alert": {"title": title, "body": body}, "sound": "default"}, **data},
    }


def check_payload_size(title: str, body: str, ctx: GuardContext, deep_link: str = "") -> CheckResult:
    sizes = {k: len(json.dumps(v, ensure_ascii=False).encode("utf-8"))
             for k, v in push_payloads(title, body, deep_link).items()}
    worst = max(sizes, key=sizes.__getitem__)
    if sizes[worst] > MAX_PAYLOAD_BYTES:
        return CheckResult("payload_size", False, f"{worst} payload is {sizes[worst]} bytes, limit {MAX_PAYLOAD_BYTES}")
    return CheckResult("payload_size", True)


def check_prices(title: str, body: str, ctx: GuardContext) -> CheckResult:
    allowed = ctx.allowed_amounts
    for amount, currencies, matched in money_mentions(f"{title}\n{body}"):
        if amount not in allowed:
            return CheckResult("prices", False, f"price {matched!r} matches no item's price")
        if currencies and not currencies & allowed[amount]:
            return CheckResult("prices", False,
                               f"price {matched!r} has the wrong currency (item is in {sorted(allowed[amount])[0]})")
    return CheckResult("prices", True)


def check_percentages(title: str, body: str, ctx: GuardContext) -> CheckResult:
    allowed = ctx.allowed_percentages
    for m in _PERCENT.finditer(f"{title}\n{body}"):
        value = Decimal(m["num"])
        if value != value.to_integral_value() or int(value) not in allowed:
            why = f"allowed: {sorted(allowed)}" if allowed else "no item is discounted"
            return CheckResult("percentages", False, f"discount {m[0]!r} is not the real one ({why})")
    return CheckResult("percentages", True)


_STOP = {"the", "and", "for", "with", "set", "pack", "of", "in", "a", "an", "to", "by", "on"}


def _content_words(text: str) -> list[str]:
    return [w for w in regex.findall(r"[\p{L}\p{N}]+", text.lower()) if len(w) > 2 and w not in _STOP]


def mentions_item(text: str, item: Item) -> bool:
    """Whether ``text`` names ``item``: its full title, or at least half of its title's content words
    (and at least two of them), e.g. "Summit water bottle" for "Summit Insulated Water Bottle 750ml"."""
    low = text.lower()
    if item.title.lower() in low:
        return True
    words = _content_words(item.title)
    present = set(_content_words(text))
    hits = sum(1 for w in words if w in present)
    return bool(words) and hits >= min(2, len(words)) and hits * 2 >= len(words)


def check_mentions_item(title: str, body: str, ctx: GuardContext) -> CheckResult:
    text = f"{title}\n{body}"
    if any(mentions_item(text, it) for it in ctx.items):
        return CheckResult("mentions_item", True)
    return CheckResult("mentions_item", False, "the copy names none of the user's ranked items")


_HAN = regex.compile(r"\p{Han}")


def check_well_formed(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No broken characters (a multi-byte character cut in half decodes to U+FFFD) or control characters."""
    text = f"{title}{body}"
    if "\ufffd" in text:
        return CheckResult("well_formed", False, "contains a broken character (U+FFFD)")
    if regex.search(r"[\p{Cc}\p{Cs}\p{Co}]", text):
        return CheckResult("well_formed", False, "contains control or private-use characters")
    return CheckResult("well_formed", True)


def check_language(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy is written in the user's language, judged by script: Chinese copy is mostly Han characters
    (product names may stay in Latin letters), other locales' copy has no Han characters."""
    text = f"{title} {body}"
    han = len(_HAN.findall(text))
    latin_words = len(regex.findall(r"\p{Latin}+", text))
    lang = ctx.locale.replace("-", "_").split("_")[0]
    if lang == "zh":
        if han == 0 or han < latin_words:
            return CheckResult("language", False, f"locale {ctx.locale} needs Chinese copy: {han} Han characters, "
                                                  f"{latin_words} Latin words")
    elif han:
        return CheckResult("language", False, f"locale {ctx.locale} but the copy has {han} Han characters")
    return CheckResult("language", True)


Check = Callable[[str, str, GuardContext], CheckResult | list[CheckResult]]
DEFAULT_CHECKS: tuple[Check, ...] = (check_lengths, check_payload_size, check_well_formed, check_language,
                                     check_prices, check_percentages, check_mentions_item)


def run_checks(title: str, body: str, ctx: GuardContext,
               checks: Sequence[Check] = DEFAULT_CHECKS) -> list[CheckResult]:
    """Run every check; the message passes when all results pass."""
    results: list[CheckResult] = []
    for check in checks:
        r = check(title, body, ctx)
        results.extend(r if isinstance(r, list) else [r])
    return results


def failures(results: Sequence[CheckResult]) -> list[str]:
    return [f"{r.name}: {r.reason}" for r in results if not r.passed]
