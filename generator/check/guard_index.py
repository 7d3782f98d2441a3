"""Indexes that let the guardrails and choosing answer per candidate without scanning everything.

- :func:`memo`: data a check derives from a guard context, made once per context;
- :class:`NearDuplicates`: whether a text is a near-duplicate of copy already chosen, without comparing it with
  every text chosen.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

import regex

WORDS = regex.compile(r"[\p{L}\p{N}']+")  # a text's words as shingles and the guardrails read them
_HAN_CHAR = regex.compile(r"\p{Han}")


T = TypeVar("T")


def memo(ctx: Any, key: str, make: Callable[[], T]) -> T:
    """What ``make()`` derives from a guard context, made once per context (a context serves all the candidates of
    its user and its fallback): patterns, phrase sets and allowed numbers are not rebuilt per candidate."""
    store: dict[str, Any] = ctx.__dict__.setdefault("_derived", {})
    found = store.get(key, _MISSING)
    if found is _MISSING:
        found = store[key] = make()
    return found


_MISSING = object()  # no value made yet (None is a value: a context whose fingerprint is unhashable)


@lru_cache(maxsize=1 << 14)
def _shingle_set(text: str) -> frozenset[str]:
    """A text's word 3-shingles (Han 3-grams), once per text (copy recurs: a user's candidates, the chosen copy)."""
    return frozenset(shingles(text, 3))


@lru_cache(maxsize=1 << 14)
def _ordered(shingles: frozenset[str]) -> tuple[str, ...]:
    """A shingle set in the one fixed order every prefix is taken in (any fixed order is exact): shingles with a
    digit (prices, sizes: rare across copy) first, then by CRC-32, so prefixes seldom hold the phrases every push
    shares ("tap to see") whose postings name most of the index."""
    return tuple(sorted(shingles, key=lambda s: (not _DIGIT.search(s), zlib.crc32(s.encode("utf-8")), s)))


_DIGIT = re.compile(r"\d")


class NearDuplicates:
    """Copy already chosen, asked whether a text is a near-duplicate of any of it: the answer of
    ``any(near_duplicate(text, t) for t in taken)`` without comparing with every text taken (that made choosing
    quadratic in the users of a chunk).

    Identical shingle sets are kept once. Other candidates are found by prefix filtering, exact for Jaccard
    similarity: with every set's shingles in one fixed order, two sets at or above the threshold share a shingle
    among the first ``|X| - ceil(t |X|) + 1`` of each; only those pairs are compared, by ``near_duplicate``'s own
    formula. Texts without shingles compare as ``near_duplicate`` does: equal once stripped and lower-cased."""

    def __init__(self, taken: Sequence[str] = (), threshold: float = 0.8):
        self.threshold = threshold
        self._sets: list[frozenset[str]] = []
        self._known: set[frozenset[str]] = set()
        self._postings: dict[str, list[int]] = {}
        self._plain: set[str] = set()  # texts without shingles, stripped and lower-cased
        for text in taken:
            self.add(text)

    def _prefix(self, shingles: frozenset[str]) -> tuple[str, ...]:
        need = math.ceil(self.threshold * len(shingles) - 1e-9)  # a hair low at worst: a longer, still exact prefix
        return _ordered(shingles)[:len(shingles) - need + 1]

    def add(self, text: str) -> None:
        shingles = _shingle_set(text)
        if not shingles:
            self._plain.add(text.strip().lower())
        elif shingles not in self._known:
            self._known.add(shingles)
            self._sets.append(shingles)
            for s in self._prefix(shingles):
                self._postings.setdefault(s, []).append(len(self._sets) - 1)

    def near(self, text: str) -> bool:
        if not self._sets and not self._plain:  # nothing taken yet
            return False
        shingles = _shingle_set(text)
        if not shingles:
            return text.strip().lower() in self._plain
        if shingles in self._known:
            return True
        n, t = len(shingles), self.threshold
        found: set[int] = set()
        for s in self._prefix(shingles):
            found.update(self._postings.get(s, ()))
        for k in found:
            other = self._sets[k]
            # |X & Y| <= min(|X|, |Y|): a set whose size alone keeps it below the threshold is skipped
            m = len(other)
            if min(n, m) / max(n, m) >= t:
                common = len(shingles & other)
                if common / (n + m - common) >= t:  # |X | Y| = |X| + |Y| - |X & Y|
                    return True
        return False


def word_shingles(text: str, n: int) -> set[str]:
    """Word n-grams of the lower-cased text."""
    words = WORDS.findall(text.lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def shingles(text: str, n: int) -> set[str]:
    """Word n-grams, plus 2n-grams of the text's Han characters joined (Chinese has no spaces between words)."""
    han = "".join(_HAN_CHAR.findall(text))
    return word_shingles(text, n) | {han[i:i + 2 * n] for i in range(len(han) - 2 * n + 1)}
