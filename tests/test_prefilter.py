"""Literal prefilters never hide a match: every text a pattern matches has one of the pattern's literals."""

from __future__ import annotations

import re

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import generator.check.guardrails as g
import generator.core.formatting as fmt
from generator.check.prefilter import BranchFilter, LiteralFilter, required_literals

PATTERNS = [g._SUPERLATIVE, g._URGENCY, g._SCARCITY, g._OFFER, g._SERVICE, g._BUDGET, g._VALUE, *g._EVENTS.values(),
            g._DISPARAGING, g._LINK, g._INSTRUCTION, g._HOOK, g._WAS, *g._DOINGS_FILTER.patterns]


def test_literals_of_small_patterns() -> None:
    assert required_literals(regex.compile(r"#\s?1\b|no\.? ?1", regex.I)) == {"#", "no1", "no 1", "no.1", "no. 1"}
    assert required_literals(regex.compile(r"(?:was|from)\W*(?:at\W*)?$", regex.I)) == {"was", "from"}
    assert required_literals(regex.compile(r"ab(?:\w+ )?cd")) == {"ab"}
    assert required_literals(regex.compile(r"a|\d")) is None  # one branch has no literal
    assert required_literals(regex.compile(r"\p{Han}+最好")) is None  # the regex module's syntax: always scanned
    assert required_literals(regex.compile(r"Best", regex.I)) == {"best"}
    assert required_literals(regex.compile(r"Best")) == {"Best"}


@pytest.mark.parametrize("n", range(len(PATTERNS)))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_text_a_pattern_matches_keeps_the_pattern(n: int, data: st.DataObject) -> None:
    pattern = PATTERNS[n]
    flt = LiteralFilter(PATTERNS)
    try:
        re.compile(pattern.pattern, pattern.flags & (re.I | re.M))
    except re.error:
        pytest.skip("not in the re syntax (always scanned)")
    text = data.draw(st.from_regex(re.compile(pattern.pattern, pattern.flags & (re.I | re.M))))
    text = data.draw(st.sampled_from([text, text.upper(), text.title(), f"Now {text}!", f"{text}\n{text.lower()}"]))
    if pattern.search(text):
        assert n in flt.candidates(text), (pattern.pattern[:60], text)


@pytest.mark.parametrize("text", ["KELVIN \u212a", "ſave", "İstanbul BEST", "Ünbeatable BEST deal", "最好的"])
def test_texts_with_cased_letters_outside_ascii_scan_every_case_insensitive_pattern(text: str) -> None:
    flt = LiteralFilter(PATTERNS)
    hits = {n for n, p in enumerate(PATTERNS) if p.search(text)}
    assert hits <= flt.candidates(text)
    if not text.isascii() and any(ch.lower() != ch.upper() for ch in text if ord(ch) > 127):
        assert flt.candidates(text) >= {n for n, p in enumerate(PATTERNS) if p.flags & regex.I}


_PIECES = ["1", "19.99", "1,399", "1 399,50", "1.399", "05", " ", "\n", "\t", "\u00a0", "\u202f", "'", "’", "now",
           "was", "Save", "US", "off", "%", "元", ".", ",", "-", "k", "\u212a", "ſ", "É", "zł", "ZŁ", "lei", "LEI"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES + sorted(fmt._symbols()) + [m.upper() for m in fmt._symbols()]),
                min_size=1, max_size=10))
def test_money_is_found_where_it_was_found_trying_every_marker_opening(pieces: list[str]) -> None:
    text = "".join(pieces)
    runs = [m.start() for m in fmt._DIGIT_RUN.finditer(text)]
    if not runs or not fmt.lower_is_exact(text):
        return
    before, after = fmt._money_patterns()
    every = [fmt._marker_starts(text, runs), [d for d in runs if fmt._NUMBER_START.match(text, d)]]
    marked = fmt._marked_starts(text, runs, every[1])
    for pattern, a, b in zip((before, after), every, marked, strict=True):
        assert [m.span() for m in fmt.matches_at(pattern, text, a)] == \
            [m.span() for m in fmt.matches_at(pattern, text, b)]


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(["a", "\x01", '"', "\\", "é", "价", "👍", "\n"]), max_size=900),
       st.text(st.sampled_from(["b", "\x1f", '"', "€", "\u2028"]), max_size=900), st.sampled_from(["", "https://x.y/p"]))
def test_payload_size_passes_what_the_payloads_measure(title: str, body: str, link: str) -> None:
    from generator.check.guardrails import GuardContext, check_payload_size, push_payloads
    from generator.core.payload import MAX_PAYLOAD_BYTES, encoded_size

    fits = max(encoded_size(v) for v in push_payloads(title, body, link).values()) <= MAX_PAYLOAD_BYTES
    assert check_payload_size(title, body, GuardContext(items=[]), link).passed is fits


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES + ["USD", "usd", "$", "¥", "€", "元", "\n"]), max_size=8),
       st.lists(st.sampled_from(_PIECES + ["USD", "usd", "$", "¥", "€", "元", "\n"]), max_size=8))
def test_a_copys_title_and_body_amounts_read_off_the_copy_are_their_own(title: list[str], body: list[str]) -> None:
    title_text, body_text = "".join(title), "".join(body)
    fmt._PARTS.clear()
    fmt._money_mentions.cache_clear()
    whole = fmt.money_mentions_of_copy(title_text, body_text)
    assert whole == list(fmt._money_mentions(f"{title_text}\n{body_text}"))
    assert fmt.money_mentions(title_text) == list(fmt._money_mentions(title_text))
    assert fmt.money_mentions(body_text) == list(fmt._money_mentions(body_text))


@pytest.mark.parametrize("n", range(len(PATTERNS)))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_pattern_cut_to_the_alternatives_a_text_has_finds_the_same_matches(n: int, data: st.DataObject) -> None:
    pattern = PATTERNS[n]
    flt = BranchFilter(PATTERNS)
    try:
        text = data.draw(st.from_regex(re.compile(pattern.pattern, pattern.flags & (re.I | re.M))))
    except re.error:
        text = data.draw(st.sampled_from(["最好的 best", "Lace up now", "today only!"]))
    other = data.draw(st.from_regex(re.compile(PATTERNS[(n + 1) % len(PATTERNS)].pattern, re.I)) if n % 2 else
                      st.sampled_from(["", "the best deal", "new in", "ends today"]))
    text = data.draw(st.sampled_from([text, text.upper(), f"Now {text}! {other}", f"{other}\n{text.lower()}"]))
    scan = flt.scans(text)[pattern]
    assert [m.span() for m in pattern.finditer(text)] == ([m.span() for m in scan.finditer(text)] if scan else [])


def test_the_branch_filter_cuts_top_level_and_grouped_alternatives_only() -> None:
    flt = BranchFilter([regex.compile(r"\b(?:best|the only|most (?:loved|trusted))\b|最好|#\s?1", regex.I),
                        regex.compile(r"(a)\1|bb"), regex.compile(r"(?:x|yy)?z|q")])
    cut, backref, optional = (flt.scans("THE BEST one")[p] for p in flt.patterns)
    assert cut is not None and cut.pattern == r"\b(?:best)\b"
    assert backref is None  # a pattern with a back reference is kept whole, or ruled out whole
    assert flt.scans("aa")[flt.patterns[1]] is flt.patterns[1]
    assert optional is None and flt.scans("z")[flt.patterns[2]].pattern == r"(?:x|yy)?z"  # an optional group: whole
    assert flt.scans("xz q")[flt.patterns[2]].pattern == r"(?:x|yy)?z|q"
    assert flt.scans("most loved")[flt.patterns[0]].pattern == r"\b(?:most (?:loved|trusted))\b"
    assert all(p is q for p, q in flt.scans("İstanbul BEST").items())  # a cased letter outside ASCII: all whole


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES + sorted(fmt._symbols()) + [m.upper() for m in fmt._symbols()]),
                min_size=1, max_size=10))
def test_the_money_scan_finds_what_scanning_every_place_finds(pieces: list[str]) -> None:
    """``_money_scan`` (the patterns tried only where they may match, the found spans kept aside) gives the mentions
    and match spans of ``finditer`` over the whole text, each match kept where it overlaps no mention found before."""
    text = "".join(pieces)
    assert fmt._money_scan(text) == money_scan_by_finditer(text), text


def money_scan_by_finditer(text: str) -> tuple[list[fmt.MoneyMention], list[tuple[int, int]]]:
    """What ``_money_scan`` must give: ``finditer`` of each pattern over the whole text, each match kept where it
    overlaps no mention found before; the mentions in order, and every match's span."""
    before, after = fmt._money_patterns()
    found: list[fmt.MoneyMention] = []
    spans: list[tuple[int, int]] = []
    for pattern in (before, after, fmt._BARE):
        for m in pattern.finditer(text):
            spans.append(m.span())
            amounts = fmt._readings(m["num"].strip() if pattern is not fmt._BARE else m[0])
            if (amounts or pattern is fmt._BARE) and not any(f.span[0] < m.end() and m.start() < f.span[1]
                                                             for f in found):
                found.append(fmt.MoneyMention(amounts, fmt.currencies_of(m["cur"]) if pattern is not fmt._BARE
                                              else frozenset(), m[0], m.span()))
    return sorted(found, key=lambda x: x.span), spans
