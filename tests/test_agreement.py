"""Verb agreement and articles (generator.core.names, the runner's ``_agreed``): compiled once per name and derived
once per user, they give what the per-call versions they replace gave."""

from __future__ import annotations

from pathlib import Path

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.campaign.runner import Candidate, _agreed
from generator.check.guardrails import GuardContext
from generator.core.data import language_of, load_shop
from generator.core.names import _PLURAL_VERB, ends_plural, plural_agreement, with_article

ITEMS = load_shop(Path(__file__).resolve().parent.parent / "examples" / "shop").items
NAMES = sorted({n for it in ITEMS for n in (it.display_name, it.title)} |
               {"Bostitch Brads", "Copper Lugs", "Electrical Terminal Assortment", "Gorilla Glue", "Wipers (x)",
                "Brads+ Kit", "Lens Caps"})
PAIRS = sorted({(it.display_name, it.brand) for it in ITEMS} |
               {("Electrical Terminal Assortment", "Storehouse"), ("Gorilla Glue", "Gorilla"), ("", "X")})


def plural_agreement_before(text: str, names: list[str]) -> str:
    for name in (n for n in names if n and ends_plural(n) and n.lower() in text.lower()):
        text = regex.sub(rf"(?<![\p{{L}}\p{{N}}])({regex.escape(name)})\s+(is|has|was)\b",
                         lambda m: f"{m[1]} {_PLURAL_VERB[m[2].lower()]}", text, flags=regex.I)
    return text


def with_article_before(text: str, names: list[tuple[str, str]]) -> str:
    for name, brand in names:
        brandless = not brand or not name.lower().startswith(brand.split()[0].lower())
        if name and brandless and regex.match(rf"{regex.escape(name)}\s+(?:is|are)\b", text):
            return f"The {text}"
    return text


def agreed_before(cand: Candidate, ctx: GuardContext) -> Candidate:
    if language_of(ctx.locale) == "en":
        names = [t for it in ctx.items for t in (it.display_name, it.title)]
        cand.title, cand.body = plural_agreement_before(cand.title, names), plural_agreement_before(cand.body, names)
        cand.body = with_article_before(cand.body, [(it.display_name, it.brand) for it in ctx.items])
    return cand


def _cased(name: str, how: int) -> str:
    return (name, name.lower(), name.upper(), name.title())[how]


FILLER = st.sampled_from([" is", " has", " was", " are", " IS ", " Has", "  is\n", "-is", " isn't", " island",
                          "The ", "the ", ". ", ", ", " $12.49", "多", "ß"]) | st.text(max_size=6)


def copy_naming(names: list[str]) -> st.SearchStrategy[str]:
    """Copy made of ``names`` (in any case), verbs and other words."""
    named = st.sampled_from(names).flatmap(lambda n: st.integers(0, 3).map(lambda h: _cased(n, h))) if names \
        else FILLER
    return st.lists(named | FILLER, max_size=8).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(NAMES), max_size=10).flatmap(lambda names: st.tuples(st.just(names),
                                                                                     copy_naming(names))))
def test_plural_agreement_agrees_as_before(drawn: tuple[list[str], str]) -> None:
    names, text = drawn
    assert plural_agreement(text, names) == plural_agreement_before(text, names)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PAIRS), max_size=6).flatmap(
    lambda pairs: st.tuples(st.just(pairs), copy_naming([n for n, _ in pairs if n]))))
def test_with_article_gives_the_article_as_before(drawn: tuple[list[tuple[str, str]], str]) -> None:
    names, text = drawn
    assert with_article(text, names) == with_article_before(text, names)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=5, unique_by=lambda it: it.item_id),
       st.data(), st.sampled_from(["en_US", "en_GB", "de_DE"]))
def test_a_users_candidates_agree_as_before(items, data: st.DataObject, locale: str) -> None:
    copy = copy_naming([n for it in items for n in (it.display_name, it.title)])
    texts = data.draw(st.lists(st.tuples(copy, copy), min_size=1, max_size=4))
    ctx, fresh = GuardContext(items=items, locale=locale), GuardContext(items=items, locale=locale)
    for title, body in texts:  # one context for all of a user's candidates: its names are derived once
        ours = _agreed(Candidate(title=title, body=body, raw="", sampled=False), ctx)
        theirs = agreed_before(Candidate(title=title, body=body, raw="", sampled=False), fresh)
        assert (ours.title, ours.body) == (theirs.title, theirs.body)


def test_a_context_given_other_items_agrees_with_those() -> None:
    brads = next(it for it in ITEMS if ends_plural(it.display_name))
    ctx = GuardContext(items=[it for it in ITEMS if it is not brads][:3])
    text = f"{brads.display_name} is here"
    assert _agreed(Candidate(title=text, body=text, raw="", sampled=False), ctx).body == text
    ctx.items = [brads]  # what was derived from the old items goes with them
    assert _agreed(Candidate(title=text, body=text, raw="", sampled=False), ctx).body == \
        with_article_before(plural_agreement_before(text, [brads.display_name]), [(brads.display_name, brads.brand)])
