"""Indexes that let the guardrails answer per candidate without scanning the catalog.

The facts check must fail copy that names another catalog product (its whole title) or another brand, reporting
the first such catalog item. Scanning every item per candidate (a substring test and a brand pattern per item)
costs milliseconds with a few thousand items. :class:`CatalogIndex` is built once per catalog and finds the same
first item: titles are looked up by their first four characters at each position of the text, brands by one
compiled pattern per distinct brand.
"""

from __future__ import annotations

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
        titles = [(pos, t) for p in range(len(low) - _KEY + 1) for pos, t in self._by_key.get(low[p:p + _KEY], ())
                  if low.startswith(t, p)] + [(pos, t) for pos, t in self._short if t in low]
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
