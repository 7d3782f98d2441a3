"""Guardrails at speed: the profanity word set and the catalog index give the answers of what they replace."""

from __future__ import annotations

import random

from better_profanity import Profanity

from generator.profanity_index import VariantWordSet, _censored, contains_profanity


def _pair() -> tuple[Profanity, Profanity]:
    plain, fast = Profanity(), Profanity()
    fast.CENSOR_WORDSET = VariantWordSet(fast.CENSOR_WORDSET, fast.CHARS_MAPPING)
    return plain, fast


def test_lookups_and_whole_texts_give_better_profanitys_answers() -> None:
    plain, fast = _pair()
    words = [str(w) for w in plain.CENSOR_WORDSET]
    rng = random.Random(0)
    subs = plain.CHARS_MAPPING
    candidates = []
    for w in rng.sample(words, 300):  # leetspeak spellings, near misses, other letters
        spelt = "".join(rng.choice(subs[c]) if c in subs and rng.random() < 0.5 else c for c in w)
        candidates += [spelt, spelt[:-1], spelt + "s", spelt.replace(spelt[0], "x", 1), spelt.upper().lower()]
    candidates += ["", "a", "*", "@$$", "sh!t", "fux0r", "hello", "class", "assessment", "l1ttle", "1", "*" * 5]
    assert [c in fast.CENSOR_WORDSET for c in candidates] == [c in plain.CENSOR_WORDSET for c in candidates]
    assert sum(c in fast.CENSOR_WORDSET for c in candidates) > 300  # both answers occur
    filler = ["Fresh", "deals", "on", "the", "Summit", "tent", "—", "50%", "off!", "帐篷", "$19.99", "\n", "a"]
    texts = ["Camp in comfort tonight\nThe Trailblazer tent is $149.00.", "What the h3ll", "class assessment",
             "a", "f u c k", "bull shit", "Shop now: sh!t happens", "hand job", "doggie-style", "s0b story"]
    for _ in range(400):
        parts = rng.choices(filler + rng.sample(words, 2), k=rng.randrange(1, 12))
        texts.append(rng.choice([" ", "  ", "-", "_", ". "]).join(parts))
    texts += ["a", "ab", " a", "x a", "shit", " shit", "shit!", "!!", "", "fuck you", "you fuck", "a fuck b", "f", "é",
              "帐篷 shit 帐篷", "sh it", "s h i t", "hand  job", "hand_job", "hand-job.", "bull\nshit", "'shit'"]
    for _ in range(600):  # separators of every kind, words at the edges, one-letter words
        parts = rng.choices(filler + rng.sample(words, 3) + ["x", "@", "I"], k=rng.randrange(1, 9))
        seps = [rng.choice([" ", "", "-", "_", ".", "!", ", ", "\n", "  ", "、"]) for _ in parts]
        texts.append(rng.choice(["", " ", "!"]) + "".join(p + s for p, s in zip(parts, seps, strict=True)))
    want = [plain.contains_profanity(t) for t in texts]
    assert [fast.contains_profanity(t) for t in texts] == want
    assert [contains_profanity(fast, t) for t in texts] == want  # the loop over words, not characters
    assert [_censored(t, fast.CENSOR_WORDSET, fast.ALLOWED_CHARACTERS, fast.MAX_NUMBER_COMBINATIONS)
            for t in texts] == [fast._hide_swear_words(t, "*") for t in texts]  # the very same censored text
    assert any(fast.contains_profanity(t) for t in texts) and not all(fast.contains_profanity(t) for t in texts)
    fast.add_censor_words(["zorblax"])  # words added later are found too
    assert fast.contains_profanity("what a zorblax") and not plain.contains_profanity("what a zorblax")


def test_the_catalog_index_finds_what_scanning_the_catalog_finds() -> None:
    """The facts check's catalog lookup: the first other product (by title) or brand, in catalog order."""
    import regex

    from generator.data import Item
    from generator.guard_index import CatalogIndex

    def item(i: int, title: str, brand: str) -> Item:
        return Item(item_id=f"I{i}", title=title, brand=brand, price=10, currency="USD", in_stock=True, url="u")

    catalog = [item(0, "Summit Tent", "Summit"), item(1, "Summit Tent 2P", "Summit"), item(2, "Mug", "Aurora"),
               item(3, "Aurora Kettle", "Aurora"), item(4, "Lamp", ""), item(5, "Ox", "Ox & Co"),
               item(6, "Trail Chair", "Trail")]

    def scan(low: str, own: set[str], own_brands: set[str]) -> tuple[str, str] | None:  # the loop it replaces
        for it in catalog:
            if it.item_id in own:
                continue
            if it.title.lower() in low:
                return "product", it.item_id
            if it.brand and it.brand.lower() not in own_brands and regex.search(
                    rf"(?<!\w){regex.escape(it.brand.lower())}(?!\w)", low):
                return "brand", it.item_id
        return None

    index = CatalogIndex(catalog)
    rng = random.Random(3)
    pieces = ["summit tent", "summit tent 2p", "mug", "aurora", "kettle", "lamp", "ox", "ox & co", "trail chair",
              "trail", "the", "summit", "lamps", "xmug", "new"]
    for _ in range(500):
        low = " ".join(rng.choices(pieces, k=rng.randrange(1, 6)))
        own = set(rng.sample([it.item_id for it in catalog], rng.randrange(0, 3)))
        own_brands = {it.brand.lower() for it in catalog if it.item_id in own and it.brand}
        hit = index.first_other(low, own, own_brands)
        assert (None if hit is None else (hit.kind, hit.item.item_id)) == scan(low, own, own_brands), (low, own)


def test_the_near_duplicate_index_answers_as_comparing_with_every_text() -> None:
    from generator.guard_index import NearDuplicates
    from generator.guardrails import near_duplicate

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
