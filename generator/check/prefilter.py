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
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache, reduce
from operator import itemgetter, or_
from types import MappingProxyType
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
_VALUE = itemgetter(1)  # of an automaton's hit, (end, value)




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


# what :class:`BranchFilter` keeps a pattern whole for: a back reference, a conditional or a recursion (they depend on
# group numbers), a global inline flag (it may stand in one alternative and hold for all); any group opening "(?" but
# a plain or named group, a lookaround, an atomic group or scoped flags
_WHOLE = regex.compile(r"\\(?:[1-9]|g)|\(\?(?!:|=|!|<=|<!|>|P?<\w+>|[a-zA-Z-]+:)")


def _syntax(src: str) -> Iterator[tuple[int, str]]:
    """The group brackets and bars of a pattern source, with their positions: ``(``, ``)`` and ``|`` outside sets
    and escapes."""
    i, in_set = 0, False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if in_set:
            in_set = c != "]"
        elif c == "[":
            in_set = True
            i += 1 + (src[i + 1:i + 2] == "^")
            i += src[i:i + 1] == "]"  # a ']' that opens a set is one of its characters
            continue
        elif c in "()|":
            yield i, c
        i += 1


def _alternatives(src: str) -> list[str]:
    """The alternatives of a pattern source at its top level (``|`` outside groups, sets and escapes)."""
    parts, depth, start = [], 0, 0
    for i, c in _syntax(src):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0:
            parts.append(src[start:i])
            start = i + 1
    parts.append(src[start:])
    return parts


def _main_group(alt: str) -> tuple[str, str, str] | None:
    """``(head, inner, tail)`` where ``alt`` is ``head(?:inner)tail`` with ``inner`` an alternation and the group
    neither repeated nor optional, and no other such group at its level; else None."""
    found, depth, opened = [], 0, 0
    for i, c in _syntax(alt):
        if c == "(":
            opened = i if depth == 0 else opened
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0 and alt.startswith("(?:", opened) and alt[i + 1:i + 2] not in ("?", "*", "+", "{") \
                    and len(_alternatives(alt[opened + 3:i])) > 1:
                found.append((alt[:opened], alt[opened + 3:i], alt[i + 1:]))
    return found[0] if len(found) == 1 else None


class _Branches:
    """A pattern source's alternation: each alternative a unit of its own (its number in ``units``, which holds its
    source) or, at the top, ``head(?:...)tail`` around an alternation of units: a unit as a whole (its number in
    ``unit``) with its alternatives."""

    def __init__(self, src: str, units: list[str], head: str = "", tail: str = "", unit: int | None = None):
        self.head, self.tail, self.unit = head, tail, unit
        self.alternatives: list[_Branches | int] = []
        for alt in _alternatives(src):
            units.append(alt)
            group = _main_group(alt) if unit is None else None
            self.alternatives.append(len(units) - 1 if group is None
                                     else _Branches(group[1], units, group[0], group[2], len(units) - 1))

    def source(self, alive: frozenset[int], units: list[str]) -> str | None:
        """The source with only the ``alive`` units, or None where none of them is left."""
        parts = [s for s in (units[a] if a in alive else None if isinstance(a, int) else a.source(alive, units)
                             for a in self.alternatives) if s is not None]
        if not parts or self.unit is not None and self.unit not in alive:
            return None
        inner = "|".join(parts)
        return inner if self.unit is None else f"{self.head}(?:{inner}){self.tail}"


def _unit_literals(src: str, flags: int) -> frozenset[str] | None:
    try:
        return required_literals(regex.compile(src, flags))
    except regex.error:
        return None


class BranchFilter:
    """Each of ``patterns`` as it may match one text: None where it cannot (as :class:`LiteralFilter` rules it out),
    else the pattern without the alternatives none of whose literals the text has: those at its top level and those
    of a group an alternative there is built around (``\\b(?:best|finest|...)\\b``, neither optional nor repeated).
    An alternative that cannot match anywhere in the text fails at every place, so the pattern cut to the others
    finds the same matches, in the same order, as the whole one; a scan with the few alternatives a text has a
    literal of is many times faster than one with a large alternation. Group numbers may differ from the whole
    pattern's: read a match's text and span only. A pattern with back references or global inline flags is kept
    whole."""

    _MOST = 1 << 12  # texts' literal sets and cut patterns kept (then forgotten)

    def __init__(self, patterns: Sequence[regex.Pattern[str]]):
        self.patterns = tuple(patterns)
        self._units: list[list[str]] = []
        self._trees: list[_Branches | None] = []
        # each (pattern, unit) a bit of a mask, in order: a text's set of units is an int, which its automaton hits
        # are or'ed into (no Python loop per hit, no tuples hashed), and which keys what the set makes
        self._bits: list[tuple[int, int]] = []
        always = 0  # the units without literals
        owners: dict[tuple[bool, str], int] = {}
        for n, pattern in enumerate(self.patterns):
            units: list[str] = []
            whole = bool(pattern.flags & regex.VERBOSE) or _WHOLE.search(pattern.pattern) is not None
            tree = None if whole else _Branches(pattern.pattern, units)
            units = units if tree is not None else [pattern.pattern]
            self._units.append(units)
            self._trees.append(tree)
            fold = bool(pattern.flags & re.IGNORECASE)
            for k, unit in enumerate(units):
                bit = 1 << len(self._bits)
                self._bits.append((n, k))
                lits = _unit_literals(unit, pattern.flags)
                if lits is None:
                    always |= bit
                for lit in lits or ():
                    owners[fold, lit] = owners.get((fold, lit), 0) | bit
        self._always = always
        self._automata: dict[bool, Any] = {}
        for (fold, lit), who in owners.items():
            self._automata.setdefault(fold, ahocorasick.Automaton()).add_word(lit, who)
        for automaton in self._automata.values():
            automaton.make_automaton()
        self._by_found: dict[int, Mapping[regex.Pattern[str], regex.Pattern[str] | None]] = {}
        self._whole = MappingProxyType({pattern: pattern for pattern in self.patterns})
        self._cut: dict[tuple[int, frozenset[int]], regex.Pattern[str] | None] = {}

    def scans(self, text: str, low: str | None = None) -> Mapping[regex.Pattern[str], regex.Pattern[str] | None]:
        """Each pattern mapped to None where it cannot match ``text``, else to what to scan ``text`` with (``low``:
        ``text.lower()``, where the caller has it)."""
        found = self._always
        for fold, automaton in self._automata.items():
            if fold and not lower_is_exact(text):
                return self._whole
            hits = automaton.iter((text.lower() if low is None else low) if fold else text)
            found = reduce(or_, map(_VALUE, hits), found)  # the mask of every unit a literal of is in the text
        hit = self._by_found.get(found)
        if hit is None:
            if len(self._by_found) >= self._MOST:
                self._by_found.clear()
            alive = [self._bits[i] for i in range(found.bit_length()) if found >> i & 1]
            hit = self._by_found[found] = MappingProxyType({
                pattern: self._pattern(n, frozenset(k for m, k in alive if m == n))
                for n, pattern in enumerate(self.patterns)})
        return hit

    def _pattern(self, n: int, alive: frozenset[int]) -> regex.Pattern[str] | None:
        """Pattern ``n`` with only the ``alive`` units (itself with all of them; None with none)."""
        if len(alive) == len(self._units[n]):
            return self.patterns[n]
        if (n, alive) not in self._cut:
            if len(self._cut) >= self._MOST:
                self._cut.clear()
            tree = self._trees[n]
            src = tree.source(alive, self._units[n]) if tree is not None and alive else None
            self._cut[n, alive] = None if src is None else regex.compile(src, self.patterns[n].flags)
        return self._cut[n, alive]
