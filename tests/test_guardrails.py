"""Guardrails: lengths in grapheme clusters, exact prices and discounts, payload bytes, item mention."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.check.guardrails import (
    _JOINS,
    BrandPolicy,
    GuardContext,
    _bmp_joins,
    _joins,
    check_lengths,
    check_mentions_item,
    check_payload_size,
    check_percentages,
    check_prices,
    graphemes,
    run_checks,
)
from generator.core.data import Item

TENT = Item(item_id="A1", title="Trailblazer 2-Person Backpacking Tent", brand="Trailblazer",
            price=Decimal("189.00"), sale_price=Decimal("149.00"), currency="USD", in_stock=True, url="u")
MUG = Item(item_id="B2", title="Aurora Ceramic Mug", brand="Aurora", price=Decimal("12.50"), currency="USD",
           in_stock=True, url="u")
CTX = GuardContext(items=[TENT, MUG])


def test_graphemes_count_emoji_and_chinese_as_one() -> None:
    assert graphemes("👍🏽") == 1 and graphemes("👨‍👩‍👧") == 1 and graphemes("帐篷") == 2 and graphemes("e\u0301") == 1


def test_the_plain_set_of_joining_characters_is_the_property_patterns() -> None:
    """_joins reads a set of code points made from _JOINS: it has every BMP character _JOINS matches and no other,
    and every character beyond the BMP (where _JOINS itself decides)."""
    bmp = _bmp_joins()
    assert [c for c in range(0x10000) if (bmp.search(chr(c)) is None) != (_JOINS.search(chr(c)) is None)] == []
    assert all(bmp.search(chr(c)) for c in (0x10000, 0x1F3FB, 0x1F600, 0xE0020, 0x10FFFF))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "\r\n", "\n", "帐篷", "e\u0301", "👍🏽", "👨‍👩‍👧", "🇩🇪", "🏕️", "\u0e33", "각",
                                 "\u1100\u1161", "\U0001d165", "\u0903", "\u200d", "$", "😀"]), max_size=12)
       .map("".join) | st.text(max_size=20))
def test_graphemes_with_the_plain_set_count_as_the_property_pattern_does(text: str) -> None:
    slow = len(text) - text.count("\r\n") if text.isascii() or not _JOINS.search(text) else \
        len(regex.findall(r"\X", text))
    assert _joins(text) is (_JOINS.search(text) is not None) and graphemes(text) == slow


@pytest.mark.parametrize(("title", "ok"), [
    ("🏕️" * 50, True), ("🏕️" * 51, False),
    ("帐" * 50, True), ("帐" * 51, False),
    ("", False),
])
def test_title_limit_at_the_edge_in_graphemes(title: str, ok: bool) -> None:
    [t, _] = check_lengths(title, "body", CTX)
    assert t.passed is ok


def test_body_limit_uses_strictest_platform() -> None:
    assert check_lengths("t", "x" * 150, CTX)[1].passed
    assert not check_lengths("t", "x" * 151, CTX)[1].passed
    android = GuardContext(items=[TENT], policy=BrandPolicy(platforms=["android"]))
    assert check_lengths("t", "x" * 200, android)[1].passed


@pytest.mark.parametrize(("body", "ok"), [
    ("Trailblazer tent now $149.00!", True),
    ("Trailblazer tent now $149!", True),
    ("Was $189.00, now $149.00", True),
    ("Mug for $12.50", True),
    ("Only $99.00 today", False),
    ("Only 149.00 EUR", False),
    ("Now €149.00", False),
    ("Now 149.00", False),  # a price without its currency
    ("Now 149.01", False),
    ("现价 149.00 美元", True),
    ("现价 ¥149.00", False),
])
def test_prices_must_be_exact_and_in_the_right_currency(body: str, ok: bool) -> None:
    assert check_prices("t", body, CTX).passed is ok


@pytest.mark.parametrize(("body", "ok"), [
    ("21% off the tent", True), ("save 21 percent", True), ("50% off", False), ("21.5% off", False),
    ("优惠 21％", True), ("no discount talk", True),
])
def test_percentages_must_be_real_discounts(body: str, ok: bool) -> None:
    assert check_percentages("t", body, CTX).passed is ok


LAMP = Item(item_id="C3", title="Northwind Waterproof Headlamp", brand="Northwind", price=Decimal("44.95"),
            sale_price=Decimal("22.47"), currency="USD", in_stock=True, url="u")


def test_prices_and_discounts_must_be_the_named_items_own() -> None:
    ctx = GuardContext(items=[LAMP, TENT])  # 50% and 21% off
    assert check_percentages("50% off", "Northwind Waterproof Headlamp now $22.47", ctx).passed
    wrong = check_percentages("21% off", "Northwind Waterproof Headlamp now $22.47", ctx)
    assert not wrong.passed and "allowed: [50]" in wrong.reason
    price = check_prices("Now $149.00", "Northwind Waterproof Headlamp, 50% off", ctx)
    assert not price.passed and "another item's" in price.reason
    # naming both items allows both items' facts; naming none leaves every ranked item's (mentions_item fails it)
    assert check_percentages("21% and 50% off", "Trailblazer tent and Northwind Waterproof Headlamp", ctx).passed
    assert check_percentages("21% off", "today only", ctx).passed
    # a whole title names that item only, even when its words half-name another ranked item too
    lamp2 = Item(item_id="C4", title="Northwind Waterproof Lantern", brand="Northwind", price=Decimal("30.00"),
                 sale_price=Decimal("27.00"), currency="USD", in_stock=True, url="u")  # 10% off
    both = GuardContext(items=[lamp2, LAMP])
    assert not check_percentages("10% off", "Northwind Waterproof Headlamp now $22.47", both).passed
    assert check_percentages("10% off", "Northwind Waterproof lantern, today", both).passed


@pytest.mark.parametrize("body", ["Trailblazer tent, now with a complimentary footprint", "Free shipping on the tent",
                                  "Trailblazer 帐篷，包邮到家"])
def test_invented_offers_fail_unless_the_campaign_has_one(body: str) -> None:
    from generator.check.guardrails import check_claims

    r = check_claims("Tent deal", body, GuardContext(items=[TENT]))
    assert not r.passed and "unsupported offer claim" in r.reason
    assert check_claims("Tent deal", body, GuardContext(items=[TENT], facts={"offer": "free footprint"})).passed


def test_a_coupon_campaigns_copy_carries_its_code() -> None:
    from generator.check.guardrails import check_facts

    ctx = GuardContext(items=[TENT], facts={"coupon_code": "HELLO15", "coupon_pct": 15})
    assert check_facts("15% off", "Use HELLO15 on the Trailblazer tent", ctx).passed
    r = check_facts("专属 15% 优惠券", "使用优惠码 15% 购买 Trailblazer 帐篷", ctx)
    assert not r.passed and "'HELLO15' is missing" in r.reason


def test_a_bracketed_product_name_is_the_items_whole_name() -> None:
    from generator.check.guardrails import check_facts

    tent2 = Item(item_id="A2", title="Trailblazer 3-Person Backpacking Tent", brand="Trailblazer",
                 price=Decimal("229.00"), currency="USD", in_stock=True, url="u")
    ctx = GuardContext(items=[tent2, TENT], locale="zh_CN")  # names alike: each whole name is still right
    assert check_facts("好物推荐", "「Trailblazer 2-Person Backpacking Tent」现售 $149.00", ctx).passed
    cut = check_facts("好物推荐", "「Trailblazer 2-Person Backpacking」现售 $149.00", ctx)
    assert not cut.passed and "cut or altered" in cut.reason
    assert check_facts("双十一", "「双十一」来了：Trailblazer 2-Person Backpacking Tent", ctx).passed  # not a name


@pytest.mark.parametrize(("title", "body", "passes"), [
    ("Now 20% off", "The Trailblazer 2-Person Backpacking Tent dropped to $149.00.", True),
    ("Price Drop On Trailblazer Tent", "Grab the Trailblazer 2-Person Backpacking Tent for $149.00.", True),
    ("Tent deal", "Your backpacking tent is $149.00 now.", True),  # lower case: no name to check
    ("Now 20% off", "The Trailblazer Ultralight Tent dropped to $149.00.", False),  # a word it does not have
    ("Now 20% off", "The Trailblazer 2-Person Camping Tent dropped to $149.00.", False),
    ("Meet Your Dream Tent", "The Trailblazer 2-Person Backpacking Tent is $149.00.", False),
])
def test_copy_does_not_make_up_the_items_name(title: str, body: str, passes: bool) -> None:
    from generator.check.guardrails import check_facts

    r = check_facts(title, body, GuardContext(items=[TENT]))
    assert r.passed is passes, r.reason
    assert passes or "not in its name" in r.reason
    # with the user's other items in the context (another tent): a phrase that names any of them names it truly
    other = Item(item_id="A3", title="Summitline Dome Camping Tent, 4 Person", brand="Summitline",
                 price=Decimal("99.00"), currency="USD", in_stock=True, url="u")
    both = check_facts(title, body, GuardContext(items=[other, TENT]))
    assert both.passed is (passes or "Camping Tent" in body), both.reason


def test_copy_that_reads_the_prompt_back_fails() -> None:
    from generator.check.guardrails import check_prompt_echo

    prompt = "写一条商品推荐推送。\n商品：「Trailblazer 2-Person Backpacking Tent」\n价格：$149.00"
    ctx = GuardContext(items=[TENT], locale="zh_CN", prompt_text=prompt)
    assert check_prompt_echo("好物推荐", "「Trailblazer 2-Person Backpacking Tent」现售 $149.00", ctx).passed
    label = check_prompt_echo("好物推荐", "商品：「Trailblazer 2-Person Backpacking Tent」", ctx)
    assert not label.passed and "'商品'" in label.reason
    assert not check_prompt_echo("好物推荐，只要 $149.00", "写一条商品推荐推送。", ctx).passed
    en = GuardContext(items=[TENT], prompt_text="Write a price-drop push.\nProduct: Tent\nPrice now: $149.00")
    assert not check_prompt_echo("Tent deal", "Price now: $149.00 for the Trailblazer tent", en).passed
    assert check_prompt_echo("Price drop: tent", "The Trailblazer tent is now $149.00", en).passed
    assert check_prompt_echo("x", "Now $1", GuardContext(items=[TENT])).passed  # no prompt: no prompt's labels
    assert not check_prompt_echo("x", "Price now: $1", GuardContext(items=[TENT])).passed  # but a field label


@pytest.mark.parametrize(("title", "body", "ok"), [
    ("High-end Rocking Camp Chair", "A great value, but the quality is not what you are looking for.", False),
    ("Not a favorite, but one of a kind", "The Trailblazer tent is $149.00.", False),
    ("Tent deal", "Some found it flimsy, but it is $149.00.", False),
    ("Top rated tent", "The Trailblazer tent: the best, but it's not cheap.", False),
    ("帐篷降价", "Trailblazer 帐篷做工粗糙，现价 $149.00", False),
    ("Camp in comfort", "The Trailblazer tent is not just light, it is great value at $149.00.", True),
    ("No more cold nights", "Trailblazer tent, $149.00: worth every trip.", True),
    ("帐篷降价啦", "Trailblazer 帐篷现价 $149.00，不容错过！", True),
    ("帐篷降价啦", "Trailblazer 帐篷现价 $149.00，30 天无理由退货，买了不后悔。", True),
])
def test_copy_never_speaks_ill_of_the_product(title: str, body: str, ok: bool) -> None:
    from generator.check.guardrails import check_tone

    assert check_tone(title, body, CTX).passed is ok


def test_no_discount_claims_when_nothing_is_discounted() -> None:
    r = check_percentages("t", "10% off", GuardContext(items=[MUG]))
    assert not r.passed and "no item is discounted" in r.reason


def test_payload_limit_is_bytes_after_json_encoding() -> None:
    assert check_payload_size("t", "帐" * 1300, CTX).passed  # 3,900 bytes of UTF-8 plus the envelope
    r = check_payload_size("t", "帐" * 1400, CTX)
    assert not r.passed and "bytes, limit 4096" in r.reason
    assert not check_payload_size("t", '"' * 2100, CTX).passed  # JSON escaping doubles quotes


def test_copy_must_name_a_ranked_item() -> None:
    assert check_mentions_item("Camp night", "The Trailblazer backpacking tent is back", CTX).passed
    assert check_mentions_item("", "Aurora Ceramic Mug: cosy mornings", CTX).passed
    assert not check_mentions_item("Big news", "Something great is waiting", CTX).passed
    assert not check_mentions_item("", "A tent for you", CTX).passed  # one generic word is not a name


def test_run_checks_collects_every_failure() -> None:
    results = run_checks("", "Only $5.00, 90% off", CTX)
    failed = {r.name for r in results if not r.passed}
    assert failed == {"title_length", "prices", "percentages", "mentions_item"}


@pytest.mark.parametrize(("locale", "title", "body", "ok"), [
    ("zh_CN", "帐篷降价啦", "Trailblazer 帐篷现价 $149.00，立减 21%！", True),
    ("zh_CN", "Tent sale", "Northwind Trailblazer Tent now $149.00", False),
    ("zh_CN", "降价", "Northwind Trailblazer Backpacking Tent now $149.00", False),
    ("en_US", "Tent sale", "Trailblazer tent now $149.00", True),
    ("en_US", "Tent sale 帐篷", "Trailblazer tent now $149.00", False),
    ("zh_CN", "21%", "Trailblazer 帐篷现价 $149.00，立减 21%！", False),  # a title in no language
    ("zh_CN", "Trailblazer Tent", "Trailblazer 帐篷现价 $149.00，立减 21%！", False),  # an English title
    ("en_US", "$149.00", "Trailblazer tent now $149.00", False),
    ("en_US", "21% off", "Trailblazer tent now $149.00", True),
])
def test_language_matches_locale(locale: str, title: str, body: str, ok: bool) -> None:
    from generator.check.guardrails import check_language

    assert check_language(title, body, GuardContext(items=[TENT], locale=locale)).passed is ok


def test_broken_characters_fail() -> None:
    from generator.check.guardrails import check_well_formed

    assert check_well_formed("帐篷", "现价 $149.00", CTX).passed
    assert not check_well_formed("帐\ufffd", "body", CTX).passed
    assert not check_well_formed("title", "bo\x07dy", CTX).passed


def test_copying_the_templates_example_answer_fails() -> None:
    from generator.check.guardrails import check_example_copy, check_sense

    example = "Title: 你可能会喜欢\nBody: 越野跑鞋降价啦，快来选购！"
    zh = GuardContext(items=[TENT], locale="zh_CN", example_texts=[example])
    assert not check_example_copy("帐篷", "Trailblazer 帐篷：越野跑鞋降价啦", zh).passed
    assert check_example_copy("帐篷降价啦", "Trailblazer 帐篷现价 $149.00，快来选购！", zh).passed
    # an example's title is a hook any push may use; one about another product fails sense, not example_copy
    assert check_example_copy("你可能会喜欢", "Trailblazer 帐篷现价 $149.00。", zh).passed
    assert not check_sense("越野跑鞋降价啦", "Trailblazer 帐篷现价 $149.00。", zh).passed
    en = GuardContext(items=[TENT], example_texts=["Body: The Lumen LED Camping Lantern dropped to $24.00 today."])
    assert not check_example_copy("Tent", "The Lumen LED Camping Lantern dropped to $149.00", en).passed
    assert check_example_copy("Tent", "The Trailblazer 2-Person Backpacking Tent dropped to $149.00", en).passed


def test_phrases_of_the_brands_own_template_copy_are_not_copying() -> None:
    """Generic phrasing the example shares with the brand's fallback copy (使用优惠码) is not a lifted phrase."""
    from generator.check.guardrails import check_example_copy

    example = "Title: 专属 15% 优惠券\nBody: 使用优惠码 TRAIL15 购买 Ridge Trail Running Shoes（$79.99）立享 15% 优惠。"
    body = "使用优惠码 HELLO15 购买 Trailblazer 帐篷（$149.00），立享 15% 优惠。"
    strict = GuardContext(items=[TENT], locale="zh_CN", example_texts=[example])
    assert not check_example_copy("帐篷优惠", body, strict).passed
    fallback = ["优惠码 HELLO15 立享 15% 优惠", "使用优惠码 HELLO15 购买 Trailblazer 帐篷（$149.00），点击查看。"]
    generic = GuardContext(items=[TENT], locale="zh_CN", example_texts=[example], generic_texts=fallback)
    assert check_example_copy("帐篷优惠", body, generic).passed
    assert not check_example_copy("跑鞋", "购买 Ridge Trail Running Shoes（$79.99）立享 15% 优惠", generic).passed


def test_following_the_examples_shape_with_the_users_facts_is_not_copying() -> None:
    from generator.check.guardrails import check_example_copy

    example = "Title: 专属 15% 优惠券\nBody: 使用优惠码 TRAIL15 购买 Ridge Trail Running Shoes（$79.99）立享 15% 优惠。"
    fallback = ["优惠码 HELLO15 立享 15% 优惠", "使用优惠码 HELLO15 购买 Trailblazer 帐篷，点击查看。"]
    ctx = GuardContext(items=[TENT], locale="zh_CN", example_texts=[example], generic_texts=fallback)
    own = f"使用优惠码 HELLO15 购买 {TENT.title}（$149.00）立享 15% 优惠。"
    assert check_example_copy("专属 15% 优惠券", own, ctx).passed


@pytest.mark.parametrize("text", ["Trailblazer 2-Person Backpacking Tent, now $149", "the Trailblazer tent",
                                  "Aurora mug", "Backpacking Tent and Ceramic Mug", "trailblazer backpacking",
                                  "nothing named here", "Aurora Ceramic Mug with a Trailblazer", "aurora ceramic"])
def test_the_items_a_copy_names_are_those_it_names_whole_or_in_part(text: str) -> None:
    from generator.check.guardrails import _names_item, _word_set

    lamp = Item(item_id="C9", title="Aurora Trailblazer Backpacking Lamp", brand="Aurora", price=Decimal("9.00"),
                currency="USD", in_stock=True, url="u")
    ctx = GuardContext(items=[TENT, MUG, lamp])
    rest = text.lower()
    whole = [it for it in ctx.items if it.title.lower() in rest or it.display_name.lower() in rest]
    for it in whole:
        rest = rest.replace(it.title.lower(), " ").replace(it.display_name.lower(), " ")
    expected = whole + [it for it in ctx.items if it not in whole and _names_item(
        rest, _word_set(rest), it, it.title.lower(), it.display_name.lower())] or ctx.items
    assert list(ctx.named_items(text)) == list(expected)


# texts for the shortcuts of the checks: ASCII and not, whitespace and control characters the patterns and str
# methods treat differently, case-insensitive matches outside ASCII (long s, Kelvin sign), Han, amounts at the seam
_TRICKY = ["", " ", "Tent", "Tent, tent!", "a\x1cb", "\x1c Tent \x1f", "\tTent\r\n\x0b", "Tent\x00\x7f",
           "ſale sale", "\u212aELVIN kelvin", "优惠 优惠", "ab优惠 ab优惠", "Tent 帐篷 帐篷", "Ａ ａ", "é É", "İ i",
           "Price drop: 20%", "...  ---  ", "帐篷，帐篷", "The the", "the, the", "the,the", "thethe the", "1 399",
           "US$5", "5 元"]


def test_bare_text_is_the_patterns_form() -> None:
    from generator.check.guardrails import _PUNCT_SPACE, _bare_text

    for a in _TRICKY:
        for text in (a, f"{a} {a[::-1]}", f"-{a}-", f"{a}\x1e"):
            assert _bare_text(text) == _PUNCT_SPACE.sub(" ", text).strip().lower(), text


def test_repeated_word_is_the_patterns_first_match() -> None:
    from generator.check.guardrails import _TWICE, _repeated_word

    for a in _TRICKY:
        for b in _TRICKY:
            text = f"{a} {b}"
            m = _TWICE.search(text)
            assert _repeated_word(text) == (m[0] if m else None), text
    rng = random.Random(5)  # ASCII copy (found by another pattern in the text lower-cased)
    pieces = ["Tent", "tent", "TENT", "te", "t", "Tents", "5", "x5", "_", "'", "-", " ", ",", ", ", "\n", "\t", "\x0b",
              "\x0c", "\r", "\x1c", "\x1f", ".", "a", "A", "aa", "Aa"]
    for _ in range(4000):
        text = "".join(rng.choices(pieces, k=rng.randrange(0, 9)))
        m = _TWICE.search(text)
        assert _repeated_word(text) == (m[0] if m else None), text


def test_amounts_of_title_and_body_joined_by_a_space() -> None:
    """The spans check_language masks are those of ``title body``, also where an amount may hold the space."""
    from generator.check.guardrails import _joined_money_spans
    from generator.core.formatting import _symbols, money_mentions, money_mentions_of_copy

    assert not any(" " in marker for marker in _symbols())  # no amount holds the space but next to a digit
    pairs = [("Save 20", "399 USD"), ("Now 20", "USD off"), ("Now US$", "5 today"), ("Only 1", "399,50 €"),
             ("Tent US$149.00", "was US$189.00"), ("帐篷 $149", "元 现价"), ("降价提醒", "US$26.35。"), ("", "5 USD")]
    for title, body in pairs + [(a, b) for a in _TRICKY for b in _TRICKY]:
        want = [m.span for m in money_mentions(f"{title} {body}")]
        assert _joined_money_spans(title, body) == want, (title, body)
        money_mentions_of_copy(title, body)  # the parts read off the copy, as run_checks has them
        assert _joined_money_spans(title, body) == want, (title, body)


def test_percent_prefilter() -> None:
    """Only ASCII letters match percent, per cent and pct case-insensitively; a text the filter rules out has no
    percentage."""
    import regex

    from generator.core.formatting import _PERCENT, _ZHE, _may_hold_percent

    every = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert not regex.search("[percnt]", every, regex.I)
    for text in _TRICKY + ["15 PERCENT", "15 Per Cent off", "15pct", "85折", "15％", "15 % off", "15 pc"]:
        assert _may_hold_percent(text) or not (_PERCENT.search(text) or _ZHE.search(text)), text


@pytest.mark.parametrize(("title", "body", "reason"), [
    ("Tent", "Trailblazer tent now $149.00", ""),
    ("Tent", "Your tent tent is $149.00", "repeats a word: 'tent tent'"),
    ("Tent", "Tap to see. Tap to see!", "repeats a sentence"),
    ("Tent", "Now $149.00, yes $149.00", "states the same amount twice: '$149.00'"),
    ("21% off", "The tent is 21% off", "the title and the body both give the 21% discount"),
    ("Tent", "The Trailblazer Tent Stakes is $9.00", "'trailblazer tent stakes' is plural: 'is'/'has' does not agree"),
    ("Tent", "The tent\ue000 now $149.00", "contains control or private-use characters"),
    ("Tent", "The tent {{name}} now $149.00", "contains template syntax or markup"),
    ("Tent", "The tent <b>now</b> $149.00", "contains template syntax or markup"),
])
def test_well_formed_reasons(title: str, body: str, reason: str) -> None:
    from generator.check.guardrails import check_well_formed

    stakes = Item(item_id="C3", title="Trailblazer Tent Stakes", brand="Trailblazer", price=Decimal("9.00"),
                  currency="USD", in_stock=True, url="u")
    r = check_well_formed(title, body, GuardContext(items=[TENT, stakes]))
    assert (r.passed, r.reason) == (not reason, reason)


def test_traditional_characters_outside_the_items_names() -> None:
    from generator.check.guardrails import check_well_formed

    lamp = Item(item_id="D4", title="會 Lamp", brand="Lumen", price=Decimal("9.00"), currency="USD", in_stock=True,
                url="u")
    zh = GuardContext(items=[lamp], locale="zh_CN")
    assert check_well_formed("台灯降价", "會 Lamp 现价 $9.00", zh).passed  # the item's own name
    assert not check_well_formed("台灯降价", "會 Lamp 現价 $9.00", zh).passed
    assert check_well_formed("檯燈", "會 Lamp 現價 $9.00", GuardContext(items=[lamp], locale="zh_TW")).passed
