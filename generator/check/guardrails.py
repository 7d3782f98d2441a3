"""Guardrails: named checks that every candidate message must pass before anyone may send it.

Each check returns a :class:`CheckResult` (name, passed, reason). Lengths are counted in grapheme clusters
(what a person sees as one character: an emoji with modifiers, a Chinese character), and the whole push
payload is measured in bytes after JSON encoding, as FCM and APNs do.
"""

from __future__ import annotations

import itertools
import re
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import lru_cache
from typing import Any, Generic, TypeVar

import ahocorasick
import regex
from pydantic import BaseModel, ConfigDict, Field

from generator.check.brand import BrandGuidelines, check_brand
from generator.check.guard_index import WORDS, memo, shingles, word_shingles
from generator.check.prefilter import BranchFilter, LiteralFilter
from generator.check.result import CheckResult, passing
from generator.check.zh_products import misnamed_product
from generator.core.data import Item, language_of
from generator.core.formatting import (
    lower_is_exact,
    mask,
    matches_at,
    money_mentions,
    money_mentions_of_copy,
    percent_mentions,
)
from generator.core.names import ends_plural, pack_singular
from generator.core.payload import BUILDERS, MAX_PAYLOAD_BYTES, encoded_size, plain_push
from generator.write.prompts import quote_user_text

# patterns compiled once: the regex module's own functions look each pattern up (or parse it again, once its cache
# of a few hundred is full) at every call, and the checks build patterns from words and names
_re = lru_cache(maxsize=1 << 14)(regex.compile)
_escape = lru_cache(maxsize=1 << 14)(regex.escape)


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




class BrandPolicy(BaseModel):
    """A brand's rules for its copy (YAML in a campaign file, or the defaults)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt rule is an error, never silently ignored
    banned_words: list[str] = Field(default_factory=lambda: ["guaranteed", "miracle", "cure", "risk-free",
                                                             "lowest price ever", "100%"],
                                    description="Words or phrases that must never appear (case-insensitive).")
    required_disclaimer: str | None = Field(default=None, description="Text every body must contain.")
    platforms: list[str] = Field(default_factory=lambda: ["ios", "android"],
                                 description="Platforms whose visible-length limits apply (the strictest wins).")
    guidelines: BrandGuidelines | None = Field(default=None, description="The brand's guideline object "
                                               "(generator.check.brand): tone, emoji, phrases per locale, "
                                               "capitalisation.")


@dataclass
class GuardContext:
    """What the copy may claim: the user's ranked items (the featured one first), the campaign's facts,
    the catalog (to catch other products and brands), the shopper texts that were in the prompt, the policy."""

    items: Sequence[Item]
    locale: str = "en_US"
    facts: dict[str, object] = field(default_factory=dict)  # e.g. {"coupon_code": "HELLO10", "coupon_pct": 10}
    catalog: Sequence[Item] = ()
    quoted_texts: Sequence[str] = ()  # shopper-written texts (reviews) the prompt quoted
    example_texts: Sequence[str] = ()  # the template's few-shot example answers (about other products)
    generic_texts: Sequence[str] = ()  # the brand's own template copy for this user (the fallback): never "copied"
    prompt_text: str = ""  # the user turn the model was given (its fact labels must not come back in the copy)
    campaign_type: str = ""  # what the campaign says happened: only an abandoned-cart push may speak of the cart
    policy: BrandPolicy = field(default_factory=BrandPolicy)

    def __setattr__(self, name: str, value: object) -> None:
        self.__dict__.pop("_derived", None)  # what the checks derived from the old value (guard_index.memo)
        object.__setattr__(self, name, value)

    def for_template_copy(self) -> GuardContext:
        """What the brand's template-only copy (the fallback: :attr:`generic_texts`) is held to: this context cut to
        the featured item, without the prompt, the quoted reviews and the few-shot examples. Template copy says what
        its template and the featured item's facts put in it: it names no other ranked item, and cannot echo the
        prompt or copy a shopper's review or an example answer (what those checks catch a model doing). Users who
        share their featured item (and locale, campaign and policy) get equal contexts, so the fallback's verdict
        is kept for them all (:func:`run_checks`)."""
        return GuardContext(items=list(self.items[:1]), locale=self.locale, facts=self.facts, catalog=self.catalog,
                            generic_texts=self.generic_texts, campaign_type=self.campaign_type, policy=self.policy)

    @property
    def platforms(self) -> Sequence[str]:
        return self.policy.platforms

    @property
    def extra_percentages(self) -> set[int]:
        pct = self.facts.get("coupon_pct")
        return {int(pct)} if isinstance(pct, int | float | str) and str(pct).isdigit() else set()

    def named_items(self, text: str) -> Sequence[Item]:
        """The ranked items ``text`` names: those whose whole title it has, and those it names in part
        (``mentions_item``) outside these titles; all of them when it names none (``check_mentions_item`` fails that
        copy). A price or discount must belong to an item the copy names: 10% off item B in a push about item A is
        as wrong as an invented 10%."""
        return _derived(self).of_text("named", text, self._named_items)

    def _named_items(self, text: str) -> Sequence[Item]:
        derived = _derived(self)
        names, words = derived.item_names, derived.item_words
        rest = text.lower()
        found = [n for n, (_, title, short) in enumerate(names) if title in rest or short in rest]
        for n in found:
            rest = rest.replace(names[n][1], " ").replace(names[n][2], " ")
        present: frozenset[str] | None = None
        named = [names[n][0] for n in found]
        for n, (it, title, short) in enumerate(names):
            if n in found:
                continue
            if title in rest or short in rest:
                named.append(it)
            elif any(map(rest.__contains__, words[n][0])):  # else none of its words is in it: it is not named in part
                present = _word_set(rest) if present is None else present
                if _half_of(present, words[n][1]) or _half_of(present, words[n][2]):
                    named.append(it)
        return named or self.items

    def item_fact_texts(self) -> list[str]:
        """The items' own words: titles and display names. Sizes, counts, pack sizes and model numbers in them
        are facts of the item (allowed in copy about it), never a price, a discount or a coupon code."""
        return list(_derived(self).fact_texts)

    def allowed_amounts(self, items: Sequence[Item] | None = None) -> dict[Decimal, set[str]]:
        """The items' prices and sale prices, to the cent, each with the currencies it is in."""
        out: dict[Decimal, set[str]] = {}
        for facts in map(_facts_of, self.items if items is None else items):
            for amount in facts.amounts:
                out.setdefault(amount, set()).add(facts.currency)
        return out

    def allowed_percentages(self, items: Sequence[Item] | None = None) -> set[int]:
        return {f.discount for f in map(_facts_of, self.items if items is None else items) if f.discount} \
            | self.extra_percentages


_T = TypeVar("_T")
# what check_prices reads of some items (_Derived.prices_of): their amounts with their currencies, the amounts, and
# their prices before a discount that are none of theirs now
_Prices = tuple[dict[Decimal, set[str]], frozenset[Decimal], frozenset[Decimal]]


class _once(Generic[_T]):  # noqa: N801 - a decorator, named as functools.cached_property is
    """:class:`functools.cached_property` without its lock: made at the first read and kept in the instance's
    ``__dict__``, where every later read finds it without this descriptor. Python 3.11's takes a lock at each first
    read (3.12 dropped it as needless and slow), and a context's derived values are first read once per context."""

    def __init__(self, make: Callable[[Any], _T]):
        self.make, self.__doc__ = make, make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> _T:
        if obj is None:
            return self  # type: ignore[return-value]  # the class's attribute, as cached_property gives it
        value = obj.__dict__[self.name] = self.make(obj)
        return value


class _grouped:  # noqa: N801 - a descriptor, named as _once is
    """A value made with others by one function (``make(obj)`` gives each by its name) at the first read of any of
    them, each then kept in the instance's ``__dict__`` as :class:`_once` keeps its value: what several values read of
    a context's items is read in one pass (a context's values are first read once per context)."""

    def __init__(self, make: Callable[[Any], dict[str, Any]]):
        self.make = make

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        obj.__dict__.update(self.make(obj))
        return obj.__dict__[self.name]


class _Derived:
    """What the checks derive from a guard context, made once per context (a context serves its user's candidates
    and fallback) instead of once per check and candidate; and what they derive from one copy under it (the items
    it names, the copy with the items' names blanked), made once per copy instead of once per check."""

    def __init__(self, ctx: GuardContext):
        # the context holds this (its memo): held back weakly, so that no cycle keeps a chunk's contexts alive
        # until the cyclic collector walks them (it walked every object the chunk made, at the end of each run)
        self._ctx = weakref.ref(ctx)
        self._texts: dict[tuple[str, str], Any] = {}
        self._prices: dict[tuple[int, ...], _Prices] = {}

    @property
    def ctx(self) -> GuardContext:
        ctx = self._ctx()
        assert ctx is not None, "a context's derived values outlived it"
        return ctx

    def of_text(self, kind: str, text: str, make: Callable[[str], Any]) -> Any:
        key = (kind, text)
        if key not in self._texts:
            if len(self._texts) > 256:  # a context checked against many texts (tests, audits)
                self._texts.clear()
            self._texts[key] = make(text)
        return self._texts[key]

    @_once
    def item_facts(self) -> list[_ItemFacts]:
        return list(map(_facts_of, self.ctx.items))

    def _item_views(self) -> dict[str, Any]:
        """What the checks of every copy read of the items, made in one pass over the items' facts at the first read
        of any of them (:class:`_grouped`):

        - ``item_names``: each item with its title and display name lower-cased;
        - ``item_words``: each item's content words (the names' together), and those of its display name and its title
          (:func:`_names_item`), as ``item_names`` lists the items;
        - ``name_heads``: per item with a Latin head noun, its own words (title, brand, display name), the pattern of a
          capitalised run leading to its head noun (see ``_altered_name``), the head noun lower-cased, which every
          match has (None where a character of it has a case outside ASCII: no prefilter), and the pattern for ASCII
          copy;
        - ``pack_singulars``: per item sold as a pack under a derived plural name, the singular it stands for and its
          pattern (the catalog's own ``short_name`` is what the shop calls it: none) (:func:`_pack_as_one`);
        - ``fact_texts``: the items' titles and display names as written;
        - ``spaced_facts``: these lower-cased with runs of whitespace as one space (:func:`_is_item_fact`), and
          ``spaced_text``, them joined by newlines, which none of them has: a text without one is in it where it is in
          one of them;
        - ``blank_names``: the names :func:`_without_names` blanks, longest first;
        - ``names_low``: the titles and display names lower-cased, and ``bare_names``: without punctuation, symbols and
          spacing (:func:`check_title_hook`);
        - ``own_ids`` and ``own_brands``: the items' ids, and their brands lower-cased (:func:`_other_products`)."""
        item_names, item_words, heads, packs, texts, spaced, lows = [], [], [], [], [], [], []
        bare, ids, brands = set(), set(), set()
        for it, facts in zip(self.ctx.items, self.item_facts, strict=True):
            item_names.append((it, facts.title, facts.name))
            item_words.append(facts.words)
            if facts.head is not None:
                heads.append(facts.head)
            if facts.pack is not None:
                packs.append(facts.pack)
            texts += facts.texts
            spaced += facts.spaced
            lows += facts.lows
            bare.update(facts.bare)
            ids.add(it.item_id)
            if facts.brand:
                brands.add(facts.brand)
        fact_texts = tuple(texts)
        return {"item_names": item_names, "item_words": item_words, "name_heads": heads, "pack_singulars": packs,
                "fact_texts": fact_texts, "spaced_facts": spaced, "spaced_text": "\n".join(spaced),
                "blank_names": tuple(sorted(set(fact_texts).difference(("",)), key=len, reverse=True)),
                "names_low": set(lows), "bare_names": bare, "own_ids": ids, "own_brands": brands}

    item_names = _grouped(_item_views)
    item_words = _grouped(_item_views)
    name_heads = _grouped(_item_views)
    pack_singulars = _grouped(_item_views)
    fact_texts = _grouped(_item_views)
    spaced_facts = _grouped(_item_views)
    spaced_text = _grouped(_item_views)
    blank_names = _grouped(_item_views)
    names_low = _grouped(_item_views)
    bare_names = _grouped(_item_views)
    own_ids = _grouped(_item_views)
    own_brands = _grouped(_item_views)

    @_once
    def name_words(self) -> set[str]:
        """The content words of the items' display names (a two-word title with one of them is about the item)."""
        return {w for facts in self.item_facts for w in facts.words[1]}

    @_once
    def own_text(self) -> str:
        return " ".join(self.fact_texts)

    @_once
    def own_low(self) -> str:
        return self.own_text.lower()

    @_once
    def own_lower_exact(self) -> bool:
        """Whether :attr:`own_low` is the items' own text as case-insensitive matching reads it
        (:func:`~generator.core.formatting.lower_is_exact`)."""
        return lower_is_exact(self.own_text)

    def blanked(self, text: str) -> str:
        """``text`` without the items' names (:func:`_without_names`)."""
        return _blanked(text, self.blank_names)

    @_once
    def own_numbers(self) -> frozenset[str]:
        return _numbers_of(" ".join(self.fact_texts))

    @_once
    def every_amount(self) -> dict[Decimal, set[str]]:
        return self.ctx.allowed_amounts()

    def prices_of(self, items: Sequence[Item]) -> _Prices:
        """What :func:`check_prices` reads of some of the context's items: ``allowed_amounts`` (read only), its amounts,
        and the items' prices before a discount that are none of theirs now; made once per set of items (copy names
        the same few again and again)."""
        if len(items) == 1:  # copy names one item, mostly: what is read of it is made once per item
            return _facts_of(items[0]).prices
        key = tuple(map(id, items))  # the context holds its items: no id is reused while it lives
        if key not in self._prices:
            allowed, facts = self.ctx.allowed_amounts(items), list(map(_facts_of, items))
            listed = {f.listed for f in facts if f.listed is not None} - {f.current for f in facts}
            self._prices[key] = (allowed, frozenset(allowed), frozenset(listed))
        return self._prices[key]

    @_once
    def allowed_numbers(self) -> set[str]:
        return _allowed_numbers(self.ctx)

    @_once
    def language_names(self) -> tuple[str, ...]:
        names = {n for facts, it in zip(self.item_facts, self.ctx.items, strict=True) for n in (*facts.texts, it.brand)
                 if n}
        return tuple(sorted(names, key=len, reverse=True))

    @_once
    def sense_words(self) -> frozenset[str]:
        """Stems of the items' own words: names, categories, descriptions, brands (:func:`check_sense`)."""
        return frozenset().union(*(facts.stems for facts in self.item_facts))

    def has_sense_word(self, stem: str) -> bool:
        """Whether :attr:`sense_words` has ``stem``, read off the items' own stems (their union, a few hundred words,
        is made only where a check needs more than a few words of it)."""
        return any(stem in facts.stems for facts in self.item_facts)

    @_once
    def example_index(self) -> tuple[frozenset[str], frozenset[str]]:
        """The body phrases of the template's example answers, and their words (:func:`check_example_copy`)."""
        return _example_index(tuple(self.ctx.example_texts))

    @_once
    def own_phrases(self) -> frozenset[str]:
        """The phrases copy may share with the examples: the items' titles', the brand's own copy's."""
        return _example_phrases(" ".join([*(it.title for it in self.ctx.items), *self.ctx.generic_texts]))

    @_once
    def prompt_parts(self) -> tuple[tuple[tuple[str, regex.Pattern[str]], ...], tuple[str, ...]]:
        return _prompt_parts(self.ctx.prompt_text)

    @_once
    def quoted_index(self) -> tuple[frozenset[str], frozenset[str]]:
        """The 5-shingles of the quoted reviews, and their words (:func:`check_injection`)."""
        return _quoted_index(tuple(self.ctx.quoted_texts))


# an item's own words, the pattern of a capitalised run leading to its head noun, the head noun lower-cased, and the
# pattern for ASCII text (_ascii_head_pattern: None where the head noun is not ASCII)
_NameHead = tuple[frozenset[str], regex.Pattern[str], str | None, re.Pattern[str] | None]


@dataclass(frozen=True)
class _ItemFacts:
    """What the checks derive from one item, made once per item (items recur across a shop's users)."""

    title: str  # lower-cased
    name: str  # the display name lower-cased
    lows: tuple[str, str]  # these two (_Derived.names_low)
    brand: str  # its brand lower-cased (_Derived.own_brands)
    texts: tuple[str, str]  # its title and display name as written (_Derived.fact_texts)
    spaced: tuple[str, str]  # these lower-cased with runs of whitespace as one space (_Derived.spaced_facts)
    bare: tuple[str, str]  # these without punctuation, symbols and spacing, lower-cased (_Derived.bare_names)
    # the content words of its names together, of its display name and of its title (_Derived.item_words)
    words: tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]
    stems: frozenset[str]  # of its names, category, description and brand (_Derived.sense_words)
    numbers: frozenset[str]  # of its title, display name, price and sale price, and its discount (check_facts)
    currency: str
    amounts: tuple[Decimal, ...]  # its price and sale price (where it has one), to the cent
    current: Decimal  # its price now, to the cent
    listed: Decimal | None  # its price before a discount, to the cent (None: not discounted)
    discount: int | None  # its discount_pct
    verbs: tuple[tuple[str, str, str, str], ...]  # _verb_phrases of its texts (_plural_with_verb)
    head: _NameHead | None  # its entry of _Derived.name_heads
    pack: tuple[str, regex.Pattern[str]] | None  # its entry of _Derived.pack_singulars
    prices: _Prices  # _Derived.prices_of this item alone (read only: items recur across a shop's users)


def _facts_of(item: Item) -> _ItemFacts:
    """:func:`_item_facts`, looked up by the item's identity first: a context's items are the shop's own objects,
    which recur across its users, and hashing an item (the key of ``_item_facts``) hashes each of its fields."""
    hit = _HELD_FACTS.get(id(item))
    if hit is None or hit[0] is not item:
        if len(_HELD_FACTS) >= 1 << 14:
            _HELD_FACTS.clear()
        hit = _HELD_FACTS[id(item)] = (item, _item_facts(item))
    return hit[1]


_HELD_FACTS: dict[int, tuple[Item, _ItemFacts]] = {}  # id -> the item (held: no other takes its id) and its facts


@lru_cache(maxsize=1 << 14)
def _item_facts(item: Item) -> _ItemFacts:
    name = item.display_name
    pct = {str(item.discount_pct)} if item.discount_pct else set()
    numbers = frozenset().union(*(_numbers_of(t) for t in (item.title, name,
                                                           f"{item.price} {item.sale_price or ''}")), pct)
    one = "" if item.short_name else pack_singular(item.title, item.brand, item.category)
    pack = (one, _re(rf"(?<![\p{{L}}\p{{N}}]){_escape(one)}(?![\p{{L}}\p{{N}}])", regex.I)) if one else None
    texts, lows = (item.title, name), (item.title.lower(), name.lower())
    short_words, title_words = _name_words(name), _name_words(item.title)
    amounts = tuple(_cents(a) for a in (item.price, item.sale_price) if a is not None)
    current, listed = _cents(item.current_price), _cents(item.price) if item.discount_pct else None
    return _ItemFacts(
        title=lows[0], name=lows[1], lows=lows, brand=item.brand.lower(), texts=texts,
        spaced=(_one_space(lows[0]), _one_space(lows[1])), bare=(_bare(item.title), _bare(name)),
        words=(frozenset(short_words + title_words), short_words, title_words),
        stems=frozenset().union(*(_stems(t) for t in (*texts, item.category, item.description, item.brand))),
        numbers=numbers, currency=item.currency, amounts=amounts, current=current, listed=listed,
        discount=item.discount_pct, verbs=_verb_phrases(texts), head=_name_head(item.title, item.brand, name),
        pack=pack, prices=({a: {item.currency} for a in amounts}, frozenset(amounts),
                           frozenset({listed} - {current} if listed is not None else ())))


def _name_head(title: str, brand: str, display_name: str) -> _NameHead | None:
    """An item's entry of :attr:`_Derived.name_heads`, None where its display name ends on no Latin word."""
    name = display_name.split()
    if not name or not _re(r"\p{Latin}").search(name[-1]):
        return None
    own = frozenset(w.lower() for w in _re(r"[\p{L}\p{N}]+").findall(f"{title} {brand} {display_name}"))
    head = name[-1].rstrip("s")
    return (own, _re(rf"(?<![\p{{L}}\p{{N}}'-])((?:[\p{{Lu}}\p{{N}}][\p{{L}}\p{{N}}'&-]*\s+)+)"
                     rf"(?i:{_escape(head)}(?:e?s)?)(?![\p{{L}}\p{{N}}])"),
            head.lower() if lower_is_exact(name[-1]) else None, _ascii_head_pattern(head))


# the ASCII characters the regex module's \s matches (\t \n \v \f \r and the space), as a class
_ASCII_SPACES = "[" + "".join(regex.escape(c) for c in map(chr, range(128)) if regex.match(r"\s", c)) + "]"


@lru_cache(maxsize=1 << 12)
def _ascii_head_pattern(head: str) -> re.Pattern[str] | None:
    """The pattern of a capitalised run leading to ``head`` (:func:`_name_head`) for ASCII text, in the ``re`` module
    (a quarter faster over copy): an ASCII letter is one of ``A-Za-z`` (``A-Z`` in upper case), a digit one of
    ``0-9``, whitespace one of :data:`_ASCII_SPACES`, and an ASCII head noun matches only ASCII letters of ASCII text
    case-insensitively. None where ``head`` is not ASCII."""
    if not head.isascii():
        return None
    # the lookbehind after the run's first character (where the character before it is not part of a run if it is
    # not one of the class), which the pattern then opens on: ``re`` skips to the characters of that class
    word = f"[A-Za-z0-9'&-]*{_ASCII_SPACES}+"
    return re.compile(rf"([A-Z0-9](?<![A-Za-z0-9'-][A-Z0-9]){word}(?:[A-Z0-9]{word})*)"
                      rf"(?i:{re.escape(head)}(?:e?s)?)(?![A-Za-z0-9])")


@lru_cache(maxsize=1 << 14)
def _stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _re(r"\p{L}{3,}").findall(text.lower()))


@lru_cache(maxsize=1 << 14)
def _bare(text: str) -> str:
    return _bare_text(text)


_EXAMPLE_TITLE = regex.compile(r"(?im)^\s*title\s*[:：].*$")


@lru_cache(maxsize=1 << 12)
def _example_phrases(text: str) -> frozenset[str]:
    return frozenset(_han_runs(text, 5) | word_shingles(text, 7))


@lru_cache(maxsize=1 << 10)
def _example_index(examples: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """Every body phrase of the example answers, and every word of them. Their titles are hooks ("你可能会喜欢",
    "Picked for you"), which any push may use; a product word in one is ``sense``'s."""
    return _phrase_index([_example_phrases(_EXAMPLE_TITLE.sub("", e)) for e in examples])


def _phrase_index(sets: Sequence[frozenset[str]]) -> tuple[frozenset[str], frozenset[str]]:
    """The phrases of ``sets`` as one set, and the words of them (space-separated)."""
    phrases = frozenset().union(*sets)
    return phrases, frozenset(w for p in phrases for w in p.split(" "))


@lru_cache(maxsize=1 << 12)
def _prompt_parts(prompt: str) -> tuple[tuple[tuple[str, regex.Pattern[str]], ...], tuple[str, ...]]:
    """A prompt's fact labels with their patterns, and its unlabelled lines (:func:`check_prompt_echo`)."""
    labels = {m[1].strip().lower() for m in matches_at(_LABEL, prompt, _label_starts(prompt))}
    lines = (line.strip() for line in prompt.lower().splitlines())
    return (tuple((label, _re(rf"(?<!\w){_escape(label)}\s*[:：]")) for label in labels),
            tuple(line for line in lines if len(line) >= 6 and not _has_label(line)))


def _label_starts(text: str) -> list[int]:
    """Where a match of :data:`_LABEL` may start in ``text``: at a line's start (its ``^``) before a colon (every match
    ends on one; ``_LABEL.finditer`` tries every place of a prompt)."""
    if ":" not in text and "：" not in text:
        return []
    return [0, *(at + 1 for at, ch in enumerate(text) if ch == "\n")]


def _has_label(line: str) -> bool:
    """Whether :data:`_LABEL` matches at the start of ``line`` (never without a colon, which every match ends on)."""
    return (":" in line or "：" in line) and _LABEL.match(line) is not None


@lru_cache(maxsize=1 << 12)
def _quoted_shingles(quoted: str) -> frozenset[str]:
    """A quoted review's 5-shingles, as written and as the prompt quoted it (links replaced, markup gone)."""
    return frozenset(shingles(quoted, 5) | shingles(quote_user_text(quoted), 5))


@lru_cache(maxsize=1 << 10)
def _quoted_index(quoted: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """The 5-shingles of every quoted review, and their words."""
    return _phrase_index([_quoted_shingles(q) for q in quoted])


# guard_index's words (``[\p{L}\p{N}']+``) of a lower-cased text that is ASCII, where a letter is a-z and a digit 0-9
_ASCII_WORDS = re.compile(r"[a-z0-9']+")
_HAN_RUN = regex.compile(r"\p{Han}+")


class _Copy:
    """A copy (``title\\nbody``) as several checks read it, made once per copy: lower-cased, its words, its runs of
    Han characters, what to scan it with for claims, tone and links."""

    __slots__ = ("text", "low", "_words", "_han_runs", "_scans")

    def __init__(self, title: str, body: str):
        self.text = f"{title}\n{body}"
        self.low = self.text.lower()
        self._words: list[str] | None = None
        self._han_runs: list[str] | None = None
        self._scans: Mapping[regex.Pattern[str], regex.Pattern[str] | None] | None = None

    @property
    def words(self) -> list[str]:
        """The words :func:`~generator.check.guard_index.word_shingles` joins, in order."""
        if self._words is None:
            self._words = _ASCII_WORDS.findall(self.low) if self.low.isascii() else WORDS.findall(self.low)
        return self._words

    @property
    def alnum_words(self) -> list[str]:
        """The words (``[a-z0-9]+``) of the copy lower-cased: in ASCII copy, :attr:`words` (``[a-z0-9']+``) split at
        their apostrophes (each run of letters and digits lies in one of them, between its apostrophes)."""
        low = self.low
        if not low.isascii():
            return _ASCII_ALNUM.findall(low)
        return self.words if "'" not in low else " ".join(self.words).replace("'", " ").split()

    @property
    def han_runs(self) -> list[str]:
        """The runs of Han characters, in order."""
        if self._han_runs is None:
            self._han_runs = [] if self.text.isascii() else _HAN_RUN.findall(self.text)
        return self._han_runs

    @property
    def scans(self) -> Mapping[regex.Pattern[str], regex.Pattern[str] | None]:
        """What to scan the copy with for each pattern of claims, tone and links: None where it cannot match (none
        of the literals every match of it has is in the copy), else the pattern cut to the alternatives the copy has
        a literal of, which finds the same matches (:class:`generator.check.prefilter.BranchFilter`)."""
        if self._scans is None:
            self._scans = _COPY_FILTER.scans(self.text, self.low)
        return self._scans


@lru_cache(maxsize=256)
def _copy(title: str, body: str) -> _Copy:
    """The copy as the checks of one run read it (each check is given its title and body)."""
    return _Copy(title, body)


def _shared_shingles(words: Sequence[str], n: int, phrases: frozenset[str],
                     vocabulary: frozenset[str]) -> Iterator[str]:
    """The word n-grams of ``words``, joined as :func:`~generator.check.guard_index.word_shingles` joins them, that
    ``phrases`` has, in order; only runs of n words of ``vocabulary`` (every word of ``phrases``) are joined."""
    if sum(map(vocabulary.__contains__, words)) < n:
        return  # no n of them, let alone n in a row
    run = 0
    for i, w in enumerate(words):
        run = run + 1 if w in vocabulary else 0
        if run >= n and (shingle := " ".join(words[i - n + 1:i + 1])) in phrases:
            yield shingle


def _shared_grams(runs: Sequence[str], n: int, phrases: frozenset[str]) -> Iterator[str]:
    """The n-character pieces of each of ``runs`` that ``phrases`` has, in order."""
    return (run[i:i + n] for run in runs for i in range(len(run) - n + 1) if run[i:i + n] in phrases)


def _derived(ctx: GuardContext) -> _Derived:
    """What the checks derive from ``ctx`` (:func:`memo`'s entry ``guardrails``), read straight off the context's store
    when it is there: the checks ask for it some twenty times per copy."""
    store = ctx.__dict__.get("_derived")
    found = store.get("guardrails") if store is not None else None
    return found if found is not None else memo(ctx, "guardrails", lambda: _Derived(ctx))


def graphemes(text: str) -> int:
    """Length in user-perceived characters (extended grapheme clusters)."""
    if text.isascii() or not _joins(text):  # no character joins another: each is a cluster, but CR LF one
        return len(text) - text.count("\r\n")
    return len(_re(r"\X").findall(text))


# characters whose grapheme cluster break property is other than Other, Control, CR and LF (which join nothing, but CR
# then LF); a text without them has one cluster per character
_JOINS = regex.compile(r"[\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=Regional_Indicator}\p{GCB=Prepend}\p{GCB=SpacingMark}"
                       r"\p{GCB=L}\p{GCB=V}\p{GCB=T}\p{GCB=LV}\p{GCB=LVT}]")


def _joins(text: str) -> bool:
    """Whether ``text`` has a character of :data:`_JOINS`: found with :func:`_bmp_joins`, a set of plain code points
    (the regex module reads each character's property, some 40 ns a character: a Chinese copy took 4 µs), then with
    ``_JOINS`` itself where the first character that set finds lies outside the BMP (it has all of them)."""
    m = _bmp_joins().search(text)
    return m is not None and (m[0] <= "\uffff" or _JOINS.search(text) is not None)


@lru_cache(maxsize=1)
def _bmp_joins() -> re.Pattern[str]:
    """The characters of the BMP that :data:`_JOINS` matches, as ranges of code points read off ``_JOINS`` itself
    (once, some 10 ms), and every character outside the BMP: the re module looks a BMP character up in a table
    (a large set of ranges beyond it is read range by range, at every character)."""
    bmp = "".join(map(chr, range(0x10000)))
    ranges: list[list[int]] = []
    for m in _JOINS.finditer(bmp):
        c = m.start()
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    ranges.append([0x10000, 0x10FFFF])
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")


def _is_item_fact(matched: str, ctx: GuardContext) -> bool:
    """Whether a number-with-unit the parsers took for money or a percentage is written in an item's own title
    ("2.2 lbs", "+/- 2% Accuracy", "0.03 mm"): an item fact, not a price or a discount."""
    needle = _one_space(matched.strip().lower())  # never empty (it has a digit) and without a newline
    return needle in _derived(ctx).spaced_text


def _one_space(text: str) -> str:
    """``text`` with each run of whitespace as one space. A printable text has no whitespace but spaces (every other
    whitespace character is unprintable): without two spaces in a row, it is its own."""
    if text.isprintable() and "  " not in text:
        return text
    return _re(r"\s+").sub(" ", text)


def _cents(amount: Decimal) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"))


@lru_cache(maxsize=1 << 14)
def _numbers_of(text: str) -> frozenset[str]:
    return frozenset(n.lstrip("0") or "0" for n in _re(r"\d+(?:\.\d+)?").findall(text))


# --- checks -------------------------------------------------------------------------------------------------

def check_lengths(title: str, body: str, ctx: GuardContext) -> list[CheckResult]:
    limits = memo(ctx, "length_limits", lambda: _strictest(tuple(ctx.platforms)))
    n_title, n_body = graphemes(title), graphemes(body)
    if 0 < n_title <= limits.title and 0 < n_body <= limits.body:
        return [passing("title_length"), passing("body_length")]
    return [_length_result("title", n_title, limits.title), _length_result("body", n_body, limits.body)]


@lru_cache(maxsize=64)  # a campaign's contexts share their platforms
def _strictest(platforms: tuple[str, ...]) -> PlatformLimits:
    """The title and body limits that hold on every one of ``platforms``."""
    return PlatformLimits(title=min(PLATFORMS[p].title for p in platforms),
                          body=min(PLATFORMS[p].body for p in platforms))


def _length_result(part: str, n: int, limit: int) -> CheckResult:
    """The verdict on a part (title or body) ``n`` grapheme clusters long."""
    if n == 0:
        return CheckResult(f"{part}_length", False, f"{part} is empty")
    if n > limit:
        return CheckResult(f"{part}_length", False, f"{part} has {n} characters, limit {limit}")
    return passing(f"{part}_length")


def push_payloads(title: str, body: str, deep_link: str = "") -> dict[str, dict[str, object]]:
    """The FCM HTTP v1 message and APNs payload this copy would travel in, as the senders build them
    (:mod:`generator.core.payload`; a rich push's image and buttons are dropped before the copy, so copy fits alone)."""
    return {name: build(plain_push(title, body, deep_link)) for name, build in BUILDERS.items()}


@lru_cache(maxsize=64)
def _payload_base(deep_link: str) -> int:
    """The largest payload of an empty copy: title and body each appear once in each payload, as JSON strings."""
    return max(encoded_size(v) for v in push_payloads("", "", deep_link).values())


def check_payload_size(title: str, body: str, ctx: GuardContext, deep_link: str = "") -> CheckResult:
    # a byte of UTF-8 takes at most six in a JSON string (a control character as \uXXXX): copy far below the limit
    # fits without building its payloads
    if _payload_base(deep_link) + 6 * (len(title.encode("utf-8")) + len(body.encode("utf-8"))) <= MAX_PAYLOAD_BYTES:
        return passing("payload_size")
    sizes = {k: encoded_size(v) for k, v in push_payloads(title, body, deep_link).items()}
    worst = max(sizes, key=sizes.__getitem__)
    if sizes[worst] > MAX_PAYLOAD_BYTES:
        return CheckResult("payload_size", False, f"{worst} payload is {sizes[worst]} bytes, limit {MAX_PAYLOAD_BYTES}")
    return passing("payload_size")


_WAS = regex.compile(r"(?:was|were|(?<!up )from|regular(?:ly)?|originally|list(?:ed)?(?: price)?|usually|instead of|"
                     r"reduced from|down from|not)\W*(?:at\W*)?(?:only\W*)?$|原价|原来|原售价|之前|曾", regex.I)


def check_prices(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """Every amount, in any locale's notation (₹1,399 / 1,399 元 / 1.399,00 €), is the price or sale price,
    in its currency, of an item the copy names. Numbers of the item's own title are not prices."""
    text = f"{title}\n{body}"
    mentions = money_mentions(text)
    if not mentions:
        return passing("prices")
    derived = _derived(ctx)
    allowed, amounts, listed = derived.prices_of(ctx.named_items(text))
    for m in mentions:
        if _is_item_fact(m.text, ctx) or (not m.currencies and _numbers_of(m.text) <= derived.own_numbers):
            continue
        hits = m.amounts & amounts
        if not hits:
            every = derived.every_amount
            return CheckResult("prices", False, f"price {m.text!r} is another item's, not the named item's"
                               if m.amounts & set(every) else f"price {m.text!r} matches no item's price")
        if not m.currencies:
            return CheckResult("prices", False, f"price {m.text!r} is written without its currency")
        before = text[max(0, m.span[0] - 24):m.span[0]].lower()
        if _RISEN.search(before):
            return CheckResult("prices", False, f"{m.text!r}: no price of this push has gone up")
        if m.amounts & listed and not _WAS.search(before):
            return CheckResult("prices", False, f"{m.text!r} is the price before the discount, written as the "
                                                "price now (say 'was' or 'down from')")
        if not any(m.currencies & allowed[a] for a in hits):
            return CheckResult("prices", False,
                               f"price {m.text!r} has the wrong currency (item is in {sorted(allowed[min(hits)])[0]})")
    return passing("prices")


_RISEN = regex.compile(r"\b(?:up|rose|risen|increased)\s+(?:from|to)\W*$|涨")


def check_percentages(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """Every percentage (15%, 15 %, 85折) is the discount of an item the copy names (the one rounding rule:
    a truncated or inflated one fails), or the campaign's (a coupon's)."""
    text = f"{title}\n{body}"
    mentions = percent_mentions(text)
    if not mentions:
        return passing("percentages")
    allowed = ctx.allowed_percentages(ctx.named_items(text))
    for m in mentions:
        if _is_item_fact(m.text, ctx):
            continue
        if m.value != m.value.to_integral_value() or int(m.value) not in allowed:
            why = f"allowed: {sorted(allowed)}" if allowed else "no item is discounted"
            return CheckResult("percentages", False, f"discount {m.text!r} is not the real one ({why})")
        vague = r"\b(?:up to|as much as|at least|over|more than)\s*$|最高|高达|至少"
        if _re(vague, regex.I).search(text[:m.span[0]][-16:]):
            return CheckResult("percentages", False, f"a vague discount around {m.text!r}: the item's is exact")
    return passing("percentages")


_STOP = {"the", "and", "for", "with", "set", "pack", "of", "in", "a", "an", "to", "by", "on"}


def _content_words(text: str) -> list[str]:
    return [w for w in _re(r"[\p{L}\p{N}]+").findall(text.lower()) if len(w) > 2 and w not in _STOP]


def mentions_item(text: str, item: Item) -> bool:
    """Whether ``text`` names ``item``: its full title or short display name, or at least half of the content
    words of either (and at least two of them), e.g. "Summit water bottle" for "Summit Insulated Water Bottle
    750ml", "Hatchbox filament" for "Hatchbox PLA 3D Printer Filament"."""
    return _names_item(text.lower(), _word_set(text), item, item.title.lower(), item.display_name.lower())


def _names_item(low: str, present: frozenset[str], item: Item, title: str, short: str) -> bool:
    """:func:`mentions_item` given the text lower-cased, its content words and the item's names lower-cased."""
    if title in low or short in low:
        return True
    if _name_words(item.display_name) and _half_named(present, item.display_name):
        return True
    return _half_named(present, item.title)


@lru_cache(maxsize=4096)
def _word_set(text: str) -> frozenset[str]:
    return frozenset(_content_words(text))


@lru_cache(maxsize=1 << 16)
def _name_words(name: str) -> tuple[str, ...]:
    return tuple(_content_words(name))


def _half_named(present: frozenset[str], name: str) -> bool:
    return _half_of(present, _name_words(name))


def _half_of(present: frozenset[str], words: tuple[str, ...]) -> bool:
    """Whether ``present`` has at least half of a name's content ``words``, and at least two of them (or its one)."""
    hits = sum(1 for w in words if w in present)
    return bool(words) and hits >= min(2, len(words)) and hits * 2 >= len(words)


def check_mentions_item(title: str, body: str, ctx: GuardContext) -> CheckResult:
    text = f"{title}\n{body}"
    low, present = text.lower(), None
    for item, whole, short in _derived(ctx).item_names:  # mentions_item: a whole name first, its words when none is
        if whole in low or short in low:
            return passing("mentions_item")
        present = _word_set(text) if present is None else present
        if _names_item(low, present, item, whole, short):
            return passing("mentions_item")
    return CheckResult("mentions_item", False, "the copy names none of the user's ranked items")


_HAN = regex.compile(r"\p{Han}")
_DIGIT = regex.compile(r"\d")
_CONTROL = regex.compile(r"[\p{Cc}\p{Cs}\p{Co}]")
# a word written twice in a row; both are whole runs of letters with only spaces and commas between them
_TWICE = regex.compile(r"(?<![\p{L}\p{N}])(\p{L}{2,})[\s,]+\1(?![\p{L}\p{N}])", regex.I)
_LETTER_RUN = regex.compile(r"\p{L}+")
_SENTENCE_END = re.compile(r"[.!?。！？\n]+")
_MARKUP = regex.compile(r"\{\{|\}\}|\{%|%\}|\[/?[A-Za-z_]+\]|<[^>]+>")


def check_well_formed(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No broken characters (a multi-byte character cut in half decodes to U+FFFD) or control characters, no
    word written twice in a row ("your cable cable"), no grammar slip (:func:`_grammar_slip`), no template syntax
    or stray brackets left over."""
    text = f"{title}{body}"
    if "\ufffd" in text:
        return CheckResult("well_formed", False, "contains a broken character (U+FFFD)")
    if not text.isprintable() and _CONTROL.search(text):  # Cc, Cs and Co are never printable
        return CheckResult("well_formed", False, "contains control or private-use characters")
    twice = _repeated_word(_without_names(f"{title}\n{body}", ctx))
    if twice:
        return CheckResult("well_formed", False, f"repeats a word: {twice!r}")
    sentences = [s.lower() for s in map(str.strip, _SENTENCE_END.split(body)) if len(s) > 3]
    if len(sentences) != len(set(sentences)):
        return CheckResult("well_formed", False, "repeats a sentence")
    slip = _grammar_slip(title, body, ctx)
    if slip:
        return CheckResult("well_formed", False, slip)
    if ("{" in text or "}" in text or "[" in text or "<" in text) and _MARKUP.search(text):  # every match has one
        return CheckResult("well_formed", False, "contains template syntax or markup")
    return passing("well_formed")


def _repeated_word(text: str) -> str | None:
    """The first match of :data:`_TWICE` in ``text``, if any: in ASCII text, where it is the match of
    :data:`_ASCII_TWICE` in the text lower-cased (at the same place); elsewhere, its two words are neighbouring runs
    of letters that match case-insensitively: the pattern runs only where two neighbouring runs may
    (:func:`_may_match`)."""
    if text.isascii():
        m = _ASCII_TWICE.search(text.lower())
        return text[m.start():m.end()] if m else None
    if not any(map(_may_match, (runs := _LETTER_RUN.findall(text)), runs[1:])):
        return None
    m = _TWICE.search(text)
    return m[0] if m else None


# _TWICE in lower-cased ASCII text, in the re module: \p{L} is [a-z], \p{N} [0-9], \s one of _ASCII_SPACES, and two
# words that match case-insensitively are equal
_ASCII_TWICE = re.compile(rf"(?<![a-z0-9])([a-z]{{2,}})(?:{_ASCII_SPACES}|,)+\1(?![a-z0-9])")


def _may_match(a: str, b: str) -> bool:
    """False only when runs of letters ``a`` and ``b`` cannot match case-insensitively: their lengths differ (simple
    case folding maps one character to one), they are ASCII and differ in lower case, or one of them is Han (which has
    no case: each of its characters matches itself alone) and they differ."""
    if len(a) != len(b):
        return False
    if a.isascii() and b.isascii():
        return a.lower() == b.lower()
    return a == b or not (_HAN_RUN.fullmatch(a) or _HAN_RUN.fullmatch(b))


def _grammar_slip(title: str, body: str, ctx: GuardContext) -> str | None:
    """What a blind grader fails in copy that reads fine to a regex: one amount written twice, the discount in
    both title and body, a plural name with "is"/"has", traditional characters in simplified-Chinese copy, a
    Chinese title cut off mid-phrase."""
    amounts = [m.text for m in money_mentions(body)]
    if len(amounts) != len(set(amounts)):  # "dropped to $101.49, down to $101.49"
        return f"states the same amount twice: {amounts[0]!r}"
    if _DIGIT.search(title):  # percent_mentions rules out a text with no sign or word of a percentage
        pcts = {m.value for m in percent_mentions(title)} & {m.value for m in percent_mentions(body)}
        if pcts:  # "Now 50% off" / "... dropped to $164.49, 50% off."
            return f"the title and the body both give the {min(pcts)}% discount"
    lang = language_of(ctx.locale)
    if lang == "en":
        plural = _plural_with_verb(body.lower(), ctx)
        if plural:
            return f"{plural!r} is plural: 'is'/'has' does not agree"
    elif lang == "zh":
        simplified = not _HANT_LOCALE.search(ctx.locale)
        text = f"{title}{body}"  # blanking it only takes characters away: without them, none is left
        if simplified and _TRADITIONAL.search(text) \
                and _TRADITIONAL.search(_blanked(text, _derived(ctx).language_names)):
            return "traditional characters in simplified-Chinese copy"
        if _ZH_UNFINISHED.search(title.strip()):
            return f"the title {title!r} is cut off"
    return None


def _plural_with_verb(low: str, ctx: GuardContext) -> str | None:
    """The first of the items' names (titles and display names) ending in a plural noun (:func:`ends_plural`) that
    ``low`` (a body lower-cased) has before "is" or "has", lower-cased."""
    if " is " not in low and " has " not in low:  # in every phrase looked for
        return None
    for _, n, is_, has in memo(ctx, "plural_verb_phrases", lambda: _plural_phrases(_derived(ctx).item_facts)):
        if is_ in low or has in low:
            return n
    return None


def _plural_phrases(facts: Sequence[_ItemFacts]) -> tuple[tuple[str, str, str, str], ...]:
    """The items' :func:`_verb_phrases` (of their fact texts, in order) whose name ends in a plural noun: made once per
    context (most items' names end in none), not looked for in every copy."""
    return tuple(v for f in facts for v in f.verbs if ends_plural(v[0]))


def _verb_phrases(names: Sequence[str]) -> tuple[tuple[str, str, str, str], ...]:
    """Each name with itself lower-cased, before "is " and before "has "."""
    return tuple((name, n, f"{n} is ", f"{n} has ") for name in names for n in (name.lower(),))


_HANT_LOCALE = regex.compile(r"TW|HK|MO|Hant")
# characters only traditional Chinese writes (simplified copy uses 会 现 价 ...): copy for zh_CN must not mix them in
_TRADITIONAL = regex.compile("[會現價點擊們這個為買賣優與來對妳歡裡後貨錢條發車電燈機開關門間樣還讓說話過從見東"
                             "長帶專實體號選擇讀寫種紅綠藍錶鐘廳書館醫藥產質術農業經濟區華萬億]")
# a Chinese title may not end on a word that needs what follows ("你可能" for 你可能喜欢)
_ZH_UNFINISHED = regex.compile(r"(?:可能|可以|和|与|把|正在|以及|或者)$")


def check_title_hook(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The title is a hook, not the product's name alone (the body names the product) or a bare amount:
    "Hatchbox PLA 3D Printer Filament" or "50% off" as a title says nothing a shopper would tap for."""
    bare, bare_body, derived = _bare_text(title), _bare_text(body), _derived(ctx)
    if bare and bare == bare_body:
        return CheckResult("title_hook", False, "the body repeats the title")
    if bare and bare in derived.bare_names:
        return CheckResult("title_hook", False, "the title is the product's name alone")
    if bare_body in derived.bare_names:
        return CheckResult("title_hook", False, "the body is the product's name alone")
    amounts = _amount_spans(title)
    if amounts and not _HAN.search(title) and len(_LETTER_RUN.findall(mask(title, amounts))) <= 1:
        return CheckResult("title_hook", False, f"{title!r} is a bare amount, not a hook")  # "50% off"
    words = bare.split()
    if 0 < len(words) <= 2 and not _DIGIT_OR_HAN.search(bare) and not _HOOK.search(bare) \
            and not set(words) & derived.name_words:
        return CheckResult("title_hook", False, f"{title!r} says nothing about the item or the offer")
    return passing("title_hook")


_PUNCT_SPACE = regex.compile(r"[\p{P}\p{S}\s]+")
# each byte of an ASCII character of _PUNCT_SPACE's class (ASCII whitespace among them) to a space (bytes.translate)
_ASCII_PUNCT_SPACE = bytes(32 if c < 128 and _PUNCT_SPACE.match(chr(c)) else c for c in range(256))
_DIGIT_OR_HAN = regex.compile(r"\d|\p{Han}")


def _bare_text(text: str) -> str:
    """``text`` with each run of punctuation, symbols and whitespace as one space, stripped and lower-cased, as
    ``_PUNCT_SPACE.sub(" ", text).strip().lower()`` gives it; by ``bytes`` methods for ASCII text (where the space
    is the one whitespace byte left to split on)."""
    if text.isascii():
        return b" ".join(text.encode("ascii").translate(_ASCII_PUNCT_SPACE).split()).decode("ascii").strip().lower()
    return _PUNCT_SPACE.sub(" ", text).strip().lower()


@lru_cache(maxsize=4096)  # the title hook's and the language's
def _amount_spans(title: str) -> tuple[tuple[int, int], ...]:
    """The spans of the amounts and percentages of a title (none without a digit: every one has one)."""
    if not _DIGIT.search(title):
        return ()
    return tuple([m.span for m in money_mentions(title)] + [m.span for m in percent_mentions(title)])


# words that make a two-word title a hook without the item's name or a number ("Price drop", "Good news")
_HOOK = regex.compile(r"\b(?:price|prices|drop|dropped|deal|deals|sale|off|save|savings?|discount|coupon|code|back|"
                      r"stock|restocked|cart|basket|new|picks?|news|offer|treat|lower|cut|alert|reminder|ready|"
                      r"waiting|yours|found|ideas?|inspiration|favou?rites?|gift|look|arrived|arrivals?|just|picked|"
                      r"still|missed)\b", regex.I)
_LETTER = regex.compile(r"\p{L}")
_LATIN = regex.compile(r"\p{Latin}")
_LATIN_RUN = regex.compile(r"\p{Latin}+")


def check_language(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy is written in the user's language, judged by script: Chinese copy is mostly Han characters
    around the product's own (often English) name and brand, and its title has Han characters; other locales'
    copy has none. A title of only numbers, prices and symbols ("15%", "US$22.47") is in no language."""
    spans = _amount_spans(title)
    if title.strip() and not _LETTER.search(mask(title, spans) if spans else title):  # empty: check_lengths' to report
        return CheckResult("language", False, "the title has no words, only numbers or symbols")
    # the Han characters, counted off their runs (a list of a few runs, not one string per character)
    han = 0 if title.isascii() and body.isascii() else sum(map(len, _HAN_RUN.findall(f"{title} {body}")))
    if language_of(ctx.locale) != "zh":
        if han:
            return CheckResult("language", False, f"locale {ctx.locale} but the copy has {han} Han characters")
        return passing("language")
    if title.strip() and not _HAN.search(title):
        return CheckResult("language", False, f"locale {ctx.locale} needs a Chinese title")
    latin_words = _latin_words(title, body, ctx)  # an English product or brand name is normal in zh
    if han == 0 or han < 3 * latin_words:
        return CheckResult("language", False, f"locale {ctx.locale} needs Chinese copy: {han} Han characters, "
                                              f"{latin_words} Latin words")
    return passing("language")


def _latin_words(title: str, body: str, ctx: GuardContext) -> int:
    """The runs of Latin letters in ``title body`` outside its amounts (US$ and ¥ are no words) and the items'
    names and brands (:attr:`_Derived.language_names`)."""
    text = f"{title} {body}"
    if not _LATIN.search(text):  # masking and blanking only take characters away
        return 0
    around = _blanked(mask(text, _joined_money_spans(title, body)), _derived(ctx).language_names)
    return len(_LATIN_RUN.findall(around))


def _joined_money_spans(title: str, body: str) -> list[tuple[int, int]]:
    """The spans of ``money_mentions(f"{title} {body}")``, from the title's and the body's own (which the guardrails
    read anyway) where no amount can hold the space between them: every match with it has a digit next to it (a
    digit group's separator, or the space between a number and its marker: no marker has a space), and the space
    reads as the text's end and start to every pattern (no digit, separator, word character or percent sign)."""
    if _DIGIT.match(title[-1:]) or _DIGIT.match(body[:1]):
        return [m.span for m in money_mentions(f"{title} {body}")]
    at = len(title) + 1
    return [m.span for m in money_mentions(title)] + [(m.span[0] + at, m.span[1] + at) for m in money_mentions(body)]


_LINK = regex.compile(r"https?://|www\.|\b[\w-]+\.(?:com|net|org|io|cn|co|info|biz|xyz|ly)\b", regex.I)
_EMAIL = regex.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE = regex.compile(r"(?<![\w$€£¥.])\+?\d[\d\s().-]{7,}\d(?![\w%])")
_INSTRUCTION = regex.compile(
    r"ignore (all |any )?(the )?(previous|prior|above)|system prompt|disregard|as an ai|language model|"
    r"new instructions|jailbreak|忽略(之前|以上|所有)|系统提示|指令", regex.I)
# in ASCII text, a run of characters every match of _PHONE has (ASCII digits and whitespace, the regex module's \s
# and more)
_ASCII_DIGIT_RUN = re.compile(r"[0-9][0-9 \t\n\r\x0b\x0c\x1c-\x1f().-]{7,}[0-9]")
_ZH_PROFANITY = ("傻逼", "他妈", "操你", "淫", "屌", "贱人", "妈的", "婊")


@lru_cache(maxsize=1)
def _english_profanity() -> regex.Pattern[str]:
    """better_profanity's English word list as one whole-word pattern (its own matcher also flags words inside
    leetspeak variants and parts of product names)."""
    from better_profanity import profanity

    profanity.load_censor_words()
    words = sorted({str(w).lower() for w in profanity.CENSOR_WORDSET if _re(r"[a-z][a-z ']+").fullmatch(str(w))},
                   key=len, reverse=True)
    return regex.compile(r"(?<![\p{L}\p{N}])(?:" + "|".join(_escape(w) for w in words) + r")(?![\p{L}\p{N}])",
                         regex.I)


@lru_cache(maxsize=1)
def _swear_openings() -> frozenset[str]:
    """The first word of every listed word or phrase: an ASCII text none of whose words is one has no match."""
    return frozenset(_re(r"[a-z]+").match(p)[0] for p in _english_profanity().pattern.split("(?:", 1)[1].split("|"))


def _may_swear(text: str, words: Sequence[str] | None = None) -> bool:
    """False only when :func:`_english_profanity` cannot match: a text whose ASCII letters are matched
    case-insensitively as ``lower()`` matches them (:func:`_ascii_folds`) none of whose words (``[a-z0-9]+`` of
    ``text.lower()``: ``words`` where given) begins a listed word or phrase (a match begins at a word and ends at
    one)."""
    return not _ascii_folds(text) or not _swear_openings().isdisjoint(
        _ASCII_ALNUM.findall(text.lower()) if words is None else words)


_ASCII_ALNUM = re.compile(r"[a-z0-9]+")


# the characters outside ASCII that a case-insensitive pattern of ASCII letters matches, or that lower-case to ASCII
_FOLD_TO_ASCII = ("\u0130", "\u017f", "\u212a")  # İ, ſ (long s), K (Kelvin sign)


def _ascii_folds(text: str) -> bool:
    """Whether, in ``text``, a case-insensitive match of ASCII words is a match in ``text.lower()`` at the same
    places: ASCII text, or text without :data:`_FOLD_TO_ASCII` whose ``lower()`` keeps every character one."""
    return text.isascii() or (not any(c in text for c in _FOLD_TO_ASCII) and len(text.lower()) == len(text))


def profanity_in(text: str, locale: str) -> list[str]:
    """Profane words of ``text`` (lowercased): English whole words in every locale (product names stay
    English), and common Chinese terms for zh locales."""
    return _profanity(text, locale, _may_swear(text))


def _profanity(text: str, locale: str, may_swear: bool) -> list[str]:
    """:func:`profanity_in`, told whether :func:`_may_swear`."""
    found = [m[0].lower() for m in _english_profanity().finditer(text)] if may_swear else []
    if language_of(locale) == "zh":
        found += [w for w in _ZH_PROFANITY if w in text]
    return found


def _luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def check_policy(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The brand's banned words, profanity (whole words of a locale-aware list, outside the items' own
    names: a "Shear Cutter" or a "Cock Valve" is a product, not an insult), required disclaimer."""
    copy = _copy(title, body)
    text = copy.text
    low = _without_names(text, ctx).lower()  # "Quick-Cure Epoxy" is a product's name, not a "cure" claim
    for word, lowered, pattern in _banned_patterns(tuple(ctx.policy.banned_words)):
        if lowered in low and pattern.search(low):  # the pattern's every match has the word
            return CheckResult("policy", False, f"banned word {word!r}")
    for word in _profanity(text, ctx.locale, _may_swear(text, copy.alnum_words)):
        if not _re(rf"(?<!\w){_escape(word)}(?!\w)").search(_derived(ctx).own_low):
            return CheckResult("policy", False, f"profanity {word!r}")
    if ctx.policy.required_disclaimer and ctx.policy.required_disclaimer not in body:
        return CheckResult("policy", False, f"missing the required disclaimer {ctx.policy.required_disclaimer!r}")
    return passing("policy")


@lru_cache(maxsize=64)
def _banned_patterns(words: tuple[str, ...]) -> list[tuple[str, str, regex.Pattern[str]]]:
    """Each banned word, lower-cased, and its whole-word pattern in lower-cased text (:func:`check_policy`)."""
    return [(word, word.lower(), _re(rf"(?<!\w){_escape(word.lower())}(?!\w)")) for word in words]


# what a shop's own push never says of what it sells: a small model paraphrases a quoted bad review into the copy
_DISPARAGING = regex.compile(
    r"\b(?:(?:(?:is|are|was|were) not|isn't|aren't|wasn't|weren't|not) (?:that |very |so |really )?(?:good|"
    r"great|cheap|worth it|recommended|high enough|what you(?:'re| are) looking for)|quality is (?:not|poor|low|bad)|"
    r"poor(?:ly made)?|"
    r"flimsy|cheap(?:ly)? made|disappoint\w*|defective|waste of money|low[- ]quality|terrible|awful|worst|"
    r"not a favou?rite|(?:don't|do not) buy|falls? apart|broke(?:n)? (?:after|within|in)|returned it)\b"
    r"|质量差|质量不好|做工粗糙|不好用|不值这个价|失望|劣质|差评|太差|一般般", regex.I)


def check_tone(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy does not speak ill of what it sells ("the quality is not high enough", "flimsy", 质量差): a
    small model paraphrases a critical review it was shown, which the injection check (verbatim copies) misses."""
    copy = _copy(title, body)
    scan = copy.scans[_DISPARAGING]
    m = scan.search(copy.text) if scan else None
    if m:
        return CheckResult("tone", False, f"speaks ill of the product: {m[0]!r}")
    return passing("tone")


def _without_names(text: str, ctx: GuardContext) -> str:
    """``text`` with the items' own titles and display names blanked (their model numbers and words are the
    catalog's, not the copy's)."""
    derived = _derived(ctx)
    return derived.of_text("blanked", text, derived.blanked)


def _blanked(text: str, names: Sequence[str]) -> str:
    """``text`` with each occurrence of ``names`` (case-insensitive; at one place the first of them that is there)
    replaced by a space, as ``regex.sub`` of the names' alternation does, without compiling a pattern of each
    user's names (milliseconds per user): the leftmost places any name is at, the first name in order at each. Each
    name's places (overlapping) are found by ``str.find`` for an ASCII name where case-insensitive is ``lower()``
    (:func:`_ascii_folds`), else by one pattern per name (names recur)."""
    if not names:
        return text
    ascii_folds, low = _ascii_folds(text), text.lower()
    first: dict[int, int] = {}  # place -> the length of the first name there (the names are looked for in order)
    for name, name_low in _name_keys(tuple(names)):
        if ascii_folds and name_low is not None:
            at = low.find(name_low)
            while at >= 0:
                first.setdefault(at, len(name_low))
                at = low.find(name_low, at + 1)
        else:
            for m in _re(_escape(name), regex.I).finditer(text, overlapped=True):
                first.setdefault(m.start(), m.end() - m.start())
    out, end = [], 0
    for at in sorted(first):
        if at >= end:
            out += [text[end:at], " "]
            end = at + first[at]
    return "".join(out) + text[end:]


@lru_cache(maxsize=1 << 12)
def _name_keys(names: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """Each name, with itself lower-cased where it is ASCII (:func:`_blanked`; a context's names recur per copy)."""
    return tuple((name, name.lower() if name.isascii() else None) for name in names)


def check_pii(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No e-mail addresses, phone numbers or card-like numbers (13-19 digits passing Luhn) in the output; an
    item's own model number ("Pro Series 1400750340") is not a phone number."""
    text = _without_names(f"{title}\n{body}", ctx)
    if "@" in text and _EMAIL.search(text):  # every match has an "@"
        return CheckResult("pii", False, "contains an e-mail address")
    for m in _PHONE.finditer(text) if not text.isascii() or _ASCII_DIGIT_RUN.search(text) else ():
        if _re(r"\s*\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\s*").fullmatch(m[0]):
            continue  # a date (05.12.2026), which check_facts holds to the campaign's
        digits = _re(r"\D").sub("", m[0])
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return CheckResult("pii", False, "contains a card-like number")
        if len(digits) >= 8:
            return CheckResult("pii", False, f"contains a phone-like number {m[0].strip()!r}")
    return passing("pii")






def check_injection(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """Nothing from shopper-written text that could carry instructions or links: no links at all, no
    instruction-like phrases, and no run of 5 words (10 Han characters) copied from a quoted review."""
    copy = _copy(title, body)
    if (link := copy.scans[_LINK]) and link.search(copy.text):
        return CheckResult("injection", False, "contains a link (deep links travel outside the copy)")
    if (instruction := copy.scans[_INSTRUCTION]) and instruction.search(copy.text):
        return CheckResult("injection", False, "contains instruction-like text")
    if ctx.quoted_texts:  # a 5-shingle of the copy (shingles(text, 5)) that a quoted review has
        quoted, words = _derived(ctx).quoted_index
        if any(_shared_shingles(copy.words, 5, quoted, words)) \
                or any(_shared_grams(["".join(copy.han_runs)], 10, quoted)):
            return CheckResult("injection", False, "copies shopper-written text from a review")
    return passing("injection")


def _allowed_numbers(ctx: GuardContext) -> set[str]:
    """The numbers copy may state (:func:`check_facts`): the items' (:attr:`_ItemFacts.numbers`), the campaign's
    facts' and its coupon's percentage."""
    facts = (_numbers_of(str(v)) for v in ctx.facts.values())
    items = (f.numbers for f in _derived(ctx).item_facts)
    return set().union(*items, *facts) | {str(p) for p in ctx.extra_percentages}


_GENERIC_BRANDS = {"generic", "unknown", "unbranded", "n/a", "na", "none", "no brand", "other", "various",
                   "casual", "blue", "black", "white", "red", "green", "new", "home", "pro", "3d", "industrial tools",
                   "tools", "usa", "china", "amazon"}
@dataclass(frozen=True)
class CatalogIndex:
    """What the facts check needs of a whole catalog, built once per catalog: each item's lowercased title, and
    one pattern over the brand values that name a brand (not a generic word such as "Blue", "Casual" or "3D",
    and not a word that many other brands' titles use, as "fits Dremel" is in a dozen accessories' titles)."""

    titles: tuple[tuple[str, str, str], ...]  # (item_id, lowercased title, title)
    brand_names: dict[str, str]  # lowercased brand -> as the catalog writes it
    vocabulary: frozenset[str]  # product words of the catalog's titles (in 2+ titles, not generic copy words)
    # the lowercased titles and the brands of ``brand_names`` in one Aho-Corasick automaton, each with the positions
    # in ``titles`` of the titles equal to it and the brand (None: no brand) (:func:`_named_in`); None when empty
    names: Any = None
    empty_titles: tuple[int, ...] = ()  # the positions of the titles that are empty lowercased ("" is in every text)


def _names_automaton(titles: Sequence[tuple[str, str, str]], brands: Iterable[str]) -> Any:
    """:attr:`CatalogIndex.names` of ``titles`` and ``brands``, None when it would hold no word."""
    values: dict[str, tuple[tuple[int, ...], str | None]] = {}
    for pos, (_, title, _) in enumerate(titles):
        if title:
            values[title] = ((*values.get(title, ((), None))[0], pos), None)
    for brand in brands:
        values[brand] = (values.get(brand, ((), None))[0], brand)
    if not values:
        return None
    automaton = ahocorasick.Automaton()
    for word, value in values.items():
        automaton.add_word(word, value)
    automaton.make_automaton()
    return automaton


def _named_in(index: CatalogIndex, low: str) -> tuple[list[tuple[str, str, str]], list[tuple[int, str]]]:
    """The catalog's titles that a lowercased copy has, in catalog order, and each place a brand ends in it, with the
    brand (overlapping hits, per end the longest first): one pass of :attr:`CatalogIndex.names` over the copy
    instead of a test per title of a catalog of thousands."""
    found, hits = set(index.empty_titles), []
    if index.names is not None:
        for end, (where, brand) in index.names.iter(low):
            if where:
                found.update(where)
            if brand is not None:
                hits.append((end, brand))
    return [index.titles[pos] for pos in sorted(found)], hits


_INDEXES: dict[int, tuple[Sequence[Item], CatalogIndex]] = {}
# words any push may use about any product: they say nothing about what the product is
_COPY_WORDS = frozenset("""
tap see look take check shop get grab save lower drop dropped down now new price prices deal deals off was were
great good nice back stock cart waiting ready available again arrived arrival order finish treat yourself like
might love enjoy pick picked picks for you your just here there this that these those with from what when how
still thinking over today time day days week while because about our all one more less just only also very
meet first try hello welcome home visit since last browsed bought viewed favourite favorite wishlist saved
reminder update news days inside open use code coupon percent dollars price tag value worth better quality
kit set pack tool tools item items product products thing things brand new sale sales discount everyday need
needs project projects work job jobs made make makes help helps keep keeps right perfect easy simple ready
""".split())


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


def _product_vocabulary(catalog: Sequence[Item]) -> frozenset[str]:
    seen: Counter[str] = Counter()
    for it in catalog:
        seen.update({_stem(w) for w in _re(r"\p{L}{3,}").findall(it.title.lower())})
    return frozenset(w for w, n in seen.items() if n >= 2 and w not in _COPY_WORDS and w not in _STOP)


def catalog_index(catalog: Sequence[Item]) -> CatalogIndex:
    cached = _INDEXES.get(id(catalog))
    if cached is not None and cached[0] is catalog:
        return cached[1]
    names = {it.brand.lower(): it.brand for it in catalog
             if len(it.brand) >= 3 and it.brand.lower() not in _GENERIC_BRANDS}
    pattern = regex.compile(r"(?<!\w)(?:" + "|".join(_escape(b) for b in sorted(names, key=len, reverse=True))
                            + r")(?!\w)") if names else None
    others = dict.fromkeys(names, 0)
    for it in catalog:
        for found in set(pattern.findall(it.title.lower())) if pattern else ():
            if found != it.brand.lower():
                others[found] += 1
    distinct = {b: names[b] for b, n in others.items() if n < 3}
    titles = tuple((it.item_id, it.title.lower(), it.title) for it in catalog)
    index = CatalogIndex(titles=titles, brand_names=distinct,
                         vocabulary=_product_vocabulary(catalog), names=_names_automaton(titles, distinct),
                         empty_titles=tuple(pos for pos, (_, title, _) in enumerate(titles) if not title))
    if len(_INDEXES) > 16:
        _INDEXES.clear()
    _INDEXES[id(catalog)] = (catalog, index)
    return index


def _brands_in(low: str, hits: Iterable[tuple[int, str]]) -> list[str]:
    """The brands a lowercased copy names, from ``hits`` (where each brand ends in ``low``: :func:`_named_in`), as
    ``findall`` of the pattern ``(?<!\\w)(?:brand|...)(?!\\w)`` with the longest brands first finds them: whole
    words, at the leftmost place one is, the longest there, the next from its end."""
    longest: dict[int, str] = {}  # start -> the longest brand there between word boundaries
    for end, brand in hits:
        start = end - len(brand) + 1
        if len(brand) > len(longest.get(start, "")) and not _is_word_char(low[end + 1:end + 2]) \
                and not _is_word_char(low[start - 1:start] if start else ""):
            longest[start] = brand
    out, after = [], 0
    for start in sorted(longest):
        if start >= after:
            out.append(longest[start])
            after = start + len(longest[start])
    return out


def _is_word_char(char: str) -> bool:
    """Whether ``char`` (one character or none) is a word character (``\\w``)."""
    return char in _ASCII_WORD_CHARS or not char.isascii() and _WORD_CHAR.match(char) is not None


_WORD_CHAR = regex.compile(r"\w")
_ASCII_WORD_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


def check_facts(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No invented codes or numbers: a coupon campaign's code is present, no other code-like token (a model
    number of the item's own title is a fact, not a code), every other number (sizes, counts, dates) comes
    from the items or the campaign; a product name in 「」 is an item's whole title or display name; no other
    catalog product or brand than the user's items (a compatibility mention in the item's own title is not
    another brand)."""
    text = f"{title}\n{body}"
    code = ctx.facts.get("coupon_code")
    if code and str(code) not in text:
        return CheckResult("facts", False, f"the campaign's coupon code {code!r} is missing")
    for m in _CODE_LIKE.finditer(text):
        if m[0] != code and not _re(rf"(?<!\w){_escape(m[0])}(?!\w)").search(_derived(ctx).own_text):
            return CheckResult("facts", False, f"coupon code {m[0]!r} is not the campaign's")
    number = _invented_number(text, ctx)
    if number:
        return CheckResult("facts", False, f"number {number!r} is not in the item or campaign facts")
    for quoted in _re(r"「([^」\n]+)」").findall(text) if "「" in text else ():  # an item's whole name in 「」
        meant = next((it for it in ctx.items if mentions_item(quoted, it)), None)
        if meant is not None and quoted.strip().lower() not in _derived(ctx).names_low:
            return CheckResult("facts", False, f"names 「{quoted}」 for {meant.title!r}: a cut or altered name")
    altered = _altered_name(text, ctx)
    if altered:
        return CheckResult("facts", False, f"names the item {altered!r}: a word that is not in its name")
    one = _pack_as_one(text, ctx)
    if one:
        return CheckResult("facts", False, f"names a pack of several as one {one!r}")
    return _other_products(text, ctx)


# a coupon-code-like token: ``\b[A-Z][A-Z0-9]{3,}\d+[A-Z0-9]*\b``, with the word boundary before its first letter as
# a lookbehind after it (a letter is a word character: a boundary before it is no word character before it), so that
# the pattern opens on a letter, which the scan skips to
_CODE_LIKE = regex.compile(r"[A-Z](?<!\w[A-Z])[A-Z0-9]{3,}\d+[A-Z0-9]*\b")
# "3D", "4K", "5G" are words, not numbers of the copy; every match is one of _UNIT_WORDS
_UNIT_WORD = regex.compile(r"(?<![\w.])(?:[234]D|[48]K|[345]G)(?!\w)")
_UNIT_WORDS = ("2D", "3D", "4D", "4K", "8K", "3G", "4G", "5G")


def _invented_number(text: str, ctx: GuardContext) -> str | None:
    """The first number of the copy (outside its amounts of money, percentages and words such as "3D") that is not
    a number of the items or the campaign, whole or as a date's parts (05.12.2026)."""
    allowed = _derived(ctx).allowed_numbers
    words = [m.span() for m in _UNIT_WORD.finditer(text)] if any(map(text.__contains__, _UNIT_WORDS)) else []
    stripped = mask(text, [m.span for m in money_mentions(text)] + [m.span for m in percent_mentions(text)] + words)
    for m in _re(r"\d+(?:[.,:/]\d+)*").finditer(stripped):
        if not (_numbers_of(m[0]) <= allowed or _numbers_of(m[0].replace(",", "")) <= allowed
                or {n.lstrip("0") or "0" for n in _re(r"\d+").findall(m[0])} <= allowed):
            return m[0]
    return None


def _pack_as_one(text: str, ctx: GuardContext) -> str | None:
    """The singular a pack's plural name stands for ("Cutting Board" for "Bamboo Cutting Boards", a 3-piece set),
    where the copy uses it outside the item's own title and name."""
    packs = _derived(ctx).pack_singulars
    residual = _without_names(text, ctx) if packs else ""
    return next((one for one, pattern in packs if pattern.search(residual)), None)


# words that may stand right before a product name without being part of it ("Price Drop On Kreg Pocket Screws")
_OPENERS = frozenset("the your our this that a an my its on in for and with at to of".split())


def _altered_name(text: str, ctx: GuardContext) -> str | None:
    """A product name the copy made up: capitalised words leading to a head noun of the user's items, one of which
    is not a word of that item's title, brand or display name ("The American Flat Bumpy Flask" for a Flat Bottom
    Boiling Flask): the word right before the head noun, or any word after the first of the name's own words.
    Words before the name ("Grab", "Price Drop On") are not part of it. A phrase that names any of the user's
    items with that head noun, or lies inside one of their display names, names it truly."""
    heads = _derived(ctx).name_heads
    if not heads:
        return None
    low, exact = text.lower(), lower_is_exact(text)
    made_up: dict[tuple[int, int], bool] = {}  # each phrase: made up for every item whose head noun it ends on
    runs: dict[regex.Pattern[str], list[tuple[tuple[int, int], tuple[str, ...]]]] = {}  # items share head nouns
    ascii = text.isascii()
    for own, pattern, head, ascii_pattern in heads:
        if exact and head is not None and head not in low:
            continue  # the pattern ends on the head noun (case-insensitive): a copy without it has no match
        if pattern not in runs:
            scan = ascii_pattern if ascii and ascii_pattern is not None else pattern  # the same matches
            runs[pattern] = [(m.span(), _run_words(m[1])) for m in scan.finditer(text)]
        for span, words in runs[pattern]:
            made_up[span] = made_up.get(span, True) and _made_up(words, own)
    suspects = [span for span, bad in made_up.items() if bad]
    if not suspects:
        return None
    true = [span for span, bad in made_up.items() if not bad] + _display_name_spans(low, ctx)
    bad = next((span for span in suspects  # "Dewalt Crimped End Wire" is part of "... End Wire Brush"
                if not any(a < span[1] and span[0] < b for a, b in true)), None)
    return text[bad[0]:bad[1]].strip() if bad else None


@lru_cache(maxsize=1 << 14)
def _run_words(run: str) -> tuple[str, ...]:
    """The words of a capitalised run before a head noun, lower-cased, without possessive 's (runs recur: names)."""
    if "'s" in run:  # in every match of the possessive
        run = _re(r"'s\b").sub("", run)
    if run.isascii():  # a letter or digit is one of a-z, A-Z, 0-9: lower-cased first, a-z or 0-9
        return tuple(_ASCII_ALNUM.findall(run.lower()))
    return tuple(w.lower() for w in _re(r"[\p{L}\p{N}]+").findall(run))


def _made_up(words: tuple[str, ...], own: frozenset[str]) -> bool:
    """Whether a run of ``words`` before an item's head noun makes up its name: the word right before the head noun
    is not the item's own (nor an opener: "Price Drop On"), or a word after the first of its own words is not."""
    named = [w in own for w in words]  # a title-case headline may lead to the name: "Price Drop On ..."
    first_own = named.index(True) if True in named else len(words)
    return words[-1] not in _OPENERS and not named[-1] or not all(named[first_own:])


def _display_name_spans(low: str, ctx: GuardContext) -> list[tuple[int, int]]:
    """The places of the items' display names (lower-cased) in ``low``, each name's non-overlapping."""
    out = []
    for _, _, name in _derived(ctx).item_names:
        at = low.find(name) if name else -1
        while at >= 0:
            out.append((at, at + len(name)))
            at = low.find(name, at + len(name))
    return out


def _other_products(text: str, ctx: GuardContext) -> CheckResult:
    if not ctx.catalog:
        return passing("facts")
    index, derived, low = catalog_index(ctx.catalog), _derived(ctx), text.lower()
    titles, hits = _named_in(index, low)  # those of index.titles in low, in order; where the brands are in it
    for item_id, title, written in titles:
        if item_id not in derived.own_ids and title not in derived.names_low and title not in derived.own_low:
            return CheckResult("facts", False, f"names another product {written!r}")
    # the brands it names are among those the automaton finds anywhere (_brands_in keeps whole words, the longest):
    # where the user's items have every one of these, it names no other
    if derived.own_brands.issuperset([brand for _, brand in hits]):
        return passing("facts")
    for found in set(_brands_in(low, hits)):
        if found not in derived.own_brands and not _re(rf"(?<!\w){_escape(found)}(?!\w)").search(derived.own_low):
            return CheckResult("facts", False, f"names another brand {index.brand_names[found]!r}")
    return passing("facts")


# claims a shop cannot back unless the campaign states them: superlatives and comparatives (never), urgency and
# deadlines (with facts.ends_at), scarcity (facts.stock_left), offers (facts.free_shipping / gift / bundle / offer)
_SUPERLATIVE = regex.compile(
    r"#\s?1\b|\b(?:(?:the )?best(?! of luck)|no\.? ?1|number one|on the market|in the world|world'?s|unbeatable|"
    r"unmatched|unrivall?ed|top[- ]of[- ]the[- ]line|top[- ]rated|highest[- ]rated|lowest price|cheapest|"
    r"better than|beats? (?:any|all|every)|like no other|second to none|the only|best[- ]selling|best ?seller|"
    r"award[- ]winning|#1 rated|perfect|flawless|guaranteed?|must[- ]have|life[- ]changing|revolutionary|"
    r"ultimate|finest|greatest|most (?:popular|loved|trusted|powerful|reliable)|premium quality|highest quality|"
    r"top quality|the top|change your life|everything you need|all you need|excellent customer service|"
    r"five stars|5 stars|amazing|incredible|awesome|fantastic|spectacular|outstanding|superb|extraordinary|"
    r"unbelievable|mind[- ]blowing|game[- ]changer|"
    r"(?:will not|won'?t|can'?t|cannot|not) (?:find|get|see) (?:\w+ )?(?:anywhere )?"
    r"else(?:where)?|nowhere else|exclusive(?:ly)?|one of a kind)\b"
    r"|最好|最佳|最棒|第一|独家|别处|最低价|最便宜|全网最|史上最|顶级|独一无二|无与伦比|最强|最受欢迎|销量冠军|爆款|完美",
    regex.I)
_URGENCY = regex.compile(
    r"\b(?:today only|today|tonight|this weekend|limited[- ]time|time is running out|ends? (?:soon|today|tonight|"
    r"tomorrow|at midnight|on|this)|ending soon|last chance|final hours?|don'?t (?:wait|miss out|delay)|hurry|"
    r"act (?:now|fast)|before it'?s gone|before it ends|now or never|deadline|expires?|"
    r"while (?:it|they) lasts?|for a limited|only for now)\b"
    r"|限时|今天|今日|今晚|截止|最后机会|最后一天|倒计时|抢购|马上抢|赶紧|错过不再|手慢无|即将结束", regex.I)
_SCARCITY = regex.compile(
    r"\b(?:only \d+ (?:left|remaining)|\d+ left|few left|almost gone|selling fast|running out|low stock|"
    r"while (?:stocks?|supplies) lasts?|limited stock|limited quantit(?:y|ies)|limited supply|sell(?:s|ing)? out|"
    r"won'?t last|grab (?:one|it) while|going fast)\b"
    r"|仅剩|只剩|库存有限|数量有限|先到先得|售完即止|卖完|即将售罄|限量", regex.I)
_OFFER = regex.compile(
    r"\b(?:free(?! of)|freebie|giveaway|bogo|buy one,? get one|gift(?:s| card| with)?|free shipping|"
    r"ships? free|no cost|complimentary|on the house|bundle|bonus|extra \d+% off)\b"
    r"|免费|包邮|免运费|赠品|送礼|买一送一|赠送|套装优惠|满减", regex.I)
_OFFER_FACTS = ("free_shipping", "gift", "bundle", "offer")
# what the price is worth to the shopper, a comparison with other shops nobody can back: budget words never, value
# words ("a bargain at $12", 超值) only when the item is on sale, which backs them
_BUDGET = regex.compile(r"\b(?:(?:on|for|fits?|within|any|every|your|a|tight|small|low) (?:\w+ )?budgets?|"
                        r"budget[- ]friendly|wallet[- ]friendly|pocket[- ]friendly|won'?t break the bank|cheap(?:ly)?|"
                        r"dirt[- ]cheap|low[- ]cost|inexpensive|economical)\b|性价比|平价", regex.I)
_VALUE = regex.compile(r"\b(?:affordable|bargains?|a steal|great value|good value|best value|value for money|"
                       r"great price|good price|unbeatable price|great deal|good deal|amazing deal|incredible deal|"
                       r"(?:well |so |totally |definitely )?worth (?:it|every penny|the (?:money|price))|"
                       r"save big|huge savings?|big savings?)\b|超值|划算|捡漏|好价|便宜|低价|实惠|省钱", regex.I)
_SERVICE = regex.compile(r"\b(?:refunds?|returns?|warranty|guarantee[ds]?|customer service|money back|satisfaction)\b"
                         r"|退款|退货|保修|质保|售后", regex.I)
# what happened to this shopper or item: true only in the campaign that says so
_EVENTS: dict[str, regex.Pattern[str]] = {
    "abandoned_cart": regex.compile(r"\b(?:(?:in|to|from) your (?:shopping )?(?:cart|basket|bag)|added to (?:your )?"
                                    r"(?:cart|basket|bag)|left (?:it )?(?:behind|in)|still in your)\b|购物车", regex.I),
    "new_arrivals": regex.compile(r"^\W*(?:all[- ])?new\b(?! (?:low )?prices?\b)"
                                  r"|\b(?:brand[- ]new|just (?:arrived|landed|in)|new arrivals?|"
                                  r"newly (?:added|arrived)|new in)\b|新品|上新|新到", regex.I),
    "back_in_stock": regex.compile(r"\b(?:back in stock|restocked|in stock again|available again|it'?s back|"
                                   r"back on (?:the )?shel(?:f|ves))\b|补货|到货|重新有货", regex.I),
}


def check_claims(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No claim the campaign cannot back: superlatives and comparatives ("the best", "#1", "on the market",
    最好, 第一) never; urgency and deadlines ("today only", "ends tonight", 限时, 今天) only with ``ends_at``;
    scarcity ("only 3 left", "while stocks last", 仅剩, 先到先得) only with ``stock_left``; offers (free
    shipping, gifts, bundles, 包邮) only with a fact that states one; budget words ("on a budget", "cheap",
    性价比) never, value words ("a bargain", "great deal", 超值, 便宜) only when the featured item is on sale."""
    copy = _copy(title, body)
    text, scans = copy.text, copy.scans
    for pattern, kind, facts in _CLAIMS:
        if (scan := scans[pattern]) is None or any(ctx.facts.get(f) for f in facts):
            continue  # it cannot match, or a fact backs every match
        # the item's own name ("Best Choice", "Gift Box") is a fact, not a claim
        m = next((m for m in scan.finditer(text) if not _in_own_name(m[0], ctx)), None)
        if m:
            need = f" (the campaign states no {' / '.join(facts)})" if facts else ""
            return CheckResult("claims", False, f"unsupported {kind} claim {m[0]!r}{need}")
    for pattern in (_BUDGET, _VALUE):
        if (scan := scans[pattern]) is None or pattern is _VALUE and ctx.items \
                and ctx.items[0].current_price < ctx.items[0].price:
            continue  # it cannot match, or the featured item is on sale, which backs value words
        m = next((m for m in scan.finditer(text) if not _in_own_name(m[0], ctx)), None)
        if m:
            return CheckResult("claims", False, f"unsupported value claim {m[0]!r}"
                               + ("" if pattern is _BUDGET else " (the item is not on sale)"))
    if not ctx.campaign_type:
        return passing("claims")
    for campaign_type, pattern in _EVENTS.items():
        scan = scans[pattern] if campaign_type != ctx.campaign_type else None
        m = scan.search(text) if scan else None
        if m and not _in_own_name(m[0].strip(), ctx):  # "New Balance"
            return CheckResult("claims", False, f"{m[0]!r} is not what happened: this is a "
                               f"{ctx.campaign_type.replace('_', ' ')} push")
    return passing("claims")


_CLAIMS = ((_SUPERLATIVE, "superlative", ()), (_URGENCY, "urgency", ("ends_at",)),
           (_SCARCITY, "scarcity", ("stock_left",)), (_OFFER, "offer", _OFFER_FACTS),
           (_SERVICE, "service", ("returns", "warranty")))  # each with the facts that back it


def _in_own_name(phrase: str, ctx: GuardContext) -> bool:
    """Whether ``phrase`` is a whole phrase of the items' own text (their names: "Best Choice", "New Balance"),
    case-insensitive."""
    derived = _derived(ctx)
    if derived.own_lower_exact and lower_is_exact(phrase) and phrase.lower() not in derived.own_low:
        return False  # a case-insensitive match is one of the lower-cased texts
    return bool(_re(rf"(?<!\w){_escape(phrase)}(?!\w)", regex.I).search(derived.own_text))


def _han_runs(text: str, n: int) -> set[str]:
    return {run[i:i + n] for run in _re(r"\p{Han}+").findall(text) for i in range(len(run) - n + 1)}


def check_example_copy(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy does not lift phrases from the template's example answers, which are about other products:
    no run of 5 Han characters, or of 7 words, that an example's body has and neither the user's items nor the brand's
    own template copy for this user (generic phrasing such as 使用优惠码) have. Following an example's shape
    with the user's own facts (专属 15% 优惠券 / 使用优惠码 X 购买 <the user's item>) is what examples are for."""
    derived = _derived(ctx)
    phrases, words = derived.example_index
    if phrases:  # a phrase of the copy (_example_phrases) that an example has and the items and the brand do not
        copy = _copy(title, body)
        shared = itertools.chain(_shared_grams(copy.han_runs, 5, phrases),
                                 _shared_shingles(copy.words, 7, phrases, words))
        if any(p not in derived.own_phrases for p in shared):
            return CheckResult("example_copy", False, "copies a phrase from the template's example answer")
    return passing("example_copy")


_LABEL = regex.compile(r"(?m)^\s*([^\n:：]{1,60}?)\s*[:：]")


_FIELD_LABEL = regex.compile(r"\s*(?:title|body|price|price now|was|product|name|item|brand|discount|review|"
                             r"category|标题|正文|价格|现价|原价|商品|品牌|折扣|评价)\s*[:：]", regex.I)


def check_prompt_echo(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy is not the prompt read back: none of its fact labels ("商品：", "Price now:") and none of its
    unlabelled lines (the instruction, "写一条商品推荐推送。") come back, and neither line opens on a field label
    of any prompt ("Price: 「…」现售 …", "Title: …")."""
    for part in (title, body):
        if (":" in part or "：" in part) and (m := _FIELD_LABEL.match(part)):  # every match ends on a colon
            return CheckResult("prompt_echo", False, f"opens on the label {m[0].strip().rstrip(':：').strip()!r}")
    if not ctx.prompt_text:
        return passing("prompt_echo")
    text = _copy(title, body).low
    labels, lines = _derived(ctx).prompt_parts
    for label, pattern in labels:
        if label in text and (len(label) >= 12 or pattern.search(text)):  # the pattern's every match has the label
            return CheckResult("prompt_echo", False, f"repeats the prompt's label {label!r}")
    for line in lines:
        if line in text:
            return CheckResult("prompt_echo", False, f"repeats the prompt's line {line!r}")
    return passing("prompt_echo")


def near_duplicate(a: str, b: str, threshold: float = 0.8) -> bool:
    """Jaccard similarity of word 3-shingles (Han 3-grams) at or above ``threshold``."""
    sa, sb = shingles(a, 3), shingles(b, 3)
    if not sa or not sb:
        return a.strip().lower() == b.strip().lower()
    return len(sa & sb) / len(sa | sb) >= threshold


# what copy says people do with a product, and the product words that make it fit ("Lace up now!" on a drawer
# organizer is a non sequitur)
_DOINGS: dict[str, tuple[str, ...]] = {
    r"lace (?:up|them up)": ("shoe", "boot", "sneaker", "lace", "trainer"),
    r"brew\w*": ("coffee", "tea", "beer", "brew", "kettle", "espresso", "wine", "ferment", "hydrometer", "malt"),
    r"sip\w*": ("cup", "mug", "bottle", "tumbler", "glass", "tea", "coffee", "drink", "flask"),
    r"(?:hit|on) the trail|hik(?:e|ing)|trail days": ("trail", "hiking", "boot", "backpack", "tent", "camp", "outdoor"),
    r"camp(?:ing|site)?\b": ("camp", "tent", "lantern", "sleeping", "outdoor", "hiking"),
    r"sleep (?:better|tight|well)|sweet dreams": ("pillow", "mattress", "bed", "sheet", "blanket", "sleep", "duvet"),
    r"(?:your )?next run|running": ("running", "run", "shoe", "sneaker", "treadmill", "jog"),
    r"ride|cycling": ("bike", "bicycle", "cycling", "scooter", "ride", "helmet"),
    r"cook(?:ing)?|kitchen": ("kitchen", "cook", "pan", "pot", "knife", "oven", "chef", "food", "utensil"),
    r"wear (?:it|them)|outfit|style it": ("shirt", "jacket", "dress", "wear", "shoe", "hat", "sock", "glove",
                                          "apparel"),
}


def check_sense(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy talks about this product: no product word of the catalog that the user's items are not
    ("a great tool for coffee grinders" for a drawer organizer), no Chinese product noun they are not (手电筒 for a
    caliper: :mod:`generator.check.zh_products`), and no use that does not fit them ("Lace up now!" for anything
    without laces)."""
    text = f"{title}\n{body}"
    derived = _derived(ctx)
    residual = _without_names(text, ctx).lower()
    for n in sorted(_DOINGS_FILTER.candidates(residual)):
        m = _DOINGS_FILTER.patterns[n].search(residual)
        if m and not any(f in w for f in _DOINGS_FITS[n] for w in derived.sense_words):
            return CheckResult("sense", False, f"{m[0]!r} does not fit this product")
    if not residual.isascii() and _HAN.search(residual) \
            and (noun := misnamed_product(residual, _sense_words(derived))):  # "你的手电筒" on a caliper
        return CheckResult("sense", False, f"calls the item {noun!r}, which it is not")
    if ctx.catalog:
        forms = _word_forms(catalog_index(ctx.catalog).vocabulary)
        words = _ASCII_LONG_WORDS.findall(residual) if residual.isascii() else _LONG_WORDS.findall(residual)
        if not forms.isdisjoint(words):
            for w in words:
                if w in forms and not derived.has_sense_word(_stem(w)):
                    return CheckResult("sense", False, f"talks about {w!r}, which this product is not")
    return passing("sense")


def _sense_words(derived: _Derived) -> Iterator[str]:
    """:attr:`_Derived.sense_words`, made at the first read of this iterator: :func:`misnamed_product` reads them only
    where the copy has a Chinese product noun (the union of the items' stems is made for most Chinese copy else)."""
    yield from derived.sense_words


@lru_cache(maxsize=16)
def _word_forms(vocabulary: frozenset[str]) -> frozenset[str]:
    """The words whose stem (:func:`_stem`) is in ``vocabulary``: a stem, or a stem and an "s"."""
    return frozenset(w for stem in vocabulary for w in (stem, f"{stem}s") if _stem(w) in vocabulary)


_DOINGS_FILTER = LiteralFilter([_re(rf"\b(?:{pattern})") for pattern in _DOINGS])
_DOINGS_FITS = tuple(_DOINGS.values())
_LONG_WORDS = regex.compile(r"\p{L}{3,}")
_ASCII_LONG_WORDS = re.compile(r"[a-z]{3,}")  # _LONG_WORDS in lower-cased ASCII text


_COPY_FILTER = BranchFilter([_SUPERLATIVE, _URGENCY, _SCARCITY, _OFFER, _SERVICE, _BUDGET, _VALUE,
                             *_EVENTS.values(), _DISPARAGING, _LINK, _INSTRUCTION])


Check = Callable[[str, str, GuardContext], CheckResult | list[CheckResult]]
# the checks in the order they run, which settles what a candidate checked up to its first failure (run_checks'
# fail_fast) costs: by µs per text over how often each fails (SmolLM2's candidates for the sample shop and the Amazon
# catalogue, the campaign benchmark's copy: docs/benchmarks.md), those that read the copy's amounts (a scan of their
# own first) after the others, those that have not failed on any of it last; a verdict lists its results in this order
DEFAULT_CHECKS: tuple[Check, ...] = (check_lengths, check_claims, check_prompt_echo, check_percentages, check_tone,
                                     check_mentions_item, check_sense, check_example_copy,
                                     check_language, check_title_hook, check_well_formed, check_prices, check_facts,
                                     check_payload_size, check_brand, check_pii, check_injection, check_policy)
# the checks that read the copy's amounts of money: before the first of them, run_checks reads the amounts of the
# whole copy once (money_mentions_of_copy), and its title's and body's off them
_READ_AMOUNTS = frozenset({check_language, check_title_hook, check_well_formed, check_prices, check_facts})


def run_checks(title: str, body: str, ctx: GuardContext,
               checks: Sequence[Check] = DEFAULT_CHECKS, *, fail_fast: bool = False) -> list[CheckResult]:
    """Run every check; the message passes when all results pass. With ``fail_fast``, stop at the first check that
    fails: the verdict then ends on that failure (the rest were not run), which settles a candidate that will not be
    chosen (the runner's); one that passes runs every check either way. The same copy under an equal context (the
    same fields: the users of a campaign who share their ranked items, prompt and review get the same copy) is not
    checked again and again: its verdicts are kept, by the copy, the checks, ``fail_fast`` and the context's
    :func:`_fingerprint`, from the second time the copy is checked (:data:`_SEEN`). Most copy is new (a model writes
    it per user): no verdict can be kept for it, and its context's fingerprint, which costs more than some checks, is
    not made for it."""
    if not isinstance(checks, tuple):
        return _run_checks(title, body, ctx, checks, fail_fast)
    copy = (title, body, checks, fail_fast)
    if copy not in _SEEN:
        if len(_SEEN) >= _VERDICTS_MAX:
            _SEEN.popitem(last=False)  # the oldest
        _SEEN[copy] = None
        return _run_checks(title, body, ctx, checks, fail_fast)
    number = _fingerprint(ctx)
    if number is None:
        return _run_checks(title, body, ctx, checks, fail_fast)
    key = (*copy, number)
    hit = _VERDICTS.get(key)
    if hit is None:
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.popitem(last=False)  # the oldest
        if len(_FINGERPRINTS) >= _VERDICTS_MAX:  # equal contexts made later get a new number
            _FINGERPRINTS.clear()
        hit = _VERDICTS[key] = tuple(map(_shared, _run_checks(title, body, ctx, checks, fail_fast)))
    return list(hit)


def _shared(result: CheckResult) -> CheckResult:
    """A plain pass (no reason) as one object per check name (results are frozen): the verdicts kept hold a few
    objects, not one per check and copy, for the cyclic collector to walk."""
    if not result.passed or result.reason:
        return result
    return _PASSES.setdefault(result.name, result)


_PASSES: dict[str, CheckResult] = {}
# verdicts of copies already checked (run_checks): CheckResults are frozen, each caller gets a list of its own. Both
# tables drop their oldest entry when full, as OrderedDicts do in O(1) (a dict's first entry, after many deleted ahead
# of it, is found by skipping them: 6 µs per new copy once the table was full)
_VERDICTS: OrderedDict[tuple[Any, ...], tuple[CheckResult, ...]] = OrderedDict()
_SEEN: OrderedDict[tuple[str, str, tuple[Check, ...], bool], None] = OrderedDict()  # copies checked (and fail_fast)
_VERDICTS_MAX = 1 << 15
_CATALOGS: dict[int, Sequence[Item]] = {}  # catalogs a fingerprint names by id, held so that no id is reused
_FINGERPRINTS: dict[tuple[Any, ...], int] = {}  # each context's fields once, numbered (a key hashes a number)
_NUMBERS = itertools.count()  # never reused: a context keeps its number after the table is cleared


def _fingerprint(ctx: GuardContext) -> int | None:
    """Everything the checks read of a context, as one hashable value (None where a field is not hashable), given
    a number (equal values, one number): two contexts with one number get the same verdicts. Made once per context,
    as ``_Derived`` is (a field's assignment drops it); the catalog by identity (``catalog_index`` indexes it so)."""
    def number() -> int | None:
        value = _make_fingerprint(ctx)
        try:
            found = _FINGERPRINTS.get(value)  # the value is hashed here, once
        except TypeError:  # a field's value is not hashable
            return None
        if found is None:
            found = _FINGERPRINTS[value] = next(_NUMBERS)
        return found

    return memo(ctx, "fingerprint", number)


def _make_fingerprint(ctx: GuardContext) -> tuple[Any, ...]:
    """The fields' values (:func:`_fingerprint`), maybe unhashable: dicts as sorted pairs of reprs, models as their
    repr, sequences as tuples, the catalog as its id."""
    parts: list[Any] = [type(ctx)]
    for name in _field_names(type(ctx)):
        value = getattr(ctx, name)
        if name == "catalog":
            if _CATALOGS.get(id(value)) is not value:
                if len(_CATALOGS) >= 16:
                    _CATALOGS.clear()
                    _VERDICTS.clear()  # their ids may be reused now
                    _FINGERPRINTS.clear()
                _CATALOGS[id(value)] = value
            value = id(value)
        elif type(value) in _PLAIN:
            pass  # the common case: a string (strings are neither dicts, models nor sequences here)
        elif isinstance(value, dict):
            value = tuple(sorted((repr(k), repr(v)) for k, v in value.items()))
        elif isinstance(value, BaseModel):
            value = repr(value)  # every field, nested models' too
        elif isinstance(value, list | tuple):
            value = tuple(value)
        parts.append(value)
    return tuple(parts)


_PLAIN = frozenset({str, int, float, bool, type(None)})  # field values kept as they are


@lru_cache(maxsize=64)
def _field_names(cls: type) -> tuple[str, ...]:
    """A context class's field names, in order (``dataclasses.fields`` builds them at each call)."""
    return tuple(f.name for f in fields(cls))


def _run_checks(title: str, body: str, ctx: GuardContext, checks: Sequence[Check],
                fail_fast: bool) -> list[CheckResult]:
    results: list[CheckResult] = []
    amounts_read = False
    for check in checks:
        if not amounts_read and check in _READ_AMOUNTS:
            money_mentions_of_copy(title, body)  # the copy's amounts, and its title's and body's read off them
            amounts_read = True
        r = check(title, body, ctx)
        if isinstance(r, list):
            results += r
            failed = not all(x.passed for x in r)
        else:
            results.append(r)
            failed = not r.passed
        if failed and fail_fast:
            break
    return results


def failures(results: Sequence[CheckResult]) -> list[str]:
    return [f"{r.name}: {r.reason}" for r in results if not r.passed]
