"""Money, percentages, counts and dates written the way each shopper reads them, and read back.

One layer on Babel (CLDR data), used by the prompts, the fallback copy, the guardrails and the review pages:

- :func:`format_money` writes an amount in the shop's currency for the user's locale: symbol and its place,
  grouping (Indian lakh/crore in ``en_IN``: ₹1,23,456), decimals only when the price has them (₹1,399, $19.99).
- :func:`money_mentions` finds every amount of money in a text, in any locale's notation (₹1,399, 1,399 元,
  1.399,00 €, 1 399 €, US$19.99, Rs. 1,399), with the currencies it may be in and every reading of its number.
- :func:`percent_mentions` finds percentages (15%, 15 %, 15 percent, and the Chinese 85折 = 15% off).
- :func:`discount_percent` is the one discount rule: half-up rounding of what the shopper computes.

Unknown locales fall back to the shop's default (``Settings.default_locale``) with one warning per locale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

import regex
from babel import Locale, UnknownLocaleError
from babel.dates import format_date as _babel_date
from babel.numbers import format_currency, format_decimal, format_percent, get_currency_symbol

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
# The currencies whose symbols the parser knows in every locale below (any ISO code is known as a code).
KNOWN_CURRENCIES = ("USD", "EUR", "GBP", "CNY", "JPY", "INR", "CAD", "AUD", "HKD", "TWD", "KRW", "SGD", "CHF",
                    "SEK", "NOK", "DKK", "PLN", "BRL", "MXN", "RUB", "TRY", "ZAR", "NZD", "THB", "IDR", "VND")
_SYMBOL_LOCALES = ("en_US", "en_GB", "en_IN", "en_AU", "en_CA", "zh_CN", "zh_TW", "zh_HK", "ja_JP", "ko_KR",
                   "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL", "sv_SE", "hi_IN", "ru_RU", "pl_PL")
# words shoppers write for a currency, beside the symbols CLDR gives
_CURRENCY_WORDS: dict[str, set[str]] = {
    "元": {"CNY"}, "块": {"CNY"}, "人民币": {"CNY"}, "美元": {"USD"}, "欧元": {"EUR"}, "英镑": {"GBP"},
    "日元": {"JPY"}, "円": {"JPY"}, "卢比": {"INR"}, "港元": {"HKD"}, "rs": {"INR"}, "rs.": {"INR"},
    "rupee": {"INR"}, "rupees": {"INR"}, "dollar": {"USD", "CAD", "AUD", "HKD", "SGD", "NZD"},
    "dollars": {"USD", "CAD", "AUD", "HKD", "SGD", "NZD"}, "euro": {"EUR"}, "euros": {"EUR"},
    "yuan": {"CNY"}, "rmb": {"CNY"}, "yen": {"JPY"},
}


@lru_cache(maxsize=256)
def _locale(locale: str) -> Locale | None:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def is_known_locale(locale: str) -> bool:
    """Whether CLDR knows ``locale`` (``en_IN``, ``zh-CN``, ``de``)."""
    return _locale(locale) is not None


@lru_cache(maxsize=256)
def resolve_locale(locale: str, default: str = "en_US") -> Locale:
    """The Babel locale for ``locale``; an unknown one falls back to ``default`` with a warning (once)."""
    found = _locale(locale)
    if found is None:
        log.warning("unknown locale %r: formatting for the shop's default %r", locale, default)
        found = _locale(default) or Locale.parse("en_US")
    return found


def _quantized(amount: Decimal | int | float | str) -> Decimal:
    return Decimal(str(amount)).quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(amount: Decimal | int | float | str, currency: str, locale: str, default: str = "en_US") -> str:
    """``amount`` of ``currency`` as a shopper of ``locale`` writes it, decimals only when it has cents:
    ``format_money(1399, "INR", "en_IN") == "₹1,399"``, ``format_money(123456, "INR", "en_IN") == "₹1,23,456"``,
    ``format_money(Decimal("19.99"), "USD", "en_US") == "$19.99"``, ``format_money(1399, "EUR", "de_DE")`` is
    ``"1.399 €"`` (with a no-break space)."""
    value = _quantized(amount)
    loc = resolve_locale(locale, default)
    if value == value.to_integral_value():
        pattern = loc.currency_formats["standard"].pattern
        whole = regex.sub(r"\.0+", "", pattern)
        return format_currency(value, currency, format=whole, locale=loc, currency_digits=False)
    return format_currency(value, currency, locale=loc)


def format_pct(value: int | float | Decimal, locale: str, default: str = "en_US") -> str:
    """A whole percentage as ``locale`` writes it: ``15%`` (en), ``15 %`` (de, fr: no-break space)."""
    return format_percent(Decimal(str(value)) / 100, locale=resolve_locale(locale, default))


def format_count(value: int | float | Decimal, locale: str, default: str = "en_US") -> str:
    """A count with the locale's grouping: ``1,000`` (en), ``1.000`` (de), ``1,000`` (zh)."""
    return format_decimal(value, locale=resolve_locale(locale, default))


def format_day(value: date | datetime | str, locale: str, default: str = "en_US") -> str:
    """A date as ``locale`` writes it in running text: ``Dec 5, 2026`` (en_US), ``5 Dec 2026`` (en_GB),
    ``2026年12月5日`` (zh)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _babel_date(value, format="medium", locale=resolve_locale(locale, default))


def discount_percent(price: Decimal, sale_price: Decimal | None, stated: int | None = None) -> int | None:
    """The one discount rule: the catalog's stated percentage when it has one, else half-up rounding of what
    the shopper computes ((price - sale) / price: 990 → 466 is 52.93% off → 53; 12.21 → 6.11 is 49.96% → 50).
    None when there is no discount or it rounds to 0."""
    if stated is not None:
        return stated or None
    if sale_price is None or price <= 0 or sale_price >= price:
        return None
    pct = ((price - sale_price) * 100 / price).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(pct) or None


# --- reading amounts back --------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _symbols() -> dict[str, frozenset[str]]:
    """Every currency marker a shopper may read: CLDR symbols of the known currencies in many locales, ISO
    codes, and currency words; each mapped to the currencies it may stand for."""
    out: dict[str, set[str]] = {}
    for code in KNOWN_CURRENCIES:
        out.setdefault(code.lower(), set()).add(code)
        for loc in _SYMBOL_LOCALES:
            sym = get_currency_symbol(code, locale=loc)
            if sym and sym != code:
                out.setdefault(sym.lower(), set()).add(code)
    for extra, codes in {"$": {"USD"}, "¥": {"CNY", "JPY"}, "￥": {"CNY", "JPY"}, "₹": {"INR"}, "€": {"EUR"},
                         "£": {"GBP"}}.items():
        out.setdefault(extra, set()).update(codes)
    for word, codes in _CURRENCY_WORDS.items():
        out.setdefault(word, set()).update(codes)
    return {k: frozenset(v) for k, v in out.items()}


def currencies_of(marker: str) -> frozenset[str]:
    """The currencies a marker (symbol, ISO code or word) may stand for; ISO codes not in the list stand for
    themselves."""
    found = _symbols().get(marker.lower().strip())
    if found is not None:
        return found
    return frozenset({marker.upper()}) if _ISO_CODE.fullmatch(marker) else frozenset()


_ISO_CODE = regex.compile(r"[A-Z]{3}")
_MARKER_REACH = 12  # more than a currency marker's characters and a space (_marker_starts)
_SEP = r"[,.\u00a0\u202f'’ ]"
_SEP_RE = regex.compile(_SEP)
NUMBER = rf"\d+(?:{_SEP}\d{{2,3}})*(?:[.,]\d{{1,2}})?"
_BARE = regex.compile(r"(?<![\d.,])(?:\d+(?:,\d{3})*\.\d{2}|\d{1,3}(?:,\d{3})+)(?![\d%]|[.,]\d)")  # 19.99, 3,942


@lru_cache(maxsize=1)
def _marker_openings() -> regex.Pattern[str]:
    """A character a currency marker may begin with, matched as the markers' patterns match it (case-insensitive)."""
    return regex.compile("[" + "".join(sorted({regex.escape(m[0]) for m in _symbols()})) + "]", regex.I)


@lru_cache(maxsize=1)
def _money_patterns() -> tuple[regex.Pattern[str], regex.Pattern[str]]:
    markers = sorted(_symbols(), key=len, reverse=True)
    symbolic = [regex.escape(m) for m in markers if not regex.fullmatch(r"[a-z.]+", m)]
    wordy = [regex.escape(m) for m in markers if regex.fullmatch(r"[a-z.]+", m)]
    any_marker = "|".join(symbolic + [rf"\b{w}(?!\w)" for w in wordy])
    assert not any(c.isdigit() for c in "".join(markers)) and max(map(len, markers)) + 1 < _MARKER_REACH
    before = regex.compile(rf"(?P<cur>{any_marker})\s?(?P<num>{NUMBER})(?!\d)", regex.I)
    after = regex.compile(rf"(?<![\d.,])(?P<num>{NUMBER})\s?(?P<cur>{any_marker})", regex.I)
    return before, after


@lru_cache(maxsize=1)
def _ascii_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The money patterns and ``_BARE`` in the ``re`` module (a match costs half the regex module's), for ASCII text,
    where they match as the regex module's do: ``\\s`` written as the ASCII characters it matches (``re``'s matches
    more), and no character of a marker outside ASCII matching an ASCII one case-insensitively
    (:func:`_marker_table`); ``\\d``, ``\\w`` and ``\\b`` read ASCII alike."""
    spaces = "[" + "".join(map(re.escape, sorted(_ASCII_SPACE))) + "]"
    for ch in {ch for m in _symbols() for ch in m if not ch.isascii()}:
        assert not any(re.fullmatch(re.escape(ch), chr(c), re.I) for c in range(128)), ch
    out = []
    for p in (*_money_patterns(), _BARE):
        assert "\\\\" not in p.pattern  # every \s is the class
        out.append(re.compile(p.pattern.replace(r"\s", spaces), re.I if p.flags & regex.I else 0))
    return out[0], out[1], out[2]


def readings(number: str) -> set[Decimal]:
    """Every amount a written number may mean in some locale: ``1.399`` is 1399 (de) or not money with three
    decimals; ``1,399`` is 1399; ``13,99`` is 13.99; ``1,23,456`` is 123456; ``1 399,50`` is 1399.50."""
    parts = _SEP_RE.split(number)
    seps = _SEP_RE.findall(number)
    out: set[Decimal] = set()
    if not seps:
        return {Decimal(number).quantize(CENT)}
    # every separator groups digits (the last group has three digits, groups are of 2 or 3: Indian or Western)
    if len(parts[-1]) == 3 and all(len(p) in (2, 3) for p in parts[1:]):
        out.add(Decimal("".join(parts)))
    # the last separator is a decimal point or comma (one or two digits after it), the others group
    if seps[-1] in ",." and len(parts[-1]) in (1, 2) and all(len(p) in (2, 3) for p in parts[1:-1]) \
            and all(s != seps[-1] for s in seps[:-1]):
        try:
            out.add(Decimal("".join(parts[:-1]) + "." + parts[-1]))
        except InvalidOperation:
            pass
    return {x.quantize(CENT) for x in out}


@dataclass(frozen=True)
class MoneyMention:
    """An amount of money found in a text: every reading of its number, the currencies its marker may stand
    for (empty: a bare decimal), and the matched text with its span."""

    amounts: frozenset[Decimal]
    currencies: frozenset[str]
    text: str
    span: tuple[int, int]


def _mention(amounts: frozenset[Decimal], currencies: frozenset[str], text: str,
             span: tuple[int, int]) -> MoneyMention:
    """``MoneyMention(amounts, currencies, text, span)``, its fields put straight into the new instance's ``__dict__``
    (the frozen dataclass's ``__init__`` sets each through ``object.__setattr__``, at three times the cost; it does
    nothing else: no ``__post_init__``, no defaults)."""
    m = _new(MoneyMention)
    fields = m.__dict__
    fields["amounts"] = amounts
    fields["currencies"] = currencies
    fields["text"] = text
    fields["span"] = span
    return m


_new = object.__new__


def money_mentions(text: str) -> list[MoneyMention]:
    """Every amount of money in ``text``, in any locale's notation: a number with a currency marker before
    or after it, or a bare number that looks like a price (``now 19.99``, ``3,942``)."""
    hit = _PARTS.get(text)
    return list(hit if hit is not None else _money_mentions(text))


# amounts of texts read off a text they are part of (money_mentions_of_copy)
_PARTS: dict[str, tuple[MoneyMention, ...]] = {}


def money_mentions_of_copy(title: str, body: str) -> list[MoneyMention]:
    """:func:`money_mentions` of ``title\\nbody``; and, when no match the patterns gave (kept or not) holds the
    newline between them, those of ``title`` and of ``body`` alone, read off it for later calls: the newline reads as
    the text's end to every pattern (no digit, separator, word character or percent sign), and a number or marker
    never spans it but through ``\\s``, which such a match would hold. Those of ``title body`` (a space between) are
    read off it too where the title does not end and the body begin with a digit: a space reads as the newline does
    to every pattern but as a number's separator between two digits."""
    text = f"{title}\n{body}"
    found, spans = _money_scan(text)
    whole = tuple(found)
    at = len(title)
    for a, b in spans:
        if a <= at < b:
            break
    else:  # no match holds the newline: each mention is the title's (before it) or the body's (after it), in order
        if len(_PARTS) >= 4096:
            _PARTS.clear()
        k = 0
        while k < len(found) and found[k].span[1] <= at:
            k += 1
        _PARTS[title] = whole[:k]
        _PARTS[body] = tuple([_mention(m.amounts, m.currencies, m.text, (m.span[0] - at - 1, m.span[1] - at - 1))
                              for m in found[k:]])
        if not _digits_join(title, body):
            _PARTS[f"{title} {body}"] = whole
    _PARTS[text] = whole
    return found


def _digits_join(title: str, body: str) -> bool:
    """Whether ``_DIGIT_JOIN`` matches ``title\\nbody`` at the newline less one: the title ends and the body begins
    with a digit (for two ASCII characters, one of ``0-9``)."""
    a, b = title[-1:], body[:1]
    if a.isascii() and b.isascii():
        return a.isdigit() and b.isdigit()
    return _DIGIT_JOIN.match(f"{a}\n{b}") is not None


@lru_cache(maxsize=4096)  # the guardrails read a copy's amounts in several checks
def _money_mentions(text: str) -> tuple[MoneyMention, ...]:
    return tuple(_money_scan(text)[0])


def _money_scan(text: str) -> tuple[list[MoneyMention], list[tuple[int, int]]]:
    """The mentions, and the span of every match the patterns gave (kept or not)."""
    spans: list[tuple[int, int]] = []
    is_ascii = text.isascii()
    starts = _ascii_starts(text) if is_ascii else _starts(text)
    if starts is None:  # every pattern needs a digit: skip their scans over hundreds of markers
        return [], spans
    before, after, bare = _ascii_patterns() if is_ascii else (*_money_patterns(), _BARE)
    found: list[MoneyMention] = []
    taken: list[tuple[int, int]] = []  # the spans of found

    def free(span: tuple[int, int]) -> bool:
        a, b = span
        for x, y in taken:
            if x < b and a < y:
                return False
        return True

    before_starts, after_starts, bare_starts = starts
    for pattern, at in ((before, before_starts), (after, after_starts)):
        for m in matches_at(pattern, text, at):
            spans.append(m.span())
            amounts = _readings(m["num"].strip())
            if amounts and free(span := m.span()):
                found.append(_mention(amounts, currencies_of(m["cur"]), m[0], span))
                taken.append(span)
    for m in matches_at(bare, text, bare_starts):
        spans.append(span := m.span())
        if free(span):
            found.append(_mention(_readings(m[0]), _NO_CURRENCY, m[0], span))
            taken.append(span)
    if len(found) > 1:
        found.sort(key=lambda x: x.span)
    return found, spans


@lru_cache(maxsize=4096)  # a shop's prices recur across its users' copy
def _readings(number: str) -> frozenset[Decimal]:
    return frozenset(readings(number))


_NO_CURRENCY: frozenset[str] = frozenset()  # a bare number's currencies
_Starts = tuple[list[int], list[int], list[int]]


def _starts(text: str) -> _Starts | None:
    """Where the patterns before, after and ``_BARE`` may match in ``text`` (each a superset of the places they match,
    ascending); None where the text has no digit (every match has one)."""
    runs = [m.start() for m in _DIGIT_RUN.finditer(text)]
    if not runs:
        return None
    numbers = [d for d in runs if not d or text[d - 1] not in ".,"]  # _NUMBER_START: a run follows no digit
    if lower_is_exact(text):
        return (*_marked_starts(text, runs, numbers), numbers)  # _BARE: where a number may start
    return _marker_starts(text, runs), numbers, numbers


# in ASCII text (bytes.translate): each character \d matches to b"0", any other to b"a"; and each one _NUMBER_RUN
# matches ([\d,.\u00a0\u202f'’ ]: ASCII digits, the comma, point, apostrophe and space) to b"0", any other to b"a"
_ASCII_DIGIT_BYTES = bytes(48 if regex.match(r"\d", chr(c)) else 97 for c in range(256))
_ASCII_NUMBER_BYTES = bytes(48 if c < 128 and regex.match(r"[\d,.\u00a0\u202f'’ ]", chr(c)) else 97 for c in range(256))
_ASCII_SPACE = frozenset(chr(c) for c in range(128) if regex.match(r"\s", chr(c)))  # what \s matches of ASCII


def _ascii_starts(text: str) -> _Starts | None:
    """:func:`_starts` of an ASCII text (which :func:`lower_is_exact` holds for), in one pass over its runs of digits,
    each found with its end by ``bytes.find`` on the text translated to digits and others: ``_BARE`` is tried only where
    a number's run of digits is followed by a point or a comma (each of its branches has a run of digits then one of
    them, and a run is read whole: no digit follows it)."""
    raw = text.encode("ascii")
    digits = raw.translate(_ASCII_DIGIT_BYTES)
    d = digits.find(48)
    if d < 0:
        return None
    numeric = raw.translate(_ASCII_NUMBER_BYTES)
    markers, heads, tails = _marker_table()
    low = text.lower()
    size = len(text)
    before: list[int] = []
    after: list[int] = []
    bare: list[int] = []
    while d >= 0:  # _marked_starts, at each run of digits d:e
        e = digits.find(97, d)
        e = size if e < 0 else e
        prev = text[d - 1] if d else ""
        for end in (d, d - 1) if prev in _ASCII_SPACE else (d,):
            for n in tails.get(low[end - 1], ()) if end else ():
                if n <= end and low[end - n:end] in markers:
                    before.append(end - n)
        if prev != "." and prev != ",":  # a number may start here
            if text[e:e + 1] in (".", ","):
                bare.append(d)
            stop = numeric.find(97, e)
            stop = size if stop < 0 else stop
            if _marker_at(low, stop, markers, heads) or (
                    text[stop:stop + 1] in _ASCII_SPACE and _marker_at(low, stop + 1, markers, heads)):
                after.append(d)
        d = digits.find(48, e)
    if len(before) > 1:
        before.sort()
    return before, after, bare


_DIGIT_RUN = regex.compile(r"(?<!\d)\d")
_DIGIT_JOIN = regex.compile(r"\d\n\d")  # digits either side of a copy's newline (money_mentions_of_copy)
_NUMBER_START = regex.compile(r"(?<![\d.,])\d")


def _marker_starts(text: str, runs: list[int]) -> list[int]:
    """Where a currency marker written before a number may start: a marker (digit-free, at most
    ``_MARKER_REACH - 1`` characters and an optional space) ends at the start of a run of digits, and begins with
    one of the markers' first characters."""
    opening = _marker_openings()
    return sorted({m.start() for d in runs for m in opening.finditer(text, max(0, d - _MARKER_REACH), d)})


def has_case(ch: str) -> bool:
    """Whether a character has another case (or lower-cases to more than one character)."""
    return ch.lower() != ch.upper() or len(ch.lower()) != 1


_has_case = lru_cache(maxsize=1 << 14)(has_case)


def lower_is_exact(text: str) -> bool:
    """Whether ``text.lower()`` holds, at each place, the one character a case-insensitive pattern of ASCII and caseless
    characters matches there (and a pattern's cased character outside ASCII matches nothing): ASCII text, or text whose
    characters outside ASCII have no case (Han, currency signs, punctuation)."""
    return text.isascii() or _caseless_outside_ascii(text)


@lru_cache(maxsize=4096)  # a copy is asked about by its amounts and several checks
def _caseless_outside_ascii(text: str) -> bool:
    """:func:`lower_is_exact` of a text that is not ASCII."""
    return not any(map(_has_case, {ch for ch in text if ch > "\x7f"}))


@lru_cache(maxsize=1)
def _marker_table() -> tuple[frozenset[str], dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The markers (lower-case), and per character the lengths of the markers that begin with it and of those that
    end with it. No ASCII character matches a marker's cased character outside ASCII case-insensitively (where one
    did, :func:`lower_is_exact` would not be enough)."""
    markers = frozenset(_symbols())
    for ch in {ch for m in markers for ch in m if ord(ch) > 127 and has_case(ch)}:
        assert not any(regex.fullmatch(regex.escape(ch), chr(c), regex.I) for c in range(128)), ch
    assert all(m == m.lower() for m in markers)
    heads: dict[str, set[int]] = {}
    tails: dict[str, set[int]] = {}
    for m in markers:
        heads.setdefault(m[0], set()).add(len(m))
        tails.setdefault(m[-1], set()).add(len(m))
    return (markers, {c: tuple(sorted(n)) for c, n in heads.items()},
            {c: tuple(sorted(n)) for c, n in tails.items()})


_SPACE = regex.compile(r"\s")
_NUMBER_RUN = regex.compile(r"[\d,.\u00a0\u202f'’ ]*")  # what NUMBER is made of


def _is_space(ch: str) -> bool:
    """Whether ``_SPACE`` matches ``ch``: a printable character is whitespace only when it is a space (every other
    whitespace character is unprintable)."""
    return ch == " " or (not ch.isprintable() and _SPACE.match(ch) is not None)


def _marker_at(low: str, at: int, markers: frozenset[str], heads: dict[str, tuple[int, ...]]) -> bool:
    """Whether one of ``markers`` begins at ``at`` of ``low`` (``heads``: their lengths by first character)."""
    for n in heads.get(low[at:at + 1], ()):
        if low[at:at + n] in markers:
            return True
    return False


def _marked_starts(text: str, runs: list[int], numbers: list[int]) -> tuple[list[int], list[int]]:
    """Where the money patterns may match, for a text where :func:`lower_is_exact` (``runs``: where its runs of digits
    begin; ``numbers``: those that follow no point or comma, where a number may begin): a currency marker written
    before a number ends where the number's digits begin, or one whitespace before; one written after begins where
    the run of the number's digits and separators ends, or one whitespace after. A superset of the places they match
    (the patterns decide), usually far fewer than every marker's first letter near a digit."""
    markers, heads, tails = _marker_table()
    low = text.lower()
    before = set()
    for d in runs:
        for end in (d, d - 1) if d and _is_space(text[d - 1]) else (d,):
            for n in tails.get(low[end - 1], ()) if end else ():
                if n <= end and low[end - n:end] in markers:
                    before.add(end - n)
    after = []
    for d in numbers:
        end = _NUMBER_RUN.match(text, d).end()
        if _marker_at(low, end, markers, heads) or (
                end < len(text) and _is_space(text[end]) and _marker_at(low, end + 1, markers, heads)):
            after.append(d)
    return sorted(before), after


def matches_at(pattern: regex.Pattern[str], text: str, starts: list[int]) -> Iterator[regex.Match[str]]:
    """``pattern.finditer(text)`` for a pattern every match of which starts at one of ``starts`` (ascending): the
    pattern is tried at those places only, instead of at every place of the text (hundreds of markers each)."""
    end = 0
    for at in starts:
        if at >= end and (m := pattern.match(text, at)):
            yield m
            end = m.end()


_PERCENT = regex.compile(r"(?P<num>\d+(?:[.,]\d+)?)[\s\u00a0\u202f]?(?:%|％|percent\b|per cent\b|pct\b)", regex.I)
_ZHE = regex.compile(r"(?<![\d.])(?P<num>\d{1,2}(?:\.\d)?)\s?折")


@dataclass(frozen=True)
class PercentMention:
    """A discount percentage found in a text (``85折`` is read as 15)."""

    value: Decimal
    text: str
    span: tuple[int, int]


def percent_mentions(text: str) -> list[PercentMention]:
    """Percentages in ``text``: ``15%``, ``15 %``, ``15 percent``, ``15％`` and the Chinese ``85折``/``8.5折``
    (pay 85%, i.e. 15% off)."""
    return list(_percent_mentions(text))


@lru_cache(maxsize=4096)
def _percent_mentions(text: str) -> tuple[PercentMention, ...]:
    if not _may_hold_percent(text):
        return ()
    out = [PercentMention(Decimal(m["num"].replace(",", ".")), m[0], m.span()) for m in _PERCENT.finditer(text)]
    for m in _ZHE.finditer(text):
        n = Decimal(m["num"])
        paid = n * 10 if "." in m["num"] or n < 10 else n  # 85折 = 8.5折 = pay 85%; 8折 = pay 80%
        out.append(PercentMention(Decimal(100) - paid, m[0], m.span()))
    return tuple(sorted(out, key=lambda x: x.span))


def _may_hold_percent(text: str) -> bool:
    """Whether ``text`` has what every match of ``_PERCENT`` or ``_ZHE`` has: a percent sign, 折, or one of the words
    lower-cased (no character but the ASCII letter's two cases matches one of their letters case-insensitively)."""
    if "%" in text or "％" in text or "折" in text:
        return True
    low = text.lower()
    return "percent" in low or "per cent" in low or "pct" in low


def mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with the given spans blanked (same length, so other spans keep their offsets), each in turn: what
    assigning spaces to the slices of a list of its characters gives, by slicing the string (a few spans of a short
    text: no list of characters)."""
    for a, b in spans:
        if a < b:  # an empty or reversed slice: nothing to blank
            text = f"{text[:a]}{' ' * (b - a)}{text[b:]}"
    return text
