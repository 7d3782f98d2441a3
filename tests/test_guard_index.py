"""Guardrails and choosing at speed: each index gives the answers of what it replaces."""

from __future__ import annotations

import random
from collections.abc import Iterable


def test_the_profanity_prefilter_never_hides_a_match() -> None:
    """Copy none of whose words begins a listed word skips the whole-word pattern; every text still gets the
    pattern's answer."""
    from better_profanity import profanity

    from generator.check.guardrails import _english_profanity, _may_swear, profanity_in

    profanity.load_censor_words()
    listed = [str(w) for w in profanity.CENSOR_WORDSET if str(w).isalpha()][:300]
    rng = random.Random(1)
    filler = ["Fresh", "deals", "on", "the", "Summit", "tent", "50%", "off!", "$19.99", "\n", "a", "class", "Ass-ets"]
    texts = ["Camp in comfort tonight", "what the hell", "HELL yes", "shell", "assessment", "帐篷 hell", "Kelvin K"]
    for _ in range(600):
        words = rng.choices(filler + rng.sample(listed, 2), k=rng.randrange(1, 10))
        texts.append(rng.choice([" ", "-", "_", ". ", ""]).join(rng.choice([w, w.upper(), w.title()]) for w in words))
    for t in texts:
        assert profanity_in(t, "en_US") == [m[0].lower() for m in _english_profanity().finditer(t)], t
    assert any(profanity_in(t, "en_US") for t in texts) and not all(_may_swear(t) for t in texts)


def test_the_near_duplicate_index_answers_as_comparing_with_every_text() -> None:
    from generator.check.guard_index import NearDuplicates
    from generator.check.guardrails import near_duplicate

    rng = random.Random(5)
    words = ["camp", "in", "comfort", "tonight", "the", "tent", "is", "here", "now", "$149", "帐篷", "降价", "啦",
             "fresh", "coffee", "every", "morning", "!", "Lamp", "lamp", ""]
    texts = [" ".join(rng.choices(words, k=rng.randrange(0, 12))) for _ in range(150)]
    texts += [t.upper() + "  " for t in texts[:40]] + ["", " ", "!", "帐篷降价啦帐篷降价啦"]
    for _ in range(100):  # near misses: a long text with one word changed, added or dropped
        base = rng.choices(words[:-1], k=rng.randrange(8, 20))
        k = rng.randrange(len(base))
        texts += [" ".join(base), " ".join(base[:k] + [rng.choice(words)] + base[k + 1:]),
                  " ".join(base[:k] + base[k + 1:])]
    rng.shuffle(texts)
    index, taken, plain, partial = NearDuplicates(), [], set(), 0
    for t in texts:  # ask, then take it (what choosing does user after user)
        want = any(near_duplicate(t, x) for x in taken)
        assert index.near(t) == want, (t, taken)
        partial += want and t.strip().lower() not in plain
        index.add(t)
        taken.append(t)
        plain.add(t.strip().lower())
    assert partial > 20 and NearDuplicates(taken[:5]).near(taken[3])  # near but unequal texts were found too


def test_names_are_blanked_as_the_names_pattern_blanks_them() -> None:
    import regex

    from generator.check.guardrails import _blanked

    rng = random.Random(7)
    names = ["Summit Tent", "summit", "Tent 2P", "Ox", "Trail-Chair (Blue)", "tent", "a.b"]
    pieces = ["SUMMIT TENT", "summit tent 2p", "ox", "Oxen", "trail-chair (blue)", "tents", "a.b", "aXb", " ", "!"]
    for _ in range(500):
        text = " ".join(rng.choices(pieces, k=rng.randrange(0, 7)))
        chosen = sorted(set(rng.sample(names, rng.randrange(1, len(names)))), key=len, reverse=True)
        want = regex.sub("|".join(regex.escape(n) for n in chosen), " ", text, flags=regex.I)
        assert _blanked(text, chosen) == want, (text, chosen)
    assert _blanked("帐篷 Summit Tent", ["summit tent"]) == "帐篷  "  # not ASCII: the pattern itself


def test_checked_copy_keeps_its_verdicts_only_under_an_equal_context() -> None:
    """run_checks keeps a copy's verdicts by the copy and its context's fields: a context equal in every field gets
    them again, one that differs in any field (a fact, a locale, the items, the policy, a field assigned anew) gets
    what checking it afresh gives."""
    from decimal import Decimal

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from generator.check.guardrails import _VERDICTS, DEFAULT_CHECKS, BrandPolicy, GuardContext, _run_checks, run_checks
    from generator.core.data import Item

    tent = Item(item_id="A1", title="Trailblazer 2-Person Backpacking Tent", brand="Trailblazer",
                price=Decimal("189.00"), sale_price=Decimal("149.00"), currency="USD", in_stock=True, url="u")
    mug = Item(item_id="B2", title="Aurora Ceramic Mug", brand="Aurora", price=Decimal("12.50"), currency="USD",
               in_stock=True, url="u")
    catalog = [tent, mug]
    words = ["Trailblazer", "tent", "Aurora", "mug", "$149.00", "$12.50", "$189", "24%", "10%", "today only", "best",
             "free", "HELLO10", "帐篷", "降价", "in your cart", "Price:", "\n", "!", "now", "cure", "Great"]
    contexts = st.builds(
        GuardContext, items=st.sampled_from([[tent], [mug], [tent, mug], [mug, tent]]),
        locale=st.sampled_from(["en_US", "zh_CN"]), catalog=st.sampled_from([(), catalog]),
        facts=st.sampled_from([{}, {"coupon_code": "HELLO10", "coupon_pct": 10}, {"ends_at": "Sunday"}]),
        quoted_texts=st.sampled_from([[], ["the tent is great today only"]]),
        prompt_text=st.sampled_from(["", "Price: $149.00\nWrite a push."]),
        campaign_type=st.sampled_from(["", "abandoned_cart", "price_drop"]),
        policy=st.sampled_from([BrandPolicy(), BrandPolicy(banned_words=["great"])]))
    texts = st.lists(st.sampled_from(words), max_size=8).map(" ".join)

    @settings(max_examples=300, deadline=None)
    @given(contexts, contexts, texts, texts)
    def same_as_fresh(ctx: GuardContext, other: GuardContext, title: str, body: str) -> None:
        run_checks(title, body, other)  # kept under the other context
        run_checks(title, body, other, fail_fast=True)
        full = _run_checks(title, body, ctx, DEFAULT_CHECKS, False)
        assert run_checks(title, body, ctx) == full
        fast = run_checks(title, body, ctx, fail_fast=True)  # the full verdict up to its first failing check
        assert fast == full[:len(fast)] and all(r.passed for r in fast) == all(r.passed for r in full)
        assert all(r.passed for r in fast[:-2])  # a check gives at most two results (lengths: title and body)
        ctx.facts = {"coupon_code": "BYE20"}  # assigned anew: checked afresh
        assert run_checks(title, body, ctx) == _run_checks(title, body, ctx, DEFAULT_CHECKS, False)
        assert run_checks(title, body, ctx, fail_fast=True) == _run_checks(title, body, ctx, DEFAULT_CHECKS, True)

    _VERDICTS.clear()
    same_as_fresh()
    assert _VERDICTS  # verdicts were kept (and given back equal to fresh ones)
    kept = [r for verdicts in _VERDICTS.values() for r in verdicts if r.passed and not r.reason]
    assert len({id(r) for r in kept}) == len({r.name for r in kept})  # a plain pass: one object per check, kept


def test_choosing_asks_about_fewer_texts_and_picks_as_the_full_order_does() -> None:
    """choose picks the minimum of (not passed, near-duplicate, failures, -click-through, position), asking the
    near-duplicate index only until it finds a fresh text in the best-passing group."""
    from generator.campaign.runner import Candidate, choose
    from generator.check.guard_index import NearDuplicates

    rng = random.Random(11)
    words = ["tent", "deal", "now", "camp", "tonight", "mug", "the", "is", "here"]
    for _ in range(400):
        taken = [" ".join(rng.choices(words, k=rng.randrange(2, 7))) for _ in range(rng.randrange(0, 6))]
        cands = []
        for _ in range(rng.randrange(1, 5)):
            body = " ".join(rng.choices(words, k=rng.randrange(1, 6)))
            c = Candidate(title=" ".join(rng.choices(words, k=2)), body=body, raw="", sampled=rng.random() < 0.5,
                          ctr=rng.choice([None, 0.1, 0.2]))
            c.checks = [{"name": "x", "passed": rng.random() < 0.7, "reason": ""} for _ in range(rng.randrange(0, 3))]
            cands.append(c)
        index = NearDuplicates(taken)

        def full(i: int, c: list[Candidate] = cands, index: NearDuplicates = index) -> tuple[object, ...]:
            x = c[i]
            return (not x.passed, index.near(f"{x.title} {x.body}"), sum(not k["passed"] for k in x.checks),
                    -(x.ctr or 0.0), i)

        assert choose(cands, index) is cands[min(range(len(cands)), key=full)]
        assert choose(cands, taken) is cands[min(range(len(cands)), key=full)]


def test_brands_are_found_as_the_brands_pattern_finds_them() -> None:
    """The facts check's brands, found by an automaton, are what ``findall`` of the alternation of the brands (longest
    first) between word boundaries finds, in its order: overlapping, nested and glued brands included."""
    import regex

    from generator.check.guardrails import CatalogIndex, _brands_in, _named_in, _names_automaton

    brands = ["ember & oak", "oak", "ember", "summit", "summit ridge", "ridge", "3m", "über"]
    pattern = regex.compile(r"(?<!\w)(?:" + "|".join(regex.escape(b) for b in sorted(brands, key=len, reverse=True))
                            + r")(?!\w)")
    index = CatalogIndex(titles=(), brand_names={}, vocabulary=frozenset(), names=_names_automaton((), brands))
    rng = random.Random(5)
    pieces = ["ember & oak", "ember", "oak", "soak", "summit ridge", "summitridge", "ridge", "3m", "3m's", "über",
              "überall", "_oak", "oak_", "-", "&", " ", "\n", "帐篷", "é"]
    for _ in range(2000):
        low = rng.choice(["", " "]).join(rng.choices(pieces, k=rng.randrange(0, 8)))
        assert _brands_in(low, _named_in(index, low)[1]) == pattern.findall(low), low


def test_chinese_product_nouns_are_found_as_the_longest_first_alternation_finds_them() -> None:
    import regex

    from generator.check.zh_products import ZH_PRODUCT_NOUNS, nouns_in

    pattern = regex.compile("|".join(sorted(map(regex.escape, ZH_PRODUCT_NOUNS), key=len, reverse=True)))
    rng = random.Random(7)
    pieces = [*ZH_PRODUCT_NOUNS, "游标", "卡", "尺", "这款", "的", "很好用", " ", "Caliper", "电"]
    for _ in range(500):
        text = "".join(rng.choices(pieces, k=rng.randrange(0, 8)))
        assert list(nouns_in(text)) == [m[0] for m in pattern.finditer(text)], text


def _tent_and_mug() -> tuple[object, object]:
    from decimal import Decimal

    from generator.core.data import Item

    tent = Item(item_id="A1", title="Trailblazer 2-Person Backpacking Tent", brand="Trailblazer",
                price=Decimal("189.00"), sale_price=Decimal("149.00"), currency="USD", in_stock=True, url="u")
    mug = Item(item_id="B2", title="Aurora Ceramic Mug", brand="Aurora", price=Decimal("12.50"), currency="USD",
               in_stock=True, url="u")
    return tent, mug


def test_a_passing_verdict_is_one_shared_result_equal_to_a_fresh_one() -> None:
    """The checks give back one frozen passing result per name (``passing``): equal to what they built before."""
    from generator.check.guardrails import DEFAULT_CHECKS, GuardContext
    from generator.check.result import CheckResult, passing

    tent, mug = _tent_and_mug()
    ctx = GuardContext(items=[tent, mug], catalog=[tent, mug])
    results = [r for check in DEFAULT_CHECKS
               for r in (lambda got: got if isinstance(got, list) else [got])(
                   check("Your tent is waiting", "The Trailblazer tent is now $149.00. Tap to see it.", ctx))]
    assert all(r.passed for r in results) and len(results) == len(DEFAULT_CHECKS) + 1  # lengths gives two
    for r in results:
        assert r == CheckResult(r.name, True) and r is passing(r.name)
    assert passing("prices") != passing("facts")


def test_a_contexts_derived_values_are_made_once_and_equal_fresh_ones() -> None:
    """``_Derived``'s values (``_once``, cached_property without its lock) are made at the first read, kept, and equal
    to what a fresh ``_Derived`` makes; a field assigned anew drops them."""
    from generator.check.guardrails import GuardContext, _Derived, _derived, _grouped, _once

    tent, mug = _tent_and_mug()
    ctx = GuardContext(items=[tent, mug], catalog=[tent, mug], example_texts=["Title: Hi\nBody: a b c d e f g h"])
    names = [n for n, v in vars(_Derived).items() if isinstance(v, _once | _grouped)]
    assert len(names) > 20 and isinstance(_Derived.item_names, _grouped)
    first = _derived(ctx)
    values = {n: getattr(first, n) for n in names}
    assert all(getattr(first, n) is values[n] for n in names)  # kept, not made again
    assert {n: getattr(_Derived(ctx), n) for n in names} == values
    ctx.items = [mug]
    assert _derived(ctx) is not first and _derived(ctx).fact_texts == (mug.title, mug.display_name)


def test_a_contexts_fingerprint_is_its_fields_values() -> None:
    """``_fingerprint``'s number is one per value of the fields ``dataclasses.fields`` lists, taken as before (dicts as
    sorted reprs, models as their repr, sequences as tuples, the catalog by identity); None where one is unhashable."""
    import dataclasses

    from pydantic import BaseModel

    from generator.check.guardrails import BrandPolicy, GuardContext, _fingerprint, _make_fingerprint

    def by_fields(ctx: GuardContext) -> tuple[object, ...]:  # what _make_fingerprint built before (the slow path)
        parts: list[object] = [type(ctx)]
        for f in dataclasses.fields(ctx):
            value = getattr(ctx, f.name)
            if f.name == "catalog":
                value = id(value)
            elif isinstance(value, dict):
                value = tuple(sorted((repr(k), repr(v)) for k, v in value.items()))
            elif isinstance(value, BaseModel):
                value = repr(value)
            elif isinstance(value, list | tuple):
                value = tuple(value)
            parts.append(value)
        return tuple(parts)

    tent, mug = _tent_and_mug()
    catalog = [tent, mug]
    made = [GuardContext(items=items, locale=locale, facts=facts, catalog=catalog, quoted_texts=quoted,
                         campaign_type=kind, policy=policy)
            for items in ([tent], [tent, mug], (tent, mug)) for locale in ("en_US", "zh_CN")
            for facts in ({}, {"coupon_pct": 10}) for quoted in ((), ["great"], [["unhashable"]])
            for kind in ("", "price_drop") for policy in (BrandPolicy(), BrandPolicy(banned_words=["x"]))]
    numbers: dict[tuple[object, ...], int | None] = {}
    for ctx in made:
        want = by_fields(ctx)
        assert _make_fingerprint(ctx) == want
        number = _fingerprint(ctx)
        hashable = not any(isinstance(q, list) for q in ctx.quoted_texts)
        assert (number is None) == (not hashable)
        if hashable:
            assert numbers.setdefault(want, number) == number  # equal values, one number
    assert len(set(numbers.values())) == len(numbers) > 40  # unequal values, other numbers


def test_a_contexts_values_read_off_its_items_facts_are_those_of_its_items() -> None:
    """What ``_Derived`` reads off each item's ``_ItemFacts`` (made once per item) is what reading the items gives."""
    from generator.check.guardrails import (
        GuardContext,
        _bare,
        _content_words,
        _derived,
        _facts_of,
        _name_words,
        _one_space,
        _stems,
    )
    from generator.core.data import Item

    tent, mug = _tent_and_mug()
    odd = Item(item_id="C3", title="Über  Lamp\tSet of 3 — Kelvin \u212a", brand="Über", price=1, currency="EUR",
               in_stock=True, url="u", category="Lamps", description="Warm lamps, 3 of them", short_name="Lamp Set")
    for items in ([tent], [tent, mug], [odd, tent, mug]):
        ctx = GuardContext(items=items)  # held: what is derived refers to its context weakly
        derived = _derived(ctx)
        texts = tuple(t for it in items for t in (it.title, it.display_name))
        assert derived.fact_texts == texts
        assert derived.spaced_facts == [_one_space(t.lower()) for t in texts]
        assert derived.names_low == {t.lower() for t in texts}
        assert derived.bare_names == {_bare(t) for t in texts}
        assert derived.name_words == {w for it in items for w in _content_words(it.display_name)}
        assert derived.sense_words == frozenset().union(*(_stems(t) for it in items for t in (
            it.title, it.display_name, it.category, it.description, it.brand)))
        for word in [*derived.sense_words, "lamp", "lamps", "tent", "mug", "über", "kelvin", "", "zzz", "3"]:
            assert derived.has_sense_word(word) == (word in derived.sense_words), word
        for it, (every, short, title) in zip(items, derived.item_words, strict=True):
            assert (short, title) == (_name_words(it.display_name), _name_words(it.title))
            assert every == frozenset(short + title)
        # the values made in one pass (_item_views) are those each value's own comprehension made
        facts = [_facts_of(it) for it in items]
        assert derived.item_names == [(it, it.title.lower(), it.display_name.lower()) for it in items]
        assert derived.name_heads == [f.head for f in facts if f.head is not None] and derived.name_heads
        assert derived.pack_singulars == [f.pack for f in facts if f.pack is not None]
        assert derived.spaced_text == "\n".join(derived.spaced_facts)
        assert derived.blank_names == tuple(sorted({n for n in texts if n}, key=len, reverse=True))
        assert derived.own_ids == {it.item_id for it in items}
        assert derived.own_brands == {it.brand.lower() for it in items if it.brand}


def test_the_brand_pretest_gives_the_facts_verdict_of_every_brand_found() -> None:
    """``_other_products`` passes a copy at once where the user's items have every brand its automaton finds anywhere
    in it; every copy gets the verdict of looking at each whole-word brand it names."""
    import regex

    from generator.check.guardrails import GuardContext, _brands_in, _derived, _other_products, catalog_index
    from generator.core.data import Item

    brands = ["Ember & Oak", "Oak", "Summit", "Summit Ridge", "Ridge", "3M", "Über", "Aurora"]
    catalog = [Item(item_id=f"I{k}", title=f"{b} Thing {k}", brand=b, price=5, currency="USD", in_stock=True,
                    url="u") for k, b in enumerate(brands)]
    rng = random.Random(9)
    pieces = ["ember & oak", "Ember", "oak", "soak", "Summit Ridge", "summitridge", "ridge", "3M", "3m's", "über",
              "überall", "aurora", "-", " ", "帐篷", "now $5", "Thing"]
    failed = 0
    for _ in range(1500):
        ctx = GuardContext(items=rng.sample(catalog, rng.randrange(1, 3)), catalog=catalog)
        text = " ".join(rng.choices(pieces, k=rng.randrange(0, 7)))
        got = _other_products(text, ctx)
        index, derived, low = catalog_index(catalog), _derived(ctx), text.lower()
        if any(it_id not in derived.own_ids for it_id, title, _ in index.titles if title in low):
            continue  # another product's title: decided before the brands
        other = next((b for b in set(_brands_in(low, brand_hits(low, index.brand_names))) if b not in derived.own_brands
                      and not regex.search(rf"(?<!\w){regex.escape(b)}(?!\w)", derived.own_low)), None)
        assert got.passed == (other is None), (text, [it.brand for it in ctx.items])
        failed += other is not None
    assert failed > 100


def test_a_prompts_labels_are_found_at_its_lines_starts_as_the_label_pattern_finds_them() -> None:
    """``_prompt_parts`` tries the label pattern at the starts of a prompt's lines (``_label_starts``), and a line only
    where it has a colon (``_has_label``): what ``findall`` over the whole prompt and a match per line give."""
    from generator.check.guardrails import _LABEL, _has_label, _label_starts, _prompt_parts
    from generator.core.formatting import matches_at

    rng = random.Random(13)
    pieces = ["Price", "Product", "：", ":", " ", "\n", "\n\n", "\r\n", "\x0b", "\u2028", "\t", "Write a push.", "价格",
              "A shopper's review (quoted data)", "x" * 70, "$19.99", "«", "Title"]
    for _ in range(3000):
        prompt = "".join(rng.choices(pieces, k=rng.randrange(0, 12)))
        found = [m[1] for m in matches_at(_LABEL, prompt, _label_starts(prompt))]
        assert found == _LABEL.findall(prompt), prompt
        for line in prompt.lower().splitlines():
            assert _has_label(line) == (_LABEL.match(line) is not None), line
        labels, lines = _prompt_parts(prompt)
        assert {label for label, _ in labels} == {m.strip().lower() for m in _LABEL.findall(prompt)}


def test_the_amounts_and_discounts_read_off_items_facts_are_the_items_own() -> None:
    """``allowed_amounts``, ``allowed_percentages`` and ``prices_of`` read each item's facts (``_facts_of``: by
    identity, else by value): what reading the items' prices, sale prices and discounts gives (``prices_of`` one item:
    what the item's facts keep, made once per item)."""
    from decimal import Decimal

    from generator.check.guardrails import GuardContext, _derived, _facts_of, _item_facts
    from generator.core.data import Item

    rng = random.Random(21)
    prices = [Decimal("189.00"), Decimal("149.5"), Decimal("12.34"), Decimal("0"), Decimal("990"), Decimal("466")]
    items = []
    for k in range(60):
        price = rng.choice(prices)
        sale = rng.choice([None, *[p for p in prices if p < price]])
        items.append(Item(item_id=f"I{k}", title=f"Thing {k}", price=price, sale_price=sale, in_stock=True, url="u",
                          currency=rng.choice(["USD", "EUR"]), stated_discount_pct=rng.choice([None, None, 15])
                          if sale is not None else None))
    cents = Decimal("0.01")
    for k in range(300):
        chosen = [items[k % len(items)]] if k % 3 == 0 else rng.sample(items, rng.randrange(1, 5))
        ctx = GuardContext(items=chosen, facts=rng.choice([{}, {"coupon_pct": 10}]))
        want: dict[Decimal, set[str]] = {}
        for it in chosen:
            for amount in (it.price, it.sale_price):
                if amount is not None:
                    want.setdefault(Decimal(amount).quantize(cents), set()).add(it.currency)
        assert ctx.allowed_amounts() == want == ctx.allowed_amounts(chosen)
        assert ctx.allowed_percentages(chosen) == {it.discount_pct for it in chosen if it.discount_pct} \
            | ctx.extra_percentages
        listed = {it.price.quantize(cents) for it in chosen if it.discount_pct} \
            - {it.current_price.quantize(cents) for it in chosen}
        assert _derived(ctx).prices_of(chosen) == (want, frozenset(want), frozenset(listed))
    again = items[0].model_copy()  # equal, not the same object: its facts by value
    assert again is not items[0] and _facts_of(again) == _facts_of(items[0]) == _item_facts(items[0])


def test_a_runs_words_are_its_letters_and_digits_lower_cased_without_possessives() -> None:
    """``_run_words`` (ASCII runs by ``str.lower`` and ``[a-z0-9]+``, the possessive removed only where there is one)
    gives the words of the patterns it replaces, and ``_amount_spans`` (kept per title) a title's amounts' spans."""
    import regex

    from generator.check.guardrails import _amount_spans, _run_words
    from generator.core.formatting import money_mentions, percent_mentions

    rng = random.Random(17)
    pieces = ["Harbor", "HOME", "o'Neil's", "Kid's", "KID'S", "5-Tier", "Über", "ſ", "\u212a", " ", "\n", "&", "'s",
              "s'", "帐篷", "x2", "$5", "15%", "折"]
    for _ in range(3000):
        run = "".join(rng.choices(pieces, k=rng.randrange(0, 6)))
        want = tuple(w.lower() for w in regex.findall(r"[\p{L}\p{N}]+", regex.sub(r"'s\b", "", run)))
        assert _run_words.__wrapped__(run) == want, run
        spans = [m.span for m in money_mentions(run)] + [m.span for m in percent_mentions(run)]
        assert _amount_spans(run) == tuple(spans), run


def test_the_verb_phrases_and_language_names_read_off_items_facts_are_the_items_own() -> None:
    """The plural check's phrases and the language check's names, read off the items' facts, are those of the fact
    texts and of the items' titles, display names and brands."""
    from generator.check.guardrails import GuardContext, _derived, _plural_with_verb, _verb_phrases
    from generator.core.data import Item
    from generator.core.names import ends_plural

    tent, mug = _tent_and_mug()
    brads = Item(item_id="B7", title="Bostitch Brads 18GA", short_name="Bostitch Brads", brand="Bostitch",
                 price=1, currency="USD", in_stock=True, url="u")
    lugs = Item(item_id="L8", title="Copper Lugs", brand="", price=1, currency="USD", in_stock=True, url="u")
    for items in ([tent], [mug, tent], [brads, tent, lugs], [lugs, brads]):
        ctx = GuardContext(items=items)
        assert _plural_with_verb("nothing is here", ctx) is None
        phrases = _verb_phrases(_derived(ctx).fact_texts)
        assert ctx.__dict__["_derived"]["plural_verb_phrases"] == tuple(v for v in phrases if ends_plural(v[0]))
        for low in ("the bostitch brads is here", "copper lugs has it", "bostitch brads 18ga is", "the tent is up",
                    "copper lugs is and bostitch brads has", " is ", "copper lugs are"):
            # every phrase tried, in order (as before only plural names' phrases were kept per context)
            want = next((n for name, n, is_, has in phrases if (is_ in low or has in low) and ends_plural(name)), None)
            assert _plural_with_verb(low, ctx) == want, (low, want)
        want = sorted({n for it in items for n in (it.title, it.display_name, it.brand) if n}, key=len, reverse=True)
        assert list(_derived(ctx).language_names) == want


def test_new_copy_is_checked_without_its_contexts_fingerprint_and_kept_from_its_second_check() -> None:
    """A copy never checked has no kept verdicts under any context: ``run_checks`` checks it without making its
    context's fingerprint; from its second check its verdicts are kept, and an equal context gets them back."""
    from generator.check.guardrails import _SEEN, _VERDICTS, DEFAULT_CHECKS, GuardContext, _run_checks, run_checks

    tent, mug = _tent_and_mug()
    ctx, same = GuardContext(items=[tent, mug]), GuardContext(items=[tent, mug])
    title, body = "Your tent is waiting", "The Trailblazer tent is now $149.00, down from $189."
    _SEEN.clear()
    _VERDICTS.clear()
    first = run_checks(title, body, ctx)
    assert "fingerprint" not in ctx.__dict__.get("_derived", {}) and not _VERDICTS
    second = run_checks(title, body, same)
    assert len(_VERDICTS) == 1 and "fingerprint" in same.__dict__["_derived"]
    kept = next(iter(_VERDICTS.values()))
    third = run_checks(title, body, ctx)
    assert first == second == third == _run_checks(title, body, ctx, DEFAULT_CHECKS, False)
    assert all(a is b for a, b in zip(third, kept, strict=True))  # given back from what was kept


def test_the_capitalised_runs_of_ascii_copy_are_found_as_the_runs_pattern_finds_them() -> None:
    """``_ascii_head_pattern`` (the ``re`` module, ASCII classes) finds in ASCII text the matches, and their runs, that
    the pattern of ``_name_head`` finds; a head noun outside ASCII has none (the pattern of ``_name_head`` is used)."""
    from generator.check.guardrails import _ascii_head_pattern, _name_head

    assert _ascii_head_pattern("Café") is None
    rng = random.Random(23)
    pieces = ["Flask", "FLASKS", "flaskes", "Flat", "Bottom", "bottom", "The", "o'Neil's", "5-Tier", "A&B", "x2", "2L",
              "-", "'", "&", " ", "  ", "\n", "\t", "\x0b", "\x0c", "\r", "\x1c", "\x1f", ".", ",", "!", "_", "Ss", "s",
              "es", "(", "c++", "+", "Set", "set"]
    for head in ("Flask", "flask", "Bottom", "S", "", "c++", "Set", "Ta(b", "s"):
        name = f"Flat {head}s" if head else "Flat s"
        _, pattern, _, fast = _name_head("Flat Bottom Boiling Flask", "Lab", name)
        assert fast is not None and fast.pattern != pattern.pattern
        for _ in range(1500):
            text = "".join(rng.choices(pieces, k=rng.randrange(0, 12)))
            assert [(m.span(), m[1]) for m in fast.finditer(text)] == \
                [(m.span(), m[1]) for m in pattern.finditer(text)], (head, text)


def test_a_copys_letters_and_digits_are_its_words_split_at_apostrophes() -> None:
    """``_Copy.alnum_words`` (ASCII copy: its words split at their apostrophes) is ``[a-z0-9]+`` of the copy
    lower-cased."""
    import re

    from generator.check.guardrails import _Copy

    rng = random.Random(29)
    pieces = ["It", "'s", "'", "''", "don't", "O'Neil", "5", "x2", " ", "\n", "-", ".", "_", "é", "帐篷", "K", "\u212a",
              "ſ", "Lumen Co.'s", "rock'n'roll"]
    for _ in range(3000):
        title, body = ("".join(rng.choices(pieces, k=rng.randrange(0, n))) for n in (5, 8))
        copy = _Copy(title, body)
        assert copy.alnum_words == re.findall(r"[a-z0-9]+", copy.low), copy.text


def brand_hits(low: str, brands: Iterable[str]) -> list[tuple[int, str]]:
    """Each place a brand ends in ``low``, with the brand (overlapping ones too), found by testing every place."""
    return [(i + len(b) - 1, b) for b in brands for i in range(len(low)) if b and low.startswith(b, i)]


def test_the_catalogs_titles_and_brands_are_found_in_one_pass() -> None:
    """``_named_in`` (one automaton of titles and brands) gives the titles a copy has, in catalog order, and every
    place a brand ends in it, as testing each title and each place finds them: titles equal to a brand, to each
    other, nested in one another included."""
    from generator.check.guardrails import CatalogIndex, _named_in, _names_automaton

    names = ["Summit Tent", "Summit Tent 2P", "Oak", "Ember & Oak Mug", "Summit Tent", "Ridge", "über Kettle", "3M"]
    titles = tuple((f"I{i}", t.lower(), t) for i, t in enumerate(names))
    rng = random.Random(31)
    pieces = ["summit tent", "summit tent 2p", "oak", "ember & oak", "ember & oak mug", "soak", "ridge", "über",
              "über kettle", "3m", "tent", " ", "-", "\n", "帐篷"]
    for brands in ([], ["oak", "ember & oak", "summit", "ridge", "über", "3m"], ["summit tent"]):
        index = CatalogIndex(titles=titles, brand_names={}, vocabulary=frozenset(),
                             names=_names_automaton(titles, brands))
        for _ in range(800):
            low = rng.choice(["", " "]).join(rng.choices(pieces, k=rng.randrange(0, 7)))
            found, hits = _named_in(index, low)
            assert found == [t for t in titles if t[1] in low], low
            assert sorted(hits) == sorted(brand_hits(low, brands)), low


def test_a_coupon_code_like_token_is_found_as_with_the_word_boundary_before_it() -> None:
    """``_CODE_LIKE`` (the word boundary before a token's first letter as a lookbehind after it) finds what the pattern
    with ``\\b`` first finds, in any text."""
    import regex
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from generator.check.guardrails import _CODE_LIKE

    slow = regex.compile(r"\b[A-Z][A-Z0-9]{3,}\d+[A-Z0-9]*\b")
    pieces = st.sampled_from(["SAVE10", "AB12", "X", "ABCD", "1", "9", "_", "a", "é", "É", "ǅ", "\u0301", "-", " ",
                              "\n", "$", "CODE2024X", "帐", "٣", "\u200d"])

    @settings(max_examples=3000, deadline=None)
    @given(st.lists(pieces | st.characters(), max_size=10).map("".join))
    def same(text: str) -> None:
        assert [m.span() for m in _CODE_LIKE.finditer(text)] == [m.span() for m in slow.finditer(text)], text

    same()


def test_han_characters_are_counted_off_their_runs() -> None:
    """check_language counts the copy's Han characters as the lengths of its runs of them: what counting each
    character (``len(findall(r"\\p{Han}"))``) gives, in any mix of scripts."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from generator.check.guardrails import _HAN, _HAN_RUN

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.sampled_from(list("价格降了 Oak 3D，。¥$%\n") + ["\u3400", "\U00020000", "々", "〇"])))
    def same(text: str) -> None:
        assert sum(map(len, _HAN_RUN.findall(text))) == len(_HAN.findall(text))

    same()


def test_the_sense_words_are_made_only_where_a_chinese_product_noun_reads_them() -> None:
    """check_sense hands misnamed_product the items' stems lazily: the same verdict, the union made only where the
    copy names a Chinese product noun."""
    from generator.check.guardrails import GuardContext, _derived, check_sense

    tent, mug = _tent_and_mug()
    ctx = GuardContext(items=[tent, mug], locale="zh_CN")
    assert check_sense("为你推荐", "现在降价了，快来看看。", ctx).passed
    assert "sense_words" not in vars(_derived(ctx))
    failed = check_sense("为你推荐", "你的手电筒现在降价了。", ctx)
    assert not failed.passed and "手电筒" in (failed.reason or "")
    assert "sense_words" in vars(_derived(ctx))


def test_the_kept_verdicts_drop_their_oldest_copy_when_full(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import generator.check.guardrails as guardrails
    from generator.check.guardrails import GuardContext, run_checks

    monkeypatch.setattr(guardrails, "_VERDICTS_MAX", 3)
    guardrails._SEEN.clear()
    ctx = GuardContext(items=[])
    for n in range(5):
        run_checks(f"Title {n}", "Body", ctx)
    assert [title for title, *_ in guardrails._SEEN] == ["Title 2", "Title 3", "Title 4"]
