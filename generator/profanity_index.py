"""A fast stand-in for better_profanity's word list, with the very same answers.

``better_profanity`` censors a text by looking up each word (and each run of up to a few following words) with
``candidate in CENSOR_WORDSET``, where the word set is a *list* of ~900 ``VaryingString`` objects (a word with
leetspeak substitutes per letter: ``a`` may be written ``@``, ``4`` or ``*``). Every lookup compares the candidate
with every entry in Python: ~30 ms per push text, which made the profanity check the slowest guardrail by far.

:class:`VariantWordSet` is that list (same entries, same order, ``append`` works) whose ``in`` walks a trie of the
words' own letters instead: a character of the candidate may stand for each letter it substitutes, so the walk keeps
the set of trie nodes still possible. With single-character substitutes (better_profanity's own mapping; anything
else is refused), a candidate is in the set exactly when it equals one of its ``VaryingString`` entries. Answers
are remembered by candidate (bounded): copy is written from a small vocabulary, so most words are looked up again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_END = ""  # trie key marking the end of a word (no letter is the empty string)


class VariantWordSet(list):  # type: ignore[type-arg]
    """better_profanity's censor word list with a trie-backed ``in`` (see the module docstring)."""

    def __init__(self, words: Iterable[Any], char_map: Mapping[str, Sequence[str]]):
        super().__init__(words)
        if any(len(sub) != 1 for subs in char_map.values() for sub in subs):
            raise ValueError("only single-character substitutes are supported")
        stands_for: dict[str, set[str]] = {}
        for letter, subs in char_map.items():
            for sub in subs:
                stands_for.setdefault(sub, set()).add(letter)
        self._mapped = frozenset(char_map)
        self._stands_for = {ch: tuple(sorted(letters)) for ch, letters in stands_for.items()}
        self._letters_of: dict[str, tuple[str, ...]] = {}
        self._seen: dict[str, bool] = {}  # answers so far, by candidate (words and runs of words of copy)
        self._starts: dict[str, bool] = {}
        self._trie: dict[str, Any] = {}
        for word in self:
            self._insert(str(word))

    def _insert(self, word: str) -> None:
        node = self._trie
        for letter in word:
            node = node.setdefault(letter, {})
        node[_END] = True

    def append(self, word: Any) -> None:
        super().append(word)
        self._insert(str(word))
        self._seen.clear()
        self._starts.clear()

    def _letters(self, ch: str) -> tuple[str, ...]:
        """The word letters a candidate's character may stand for: those it substitutes, and itself unless it is
        a letter with substitutes of its own (then it stands for itself only if it is one of them)."""
        letters = self._letters_of.get(ch)
        if letters is None:
            letters = self._letters_of[ch] = self._stands_for.get(ch, ()) + (() if ch in self._mapped else (ch,))
        return letters

    def __contains__(self, candidate: object) -> bool:
        if not isinstance(candidate, str):
            return super().__contains__(candidate)
        known = self._seen.get(candidate)
        if known is None:
            if len(self._seen) >= 1 << 16:  # bounded: a campaign's copy reuses a small vocabulary
                self._seen.clear()
            known = self._seen[candidate] = self._walk(candidate)
        return known

    def starts_a_word(self, candidate: str) -> bool:
        """Whether some entry begins with ``candidate`` (as ``in`` reads it): else no longer text that begins with it
        is in the set either."""
        known = self._starts.get(candidate)
        if known is None:
            if len(self._starts) >= 1 << 16:
                self._starts.clear()
            known = self._starts[candidate] = bool(self._nodes(candidate))
        return known

    def _nodes(self, candidate: str) -> list[dict[str, Any]]:
        nodes = [self._trie]
        for ch in candidate:
            letters = self._letters(ch)
            nodes = [child for node in nodes for letter in letters if (child := node.get(letter)) is not None]
            if not nodes:
                break
        return nodes

    def _walk(self, candidate: str) -> bool:
        return any(_END in node for node in self._nodes(candidate))


def contains_profanity(profanity: Any, text: str) -> bool:
    """``profanity.contains_profanity(text)`` (``text`` differs from its censored form), computed by the same steps
    as better_profanity's censoring loop but without its per-character Python: the runs of word characters and the
    next word after each position are found once, then the loop visits words and separators only."""
    return text != _censored(text, profanity.CENSOR_WORDSET, profanity.ALLOWED_CHARACTERS,
                             profanity.MAX_NUMBER_COMBINATIONS)


def _censored(text: str, words: Any, allowed: Any, combinations: int) -> str:
    """better_profanity's ``_hide_swear_words(text, "*")``, step for step (see its source for the quirks kept: a
    last word of one character is no word, a trailing word after a censored run of words is dropped)."""
    first = next((i for i, c in enumerate(text) if c in allowed), len(text))
    if first >= len(text) - 1:
        return text
    head, text = text[:first], text[first:]
    n = len(text)
    seen = getattr(words, "_seen", {})  # a VariantWordSet's answers so far: most lookups end there
    word_char = [c in allowed for c in text]
    run_end, next_word = [n] * n, [n] * (n + 1)  # per index: the end of its word; the next word character
    end, nxt = n, n
    for i in range(n - 1, -1, -1):
        if word_char[i]:
            run_end[i] = end
            nxt = i
        else:
            end = i
        next_word[i] = nxt

    def next_words(start: int, k: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        while True:
            begin = next_word[start] if start < n else n
            if begin >= n - 1:
                return out + [("", begin), ("", begin)]
            end = run_end[begin] if run_end[begin] < n else n - 1
            word = text[begin:run_end[begin]]
            out += [(word, end), (text[start:begin] + word, end)]
            k -= 1
            if k == 0:
                return out
            start = end

    out, cur, skip, ahead, i = [head], "", -1, [], 0
    while i < n:
        if i < skip:
            i = skip
            continue
        if word_char[i]:
            cur += text[i:run_end[i]]
            i = run_end[i]
            continue
        char = text[i]
        if cur.strip() == "":
            out.append(char)
            cur = ""
            i += 1
            continue
        if not ahead:
            ahead = next_words(i, combinations)
        else:
            del ahead[:2]
            if ahead and ahead[-1][0] != "":
                ahead += next_words(ahead[-1][1], 1)
        found, end = _forms_word(cur, ahead, words, seen)
        if found:
            cur, skip, char, ahead = "****", end, "", []
        if _has(words, seen, cur.lower()):
            cur = "****"
        out.append(cur + char)
        cur = ""
        i += 1
    if cur != "" and skip < n - 1:
        out.append("****" if _has(words, seen, cur.lower()) else cur)
    return "".join(out)


def _forms_word(cur: str, ahead: list[tuple[str, int]], words: Any, seen: dict[str, bool]) -> tuple[bool, int]:
    """better_profanity's ``any_next_words_form_swear_word``."""
    full = with_separators = cur.lower()
    starts = getattr(words, "starts_a_word", None)
    for k in range(0, len(ahead), 2):
        single, end = ahead[k]
        if single == "":
            continue
        full += single.lower()
        with_separators += ahead[k + 1][0].lower()
        if _has(words, seen, full) or (with_separators != full and _has(words, seen, with_separators)):
            return True, end
        if starts is not None and not starts(full) and not starts(with_separators):
            break  # nothing longer can be a word either
    return False, -1


def _has(words: Any, seen: dict[str, bool], candidate: str) -> bool:
    found = seen.get(candidate)
    return candidate in words if found is None else found
