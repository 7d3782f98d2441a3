"""Indexes that let the guardrails answer per candidate without scanning the catalog.

The facts check must fail copy that names another catalog product (its whole title) or another brand, reporting
the first such catalog item. Scanning every item per candidate (a substring test and a brand pattern per item)
costs milliseconds with a few thousand items. :class:`CatalogIndex` is built once per catalog and finds the same
first item: each distinct first four characters of titles is searched for in the text (titles mostly begin with a
brand, so there are few) and the titles at each place found are compared; brands by one compiled pattern per
distinct brand.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import regex

from generator.data import Item

_KEY = 4  # characters of a title that key it


@dataclass(frozen=True)
class Hit:
    """The first catalog item a text names that it may not: ``kind`` is ``product`` (its title) or ``brand``."""

    kind: str
    item: Item


class CatalogIndex:
    """Titles and brands of a catalog, lower-cased, with their first position in catalog order."""

    def __init__(self, catalog: Sequence[Item]):
        self.catalog, self.size = catalog, len(catalog)
        self._by_key: dict[str, list[tuple[int, str]]] = {}
        self._short: list[tuple[int, str]] = []
        self._brand_first: dict[str, int] = {}
        for pos, it in enumerate(catalog):
            title = it.title.lower()
            if len(title) >= _KEY:
                self._by_key.setdefault(title[:_KEY], []).append((pos, title))
            else:
                self._short.append((pos, title))
            if it.brand:
                self._brand_first.setdefault(it.brand.lower(), pos)
        self._brand_pattern = {b: regex.compile(rf"(?<!\w){regex.escape(b)}(?!\w)") for b in self._brand_first}

    def first_other(self, low: str, own_ids: Collection[str], own_brands: Collection[str]) -> Hit | None:
        """What scanning the catalog in order finds first in the lower-cased text ``low``: an item not among
        ``own_ids`` whose title is in the text (``product``), or whose brand, not among ``own_brands``, is a word
        of the text (``brand``); None when there is none."""
        titles = [(pos, t) for pos, t in self._short if t in low]
        for key, entries in self._by_key.items():  # few keys (titles begin with brands): a find per key
            p = low.find(key)
            while p >= 0:
                titles += [(pos, t) for pos, t in entries if low.startswith(t, p)]
                p = low.find(key, p + 1)
        product = min((pos for pos, _ in titles if self.catalog[pos].item_id not in own_ids), default=None)
        brand = min((pos for b, pos in self._brand_first.items()
                     if b not in own_brands and self._brand_pattern[b].search(low)), default=None)
        if product is None and brand is None:
            return None
        if brand is None or (product is not None and product <= brand):
            return Hit("product", self.catalog[product])  # type: ignore[index]
        return Hit("brand", self.catalog[brand])


_INDEXES: OrderedDict[int, CatalogIndex] = OrderedDict()


def catalog_index(catalog: Sequence[Item]) -> CatalogIndex:
    """The index of ``catalog``, built once per catalog object (a few are kept: a worker serves one shop)."""
    key = id(catalog)
    hit = _INDEXES.get(key)
    if hit is None or hit.catalog is not catalog or hit.size != len(catalog):
        hit = _INDEXES[key] = CatalogIndex(catalog)
        while len(_INDEXES) > 4:
            _INDEXES.popitem(last=False)
    return hit


T = TypeVar("T")


def memo(ctx: Any, key: str, make: Callable[[], T]) -> T:
    """What ``make()`` derives from a guard context, made once per context (a context serves all the candidates of
    its user and its fallback): patterns, phrase sets and allowed numbers are not rebuilt per candidate."""
    store: dict[str, Any] = ctx.__dict__.setdefault("_derived", {})
    if key not in store:
        store[key] = make()
    return store[key]


class NearDuplicates:
    """Copy already chosen, asked whether a text is a near-duplicate of any of it: the answer of
    ``any(near_duplicate(text, t) for t in taken)`` without comparing with every text taken (that made choosing
    quadratic in the users of a chunk).

    Identical shingle sets are kept once. Other candidates are found by prefix filtering, exact for Jaccard
    similarity: with every set's shingles in one fixed order, two sets at or above the threshold share a shingle
    among the first ``|X| - ceil(t |X|) + 1`` of each; only those pairs are compared, by ``near_duplicate``'s own
    formula. Texts without shingles compare as ``near_duplicate`` does: equal once stripped and lower-cased."""

    def __init__(self, taken: Sequence[str] = (), threshold: float = 0.8):
        from generator.guardrails import _shingles

        self._shingles = _shingles
        self.threshold = threshold
        self._sets: list[frozenset[str]] = []
        self._known: set[frozenset[str]] = set()
        self._postings: dict[str, list[int]] = {}
        self._plain: set[str] = set()  # texts without shingles, stripped and lower-cased
        for text in taken:
            self.add(text)

    def _prefix(self, shingles: frozenset[str]) -> list[str]:
        need = math.ceil(self.threshold * len(shingles) - 1e-9)  # a hair low at worst: a longer, still exact prefix
        order = sorted(shingles, key=lambda s: (zlib.crc32(s.encode("utf-8")), s))
        return order[:len(shingles) - need + 1]

    def add(self, text: str) -> None:
        shingles = frozenset(self._shingles(text, 3))
        if not shingles:
            self._plain.add(text.strip().lower())
        elif shingles not in self._known:
            self._known.add(shingles)
            self._sets.append(shingles)
            for s in self._prefix(shingles):
                self._postings.setdefault(s, []).append(len(self._sets) - 1)

    def near(self, text: str) -> bool:
        shingles = frozenset(self._shingles(text, 3))
        if not shingles:
            return text.strip().lower() in self._plain
        if shingles in self._known:
            return True
        seen: set[int] = set()
        for s in self._prefix(shingles):
            for k in self._postings.get(s, ()):
                if k not in seen:
                    seen.add(k)
                    other = self._sets[k]
                    if len(shingles & other) / len(shingles | other) >= self.threshold:
                        return True
        return False
