"""Literal prefilters: which of a set of patterns may match a text, found with one Aho-Corasick pass over the text for
the literals every match of each pattern contains, so that a pattern none of whose literals the text has is not
scanned at all (the guardrails' large alternations of claims, tone and links are each a scan of the whole copy).

:func:`required_literals` reads a pattern's syntax tree (Python's own parser of the ``re`` syntax; a pattern it cannot
read, or one of the ``regex`` module's own constructs, gets no prefilter and is always scanned) and gives a set of
strings such that every match of the pattern contains one of them, or None. A case-insensitive pattern's literals are
lower-cased and looked for in the text lower-cased, which finds what the pattern's case-insensitive matching finds
when every character of the text outside ASCII is caseless (:func:`~generator.core.formatting.lower_is_exact`); a
text with another character (an accented capital, a Kelvin sign, a long s) scans every pattern.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import ahocorasick
import regex

from generator.core.formatting import has_case, lower_is_exact

try:  # the re module's parser (Python 3.11+: re._parser; before: sre_parse)
    from re import _constants as _c
    from re import _parser as _p
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

_CAP = 32  # the most strings a node's exact set may hold (the cross products of a sequence grow)




Info = tuple[bool, frozenset[str] | None]  # (exact, strings): exact, the node matches one of them; else factors


def _better(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """The more selective of two factor sets (every string non-empty; the longer shortest string, then fewer)."""
    good = [s for s in (a, b) if s and "" not in s]
    if not good:
        return None
    return max(good, key=lambda s: (min(map(len, s)), -len(s)))


def _seq(items: Any, fold: bool) -> Info:
    exact, cur, best = True, frozenset({""}), None
    for op, av in items:
        ex, s = _node(op, av, fold)
        if ex and s is not None:
            prod = frozenset(a + b for a in cur for b in s)
            if len(prod) <= _CAP:
                cur = prod
                continue
            exact = False
            best, cur = _better(best, cur), s
            continue
        exact = False
        best, cur = _better(_better(best, cur), s), frozenset({""})
    if exact:
        return True, cur
    return False, _better(best, cur)


def _node(op: Any, av: Any, fold: bool) -> Info:
    if op is _c.LITERAL:
        ch = chr(av)
        if fold:
            if ord(ch) > 127 and has_case(ch):
                return False, None
            ch = ch.lower()
        return True, frozenset({ch})
    if op is _c.IN:
        if len(av) <= 8 and all(o is _c.LITERAL for o, _ in av):
            return _seq([(_c.BRANCH, (None, [[(o, v)] for o, v in av]))], fold)
        return False, None
    if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
        return True, frozenset({""})  # nothing consumed
    if op is _c.SUBPATTERN:
        _, add, dele, sub = av
        if (add | dele) & _c.SRE_FLAG_IGNORECASE:
            return False, None  # a case change inside: no literal of it is kept
        return _seq(sub, fold)
    if op is _c.ATOMIC_GROUP:
        return _seq(av, fold)
    if op is _c.BRANCH:
        infos = [_seq(b, fold) for b in av[1]]
        if all(ex for ex, _ in infos):
            union = frozenset().union(*(s for _, s in infos if s is not None))
            if len(union) <= _CAP:
                return True, union
        parts = [s for _, s in infos]
        if any(s is None or "" in s for s in parts):
            return False, None
        return False, frozenset().union(*parts)  # type: ignore[arg-type]
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
        lo, hi, item = av
        ex, s = _seq(item, fold)
        if lo == 0:
            if hi == 1 and ex and s is not None and len(s) < _CAP:
                return True, s | {""}
            if ex and s == frozenset({""}):
                return True, s
            return False, None  # what it consumes is not known: no string runs across it
        if lo == hi == 1:
            return ex, s
        return False, s
    return False, None  # any character, a class, a back reference, a conditional


def required_literals(pattern: regex.Pattern[str] | re.Pattern[str]) -> frozenset[str] | None:
    """Strings every match of ``pattern`` contains one of (lower-cased for a case-insensitive pattern), or None."""
    fold = bool(pattern.flags & re.IGNORECASE)
    flags = re.IGNORECASE if fold else 0
    try:
        parsed = _p.parse(pattern.pattern, flags)
    except Exception:  # noqa: BLE001 - the regex module's own syntax (\p{...}, fuzzy matching): no prefilter
        return None
    if parsed.state.flags & (re.VERBOSE | re.IGNORECASE) != flags:
        return None  # an inline flag changed how the whole pattern reads
    ex, s = _seq(parsed, fold)
    if s is None or "" in s:
        return None
    return s


class LiteralFilter:
    """Which of ``patterns`` may match a text: those without literals always, the others where one of their literals
    is in the text (one automaton per case: the case-insensitive patterns' in the text lower-cased)."""

    def __init__(self, patterns: Sequence[regex.Pattern[str]]):
        self.patterns = tuple(patterns)
        self.always: frozenset[int] = frozenset()
        automata: dict[bool, Any] = {}
        owners: dict[tuple[bool, str], set[int]] = {}
        always = set()
        for n, pattern in enumerate(self.patterns):
            lits = required_literals(pattern)
            if lits is None:
                always.add(n)
                continue
            fold = bool(pattern.flags & re.IGNORECASE)
            for lit in lits:
                owners.setdefault((fold, lit), set()).add(n)
        for (fold, lit), who in owners.items():
            automaton = automata.setdefault(fold, ahocorasick.Automaton())
            automaton.add_word(lit, frozenset(who))
        for automaton in automata.values():
            automaton.make_automaton()
        self.always = frozenset(always)
        self._automata = automata
        self.everything = frozenset(range(len(self.patterns)))

    def candidates(self, text: str) -> frozenset[int]:
        """The indexes of the patterns that may match ``text`` (a superset of those that do)."""
        return _candidates(self, text)


@lru_cache(maxsize=1024)
def _candidates(flt: LiteralFilter, text: str) -> frozenset[int]:
    found = set(flt.always)
    for fold, automaton in flt._automata.items():
        if fold and not lower_is_exact(text):
            return flt.everything
        for _, who in automaton.iter(text.lower() if fold else text):
            found |= who
    return frozenset(found)
