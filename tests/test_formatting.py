"""Money, percentages, counts and dates per locale (Babel/CLDR), read back by the guardrails in any notation."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.check.guardrails import GuardContext, check_percentages, check_prices
from generator.core.data import Item
from generator.core.formatting import (
    discount_percent,
    format_count,
    format_day,
    format_money,
    format_pct,
    money_mentions,
    percent_mentions,
    resolve_locale,
)
from tests.test_prefilter import money_scan_by_finditer

LOCALES = ("en_US", "en_GB", "en_IN", "de_DE", "fr_FR", "ja_JP", "zh_CN", "es_ES", "hi_IN")
CURRENCIES = ("USD", "EUR", "INR", "CNY")
AMOUNTS = ("1399", "1399.50", "23790", "123456", "123456.78", "1234567", "9999999.99")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("currency", CURRENCIES)
def test_every_locale_formats_and_reads_back_every_amount(locale: str, currency: str) -> None:
    for raw in AMOUNTS:
        amount = Decimal(raw)
        written = format_money(amount, currency, locale)
        number = regex.search(r"\d[\d.,\u00a0\u202f]*\d", written)[0]
        assert ("." in raw) == bool(regex.search(r"[.,]\d\d$", number)), f"{written!r}: cents only when it has them"
        found = money_mentions(f"Now {written} only")
        assert len(found) == 1, (written, found)
        assert amount.quantize(Decimal("0.01")) in found[0].amounts, (written, found[0])
        assert currency in found[0].currencies, (written, found[0])


@pytest.mark.parametrize(("amount", "currency", "locale", "expected"), [
    (1399, "INR", "en_IN", "₹1,399"),
    (123456, "INR", "en_IN", "₹1,23,456"),
    (Decimal("19.99"), "USD", "en_US", "$19.99"),
    (1399, "USD", "en_US", "$1,399"),
    (1399, "CNY", "zh_CN", "¥1,399"),
    (1399, "EUR", "de_DE", "1.399\u00a0€"),
    (Decimal("1399.5"), "EUR", "de_DE", "1.399,50\u00a0€"),
    (1399, "GBP", "en_GB", "£1,399"),
    (1399, "JPY", "ja_JP", "￥1,399"),
    (1399, "USD", "zh_CN", "US$1,399"),
])
def test_prices_are_written_as_the_shopper_reads_them(amount: object, currency: str, locale: str,
                                                      expected: str) -> None:
    assert format_money(amount, currency, locale) == expected  # type: ignore[arg-type]


def test_percent_count_and_date_follow_the_locale() -> None:
    assert format_pct(15, "en_US") == "15%"
    assert format_pct(15, "de_DE") == "15\u00a0%"
    assert format_count(1234567, "de_DE") == "1.234.567"
    assert format_count(1234567, "en_IN") == "12,34,567"
    assert format_day("2026-12-05", "zh_CN") == "2026年12月5日"
    assert format_day("2026-12-05", "en_GB") == "5 Dec 2026"


def test_unknown_locale_falls_back_to_the_default_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    resolve_locale.cache_clear()
    with caplog.at_level(logging.WARNING, logger="generator.core.formatting"):
        assert format_money(1399, "INR", "xx_QQ", default="en_IN") == "₹1,399"
    assert "unknown locale 'xx_QQ'" in caplog.text


@pytest.mark.parametrize(("text", "amount", "currencies"), [
    ("₹1,399", "1399", {"INR"}), ("1,399 元", "1399", {"CNY"}), ("1.399,00 €", "1399", {"EUR"}),
    ("Rs. 1,399", "1399", {"INR"}), ("1 399,50 €", "1399.50", {"EUR"}), ("US$19.99", "19.99", {"USD"}),
    ("13,99 €", "13.99", {"EUR"}), ("₹1,23,456", "123456", {"INR"}), ("19.99 dollars", "19.99", {"USD"}),
])
def test_money_is_read_back_in_any_notation(text: str, amount: str, currencies: set[str]) -> None:
    [m] = money_mentions(f"now {text} for you")
    assert Decimal(amount).quantize(Decimal("0.01")) in m.amounts and currencies <= m.currencies


def test_a_weight_is_not_money_and_zhe_is_a_discount() -> None:
    assert money_mentions("holds 9 pounds, weighs 2.2 lbs") == []
    assert [p.value for p in percent_mentions("8.5折 / 85折 / 8折 / 15 %")] == [15, 15, 20, 15]


RUPEE = Item(item_id="F1", title="Solimo Stainless Steel Water Bottle, 1 Litre", brand="Solimo", price=Decimal("1399"),
             sale_price=Decimal("990"), currency="INR", in_stock=True, url="u")


@pytest.mark.parametrize("locale", LOCALES)
def test_the_guardrail_rejects_a_wrong_amount_in_every_notation(locale: str) -> None:
    ctx = GuardContext(items=[RUPEE], locale=locale)
    right = format_money(990, "INR", locale)
    wrong = format_money(999, "INR", locale)
    assert check_prices("Bottle", f"Solimo water bottle now {right}", ctx).passed
    r = check_prices("Bottle", f"Solimo water bottle now {wrong}", ctx)
    assert not r.passed and "matches no item's price" in r.reason
    dollars = format_money(990, "USD", locale)
    assert not check_prices("Bottle", f"Solimo water bottle now {dollars}", ctx).passed


@pytest.mark.parametrize(("price", "sale", "expected"), [
    ("12.21", "6.11", 50), ("990", "466", 53), ("100", "60.05", 40), ("20", "19.95", None), ("10", "10", None),
])
def test_one_discount_rule_rounds_half_up(price: str, sale: str, expected: int | None) -> None:
    assert discount_percent(Decimal(price), Decimal(sale)) == expected
    item = Item(item_id="X", title="Thing", price=Decimal(price), sale_price=Decimal(sale), currency="USD",
                in_stock=True, url="u")
    assert item.discount_pct == expected


def test_a_stated_discount_wins_and_a_truncated_one_fails_the_check() -> None:
    stated = Item(item_id="X", title="Thing", price=Decimal("990"), sale_price=Decimal("466"), currency="INR",
                  in_stock=True, url="u", stated_discount_pct=52)
    assert stated.discount_pct == 52
    half = Item(item_id="Y", title="Neiko Digital Caliper", price=Decimal("12.21"), sale_price=Decimal("6.11"),
                currency="USD", in_stock=True, url="u")
    ctx = GuardContext(items=[half])
    assert check_percentages("50% off", "Neiko Digital Caliper", ctx).passed
    for wrong in ("49% off", "51% off", "49.96% off"):
        assert not check_percentages(wrong, "Neiko Digital Caliper", ctx).passed, wrong


def test_every_whitespace_but_the_space_is_unprintable() -> None:
    import generator.core.formatting as fmt

    spaces = regex.findall(r"\s", "".join(map(chr, range(0x110000))))
    assert " " in spaces and not any(ch.isprintable() for ch in spaces if ch != " ")
    assert [fmt._is_space(ch) for ch in " \t\n\u00a0\u3000a.1"] == [True] * 5 + [False] * 3


def test_only_the_ascii_letters_match_the_percent_words_letters() -> None:
    everything = "".join(map(chr, range(0x110000)))
    assert {ch.lower() for ch in regex.findall("[percnt]", everything, regex.I)} == set("percnt")


@pytest.mark.parametrize("text", ["15% off", "15 percent", "15 PerCent off", "20 PCT", "85折", "8.5折", "15％",
                                  "no discount 15", "price 15 per cent", "Percentage 15", ""])
def test_the_percent_pretest_keeps_every_percentage(text: str) -> None:
    import generator.core.formatting as fmt

    fmt._percent_mentions.cache_clear()
    scanned = [m.span() for m in fmt._PERCENT.finditer(text)] + [m.span() for m in fmt._ZHE.finditer(text)]
    assert sorted(scanned) == [m.span for m in percent_mentions(text)]


@pytest.mark.parametrize(("title", "body"), [("Now 15", "399 € off"), ("Now 15", "€399"), ("Rs", "1,399 today"),
                                             ("US$19.99", "was 25"), ("1,399", "元 today"), ("", "$5"), ("$5", ""),
                                             ("Save 1", "2.50 EUR"), ("12", "3456 €")])
def test_the_copys_amounts_with_a_space_between_title_and_body_are_read_off_it(title: str, body: str) -> None:
    import generator.core.formatting as fmt

    fmt._PARTS.clear()
    fmt._money_mentions.cache_clear()
    fmt.money_mentions_of_copy(title, body)
    assert money_mentions(f"{title} {body}") == list(fmt._money_mentions(f"{title} {body}"))


def test_mask_blanks_as_assigning_spaces_to_a_list_of_characters() -> None:
    """``mask`` slices the string: what assigning spaces to the slices of its characters' list gives, spans in turn
    (overlapping, empty, reversed and past the end included)."""
    import random

    from generator.core.formatting import mask

    def by_list(text: str, spans: list[tuple[int, int]]) -> str:  # what mask did before
        chars = list(text)
        for a, b in spans:
            chars[a:b] = " " * (b - a)
        return "".join(chars)

    rng = random.Random(2)
    for _ in range(3000):
        text = "".join(rng.choices("ab 帐篷$1.\n", k=rng.randrange(0, 12)))
        spans = [(rng.randrange(0, 15), rng.randrange(0, 15)) for _ in range(rng.randrange(0, 4))]
        assert mask(text, spans) == by_list(text, spans), (text, spans)
        assert mask(text, iter(spans)) == by_list(text, spans)


def test_an_amount_is_an_item_fact_where_a_fact_text_has_it() -> None:
    """``_is_item_fact`` looks in the item facts joined by newlines: where one of them has the amount, spaced."""
    import random

    from generator.check.guardrails import _derived, _is_item_fact, _one_space

    items = [Item(item_id=f"I{k}", title=title, brand="B", price=Decimal("5"), currency="USD", in_stock=True,
                  url="u") for k, title in enumerate(["Scale 2.2 lbs", "Gauge +/- 2% Accuracy", "Caliper 0.03  mm",
                                                       "Bag 40 L"])]
    rng = random.Random(4)
    ctx = GuardContext(items=items)
    for _ in range(2000):
        matched = "".join(rng.choices(["2", ".", "2 ", "lbs", "%", " ", "0.03", "mm", "\n", "40", "l", "\t"],
                                      k=rng.randrange(1, 5)))
        if not any(c.isdigit() for c in matched):
            continue
        needle = _one_space(matched.strip().lower())
        assert _is_item_fact(matched, ctx) == any(needle in t for t in _derived(ctx).spaced_facts), matched


_ASCII_NUMBERS = ["1", "5", "19.99", "1,399", "1 399,50", "1.399", "1,23,456", "05", "2.5", "3,942"]
_ASCII_GAPS = [" ", "  ", "\n", "\t", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "'", ".", ",", "-", "_", "%", ""]
_ASCII_WORDS = ["now", "was", "Save", "off", "k", "s", "a", "per", "cent"]


def _ascii_texts() -> st.SearchStrategy[str]:
    """ASCII texts of numbers, markers (in any case), words and what may come between them, each kind as likely."""
    import generator.core.formatting as fmt

    markers = sorted(m for m in fmt._symbols() if m.isascii())
    piece = st.one_of(st.sampled_from(_ASCII_NUMBERS), st.sampled_from(_ASCII_GAPS), st.sampled_from(_ASCII_WORDS),
                      st.sampled_from(markers + [m.upper() for m in markers] + [m.title() for m in markers]))
    return st.lists(piece, min_size=1, max_size=12).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_ascii_texts())
def test_the_ascii_money_patterns_match_as_the_regex_modules_do(text: str) -> None:
    """``re`` versions of the money patterns give an ASCII text the matches (spans and groups) of the regex module's,
    at every place."""
    import generator.core.formatting as fmt

    for fast, slow in zip(fmt._ascii_patterns(), (*fmt._money_patterns(), fmt._BARE), strict=True):
        assert [(m.span(), m.groupdict()) for m in fast.finditer(text)] == \
            [(m.span(), m.groupdict()) for m in slow.finditer(text)], (text, slow.pattern[:40])
        for at in range(len(text) + 1):
            assert bool(fast.match(text, at)) is bool(slow.match(text, at)), (text, at)


@settings(max_examples=1500, deadline=None)
@given(_ascii_texts())
def test_the_ascii_money_scan_finds_what_scanning_every_place_finds(text: str) -> None:
    """``_money_scan`` of an ASCII text (runs of digits found by ``bytes.find``, ``_BARE`` tried only before a point
    or comma, the ``re`` patterns) gives the mentions and match spans of the regex module's ``finditer`` over the
    whole text, and the places :func:`_starts` (the path of other text) gives lead to the same matches."""
    import generator.core.formatting as fmt

    before, after = fmt._money_patterns()
    assert fmt._money_scan(text) == money_scan_by_finditer(text), text
    fast, slow = fmt._ascii_starts(text), fmt._starts(text)
    assert (fast is None) is (slow is None)
    if fast is None or slow is None:
        return
    for pattern, a, b in zip((before, after, fmt._BARE), fast or (), slow or (), strict=True):
        assert a == sorted(a) and [m.span() for m in fmt.matches_at(pattern, text, a)] == \
            [m.span() for m in fmt.matches_at(pattern, text, b)], text


def test_a_mention_made_without_the_dataclass_init_is_the_dataclasss() -> None:
    """``_mention`` fills the fields ``MoneyMention.__init__`` sets, and that ``__init__`` does nothing more."""
    import dataclasses

    import generator.core.formatting as fmt

    assert [f.name for f in dataclasses.fields(fmt.MoneyMention)] == ["amounts", "currencies", "text", "span"]
    assert not hasattr(fmt.MoneyMention, "__post_init__")
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in dataclasses.fields(fmt.MoneyMention))
    args = (frozenset({Decimal("19.99")}), frozenset({"USD"}), "$19.99", (3, 9))
    made, slow = fmt._mention(*args), fmt.MoneyMention(*args)
    assert made == slow and hash(made) == hash(slow) and vars(made) == vars(slow) and repr(made) == repr(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.text = "x"  # type: ignore[misc]
