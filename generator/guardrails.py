"""Guardrails: named checks that every candidate message must pass before anyone may send it.

Each check returns a :class:`CheckResult` (name, passed, reason). Lengths are counted in grapheme clusters
(what a person sees as one character: an emoji with modifiers, a Chinese character), and the whole push
payload is measured in bytes after JSON encoding, as FCM and APNs do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import regex
from pydantic import BaseModel, Field

from generator.data import Item, language_of
from generator.prompts import CURRENCY_SYMBOLS, quote_user_text

MAX_PAYLOAD_BYTES = 4096


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


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class BrandPolicy(BaseModel):
    """A brand's rules for its copy (YAML in a campaign file, or the defaults)."""

    banned_words: list[str] = Field(default_factory=lambda: ["guaranteed", "miracle", "cure", "risk-free",
                                                             "lowest price ever", "100%"],
                                    description="Words or phrases that must never appear (case-insensitive).")
    required_disclaimer: str | None = Field(default=None, description="Text every body must contain.")
    platforms: list[str] = Field(default_factory=lambda: ["ios", "android"],
                                 description="Platforms whose visible-length limits apply (the strictest wins).")


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
    policy: BrandPolicy = field(default_factory=BrandPolicy)

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
        rest = text.lower()
        whole = [it for it in self.items if it.title.lower() in rest]
        for it in whole:
            rest = rest.replace(it.title.lower(), " ")
        return whole + [it for it in self.items if it not in whole and mentions_item(rest, it)] or self.items

    def allowed_amounts(self, items: Sequence[Item] | None = None) -> dict[Decimal, set[str]]:
        out: dict[Decimal, set[str]] = {}
        for it in self.items if items is None else items:
            for amount in (it.price, it.sale_price):
                if amount is not None:
                    out.setdefault(Decimal(amount).quantize(Decimal("0.01")), set()).add(it.currency)
        return out

    def allowed_percentages(self, items: Sequence[Item] | None = None) -> set[int]:
        return {it.discount_pct for it in (self.items if items is None else items) if it.discount_pct} \
            | self.extra_percentages


def graphemes(text: str) -> int:
    """Length in user-perceived characters (extended grapheme clusters)."""
    return len(regex.findall(r"\X", text))


_SYMBOL_CURRENCIES: dict[str, set[str]] = {}
for _code, _sym in CURRENCY_SYMBOLS.items():
    _SYMBOL_CURRENCIES.setdefault(_sym, set()).add(_code)
_SYMBOL_CURRENCIES["￥"] = {"CNY", "JPY"}
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_MONEY_BEFORE = regex.compile(rf"(?P<sym>[$€£¥￥])\s?(?P<num>{_NUMBER})")
_MONEY_AFTER = regex.compile(rf"(?<![\d.])(?P<num>{_NUMBER})\s?(?P<code>[A-Z]{{3}}\b|元|美元|欧元|英镑|dollars?\b)",
                             regex.I)
_BARE_DECIMAL = regex.compile(r"(?<![\d.,$€£¥￥])\d+\.\d{2}(?![\d%])")
_PERCENT = regex.compile(r"(?P<num>\d+(?:\.\d+)?)\s?(?:%|％|percent\b|per cent\b)", regex.I)
_WORDS_CURRENCY = {"元": {"CNY"}, "美元": {"USD"}, "欧元": {"EUR"}, "英镑": {"GBP"}, "dollar": {"USD"},
                   "dollars": {"USD"}}


def _amount(num: str) -> Decimal | None:
    try:
        return Decimal(num.replace(",", "")).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None


def money_mentions(text: str) -> list[tuple[Decimal, set[str], str]]:
    """Every amount of money in ``text`` as ``(amount, possible currencies, matched text)``."""
    found: list[tuple[Decimal, set[str], str]] = []
    spans: list[tuple[int, int]] = []
    for m in _MONEY_BEFORE.finditer(text):
        amt = _amount(m["num"])
        if amt is not None:
            found.append((amt, _SYMBOL_CURRENCIES.get(m["sym"], set()), m[0]))
            spans.append(m.span())
    for m in _MONEY_AFTER.finditer(text):
        amt, code = _amount(m["num"]), m["code"]
        if amt is None or any(a <= m.start() < b for a, b in spans):
            continue
        currencies = _WORDS_CURRENCY.get(code.lower(), {code.upper()})
        found.append((amt, currencies, m[0]))
        spans.append(m.span())
    for m in _BARE_DECIMAL.finditer(text):  # "now 19.99": an amount with no currency at all
        if not any(a <= m.start() < b for a, b in spans):
            amt = _amount(m[0])
            if amt is not None:
                found.append((amt, set(), m[0]))
    return found


# --- checks -------------------------------------------------------------------------------------------------

def check_lengths(title: str, body: str, ctx: GuardContext) -> list[CheckResult]:
    out = []
    for part, text in (("title", title), ("body", body)):
        n = graphemes(text)
        limit = min(PLATFORMS[p].__getattribute__(part) for p in ctx.platforms)
        if n == 0:
            out.append(CheckResult(f"{part}_length", False, f"{part} is empty"))
        elif n > limit:
            out.append(CheckResult(f"{part}_length", False, f"{part} has {n} characters, limit {limit}"))
        else:
            out.append(CheckResult(f"{part}_length", True))
    return out


def push_payloads(title: str, body: str, deep_link: str = "") -> dict[str, dict[str, object]]:
    """The FCM HTTP v1 and APNs payloads this copy would travel in (minimal form)."""
    data = {"deep_link": deep_link} if deep_link else {}
    return {
        "fcm": {"message": {"notification": {"title": title, "body": body}, "data": data}},
        "apns": {"aps": {"alert": {"title": title, "body": body}, "sound": "default"}, **data},
    }


def check_payload_size(title: str, body: str, ctx: GuardContext, deep_link: str = "") -> CheckResult:
    sizes = {k: len(json.dumps(v, ensure_ascii=False).encode("utf-8"))
             for k, v in push_payloads(title, body, deep_link).items()}
    worst = max(sizes, key=sizes.__getitem__)
    if sizes[worst] > MAX_PAYLOAD_BYTES:
        return CheckResult("payload_size", False, f"{worst} payload is {sizes[worst]} bytes, limit {MAX_PAYLOAD_BYTES}")
    return CheckResult("payload_size", True)


def check_prices(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """Every amount is the price or sale price, in its currency, of an item the copy names."""
    text = f"{title}\n{body}"
    allowed = ctx.allowed_amounts(ctx.named_items(text))
    for amount, currencies, matched in money_mentions(text):
        if amount not in allowed:
            other = amount in ctx.allowed_amounts()
            return CheckResult("prices", False, f"price {matched!r} is another item's, not the named item's"
                               if other else f"price {matched!r} matches no item's price")
        if currencies and not currencies & allowed[amount]:
            return CheckResult("prices", False,
                               f"price {matched!r} has the wrong currency (item is in {sorted(allowed[amount])[0]})")
    return CheckResult("prices", True)


def check_percentages(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """Every percentage is the discount of an item the copy names, or the campaign's (a coupon's)."""
    text = f"{title}\n{body}"
    allowed = ctx.allowed_percentages(ctx.named_items(text))
    for m in _PERCENT.finditer(text):
        value = Decimal(m["num"])
        if value != value.to_integral_value() or int(value) not in allowed:
            why = f"allowed: {sorted(allowed)}" if allowed else "no item is discounted"
            return CheckResult("percentages", False, f"discount {m[0]!r} is not the real one ({why})")
    return CheckResult("percentages", True)


_STOP = {"the", "and", "for", "with", "set", "pack", "of", "in", "a", "an", "to", "by", "on"}


def _content_words(text: str) -> list[str]:
    return [w for w in regex.findall(r"[\p{L}\p{N}]+", text.lower()) if len(w) > 2 and w not in _STOP]


def mentions_item(text: str, item: Item) -> bool:
    """Whether ``text`` names ``item``: its full title, or at least half of its title's content words
    (and at least two of them), e.g. "Summit water bottle" for "Summit Insulated Water Bottle 750ml"."""
    low = text.lower()
    if item.title.lower() in low:
        return True
    words = _content_words(item.title)
    present = set(_content_words(text))
    hits = sum(1 for w in words if w in present)
    return bool(words) and hits >= min(2, len(words)) and hits * 2 >= len(words)


def check_mentions_item(title: str, body: str, ctx: GuardContext) -> CheckResult:
    text = f"{title}\n{body}"
    if any(mentions_item(text, it) for it in ctx.items):
        return CheckResult("mentions_item", True)
    return CheckResult("mentions_item", False, "the copy names none of the user's ranked items")


_HAN = regex.compile(r"\p{Han}")


def check_well_formed(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No broken characters (a multi-byte character cut in half decodes to U+FFFD) or control characters."""
    text = f"{title}{body}"
    if "\ufffd" in text:
        return CheckResult("well_formed", False, "contains a broken character (U+FFFD)")
    if regex.search(r"[\p{Cc}\p{Cs}\p{Co}]", text):
        return CheckResult("well_formed", False, "contains control or private-use characters")
    return CheckResult("well_formed", True)


def check_language(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy is written in the user's language, judged by script: Chinese copy is mostly Han characters
    (product names may stay in Latin letters) and so is its title, other locales' copy has no Han characters.
    A title of only numbers and symbols ("15%", "$22.47") is in no language."""
    text = f"{title} {body}"
    han = len(_HAN.findall(text))
    latin_words = len(regex.findall(r"\p{Latin}+", text))
    lang = language_of(ctx.locale)
    if title.strip() and not regex.search(r"\p{L}", title):  # an empty title is check_lengths' to report
        return CheckResult("language", False, "the title has no words, only numbers or symbols")
    if lang == "zh":
        if title.strip() and not _HAN.search(title):
            return CheckResult("language", False, f"locale {ctx.locale} needs a Chinese title")
        if han == 0 or han < latin_words:
            return CheckResult("language", False, f"locale {ctx.locale} needs Chinese copy: {han} Han characters, "
                                                  f"{latin_words} Latin words")
    elif han:
        return CheckResult("language", False, f"locale {ctx.locale} but the copy has {han} Han characters")
    return CheckResult("language", True)


_OFFERS = regex.compile(r"\b(free|freebie|giveaway|bogo|buy one,? get one|gift card|free shipping|no cost|"
                        r"complimentary|on the house)\b"
                        r"|免费|包邮|赠品|买一送一",
                        regex.I)
_LINK = regex.compile(r"https?://|www\.|\b[\w-]+\.(?:com|net|org|io|cn|co|info|biz|xyz|ly)\b", regex.I)
_EMAIL = regex.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE = regex.compile(r"(?<![\w$€£¥.])\+?\d[\d\s().-]{7,}\d(?![\w%])")
_INSTRUCTION = regex.compile(
    r"ignore (all |any )?(the )?(previous|prior|above)|system prompt|disregard|as an ai|language model|"
    r"new instructions|jailbreak|忽略(之前|以上|所有)|系统提示|指令", regex.I)
_ZH_PROFANITY = ("傻逼", "他妈", "操你", "淫", "屌", "贱人", "妈的", "婊")


@lru_cache(maxsize=1)
def _profanity():  # type: ignore[no-untyped-def]
    from better_profanity import profanity

    profanity.load_censor_words()
    return profanity


def _luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def check_policy(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The brand's banned words, profanity (English word list and common Chinese terms), required disclaimer."""
    text = f"{title}\n{body}"
    low = text.lower()
    for word in ctx.policy.banned_words:
        if regex.search(rf"(?<!\w){regex.escape(word.lower())}(?!\w)", low):
            return CheckResult("policy", False, f"banned word {word!r}")
    if _profanity().contains_profanity(text) or any(w in text for w in _ZH_PROFANITY):
        return CheckResult("policy", False, "profanity")
    if ctx.policy.required_disclaimer and ctx.policy.required_disclaimer not in body:
        return CheckResult("policy", False, f"missing the required disclaimer {ctx.policy.required_disclaimer!r}")
    return CheckResult("policy", True)


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
    m = _DISPARAGING.search(f"{title}\n{body}")
    if m:
        return CheckResult("tone", False, f"speaks ill of the product: {m[0]!r}")
    return CheckResult("tone", True)


def check_pii(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No e-mail addresses, phone numbers or card-like numbers (13-19 digits passing Luhn) in the output."""
    text = f"{title}\n{body}"
    if _EMAIL.search(text):
        return CheckResult("pii", False, "contains an e-mail address")
    for m in _PHONE.finditer(text):
        digits = regex.sub(r"\D", "", m[0])
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return CheckResult("pii", False, "contains a card-like number")
        if len(digits) >= 8:
            return CheckResult("pii", False, f"contains a phone-like number {m[0].strip()!r}")
    return CheckResult("pii", True)


def _word_shingles(text: str, n: int) -> set[str]:
    words = regex.findall(r"[\p{L}\p{N}']+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def _shingles(text: str, n: int) -> set[str]:
    """Word n-grams, plus 2n-grams of the text's Han characters joined (Chinese has no spaces between words)."""
    han = "".join(_HAN.findall(text))
    return _word_shingles(text, n) | {han[i:i + 2 * n] for i in range(len(han) - 2 * n + 1)}


def check_injection(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """Nothing from shopper-written text that could carry instructions or links: no links at all, no
    instruction-like phrases, and no run of 5 words (10 Han characters) copied from a quoted review."""
    text = f"{title}\n{body}"
    if _LINK.search(text):
        return CheckResult("injection", False, "contains a link (deep links travel outside the copy)")
    if _INSTRUCTION.search(text):
        return CheckResult("injection", False, "contains instruction-like text")
    mine = _shingles(text, 5)
    for quoted in ctx.quoted_texts:  # as written, and as the prompt quoted it (links replaced, markup gone)
        if mine & (_shingles(quoted, 5) | _shingles(quote_user_text(quoted), 5)):
            return CheckResult("injection", False, "copies shopper-written text from a review")
    return CheckResult("injection", True)


def _allowed_numbers(ctx: GuardContext) -> set[str]:
    texts = [it.title for it in ctx.items] + [f"{it.price} {it.sale_price or ''}" for it in ctx.items]
    texts += [str(v) for v in ctx.facts.values()]
    nums = {n for t in texts for n in regex.findall(r"\d+(?:\.\d+)?", t)}
    return nums | {str(p) for p in ctx.allowed_percentages()}


def check_facts(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """No invented offers (free, gifts, BOGO) unless the campaign has one; every other number (sizes, counts,
    dates) comes from the items or the campaign; no other catalog product or brand than the user's items."""
    text = f"{title}\n{body}"
    offer = _OFFERS.search(text)
    if offer and not ctx.facts.get("offer"):
        return CheckResult("facts", False, f"invented offer {offer[0]!r}")
    code = ctx.facts.get("coupon_code")
    if code and str(code) not in text:
        return CheckResult("facts", False, f"the campaign's coupon code {code!r} is missing")
    for m in regex.finditer(r"\b[A-Z][A-Z0-9]{3,}\d+[A-Z0-9]*\b", text):  # coupon-code-like tokens
        if m[0] != code:
            return CheckResult("facts", False, f"coupon code {m[0]!r} is not the campaign's")
    allowed = _allowed_numbers(ctx)
    stripped = _MONEY_BEFORE.sub(" ", _PERCENT.sub(" ", text))
    for m in regex.finditer(r"\d+(?:[.,:/]\d+)*", stripped):
        parts = regex.findall(r"\d+(?:\.\d+)?", m[0])
        if not all(p in allowed or p.rstrip("0").rstrip(".") in allowed for p in parts):
            return CheckResult("facts", False, f"number {m[0]!r} is not in the item or campaign facts")
    titles = {it.title.lower() for it in ctx.items}
    for quoted in regex.findall(r"「([^」\n]+)」", text):  # a bracketed product name is an item's whole name
        meant = next((it for it in ctx.items if mentions_item(quoted, it)), None)
        if meant is not None and quoted.strip().lower() not in titles:
            return CheckResult("facts", False, f"names 「{quoted}」 for {meant.title!r}: a cut or altered name")
    own = {it.item_id for it in ctx.items}
    own_brands = {it.brand.lower() for it in ctx.items if it.brand}
    low = text.lower()
    for it in ctx.catalog:
        if it.item_id in own:
            continue
        if it.title.lower() in low:
            return CheckResult("facts", False, f"names another product {it.title!r}")
        if it.brand and it.brand.lower() not in own_brands and regex.search(
                rf"(?<!\w){regex.escape(it.brand.lower())}(?!\w)", low):
            return CheckResult("facts", False, f"names another brand {it.brand!r}")
    return CheckResult("facts", True)


def _han_runs(text: str, n: int) -> set[str]:
    return {run[i:i + n] for run in regex.findall(r"\p{Han}+", text) for i in range(len(run) - n + 1)}


def check_example_copy(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy does not lift phrases from the template's example answers, which are about other products:
    no run of 5 Han characters, or of 7 words, that an example has and neither the user's items nor the brand's
    own template copy for this user (generic phrasing such as 使用优惠码) have. Following an example's shape
    with the user's own facts (专属 15% 优惠券 / 使用优惠码 X 购买 <the user's item>) is what examples are for."""
    text = f"{title}\n{body}"
    facts = " ".join([*(it.title for it in ctx.items), *ctx.generic_texts])
    allowed = _han_runs(facts, 5) | _word_shingles(facts, 7)
    mine = (_han_runs(text, 5) | _word_shingles(text, 7)) - allowed
    for example in ctx.example_texts:
        if mine & (_han_runs(example, 5) | _word_shingles(example, 7)):
            return CheckResult("example_copy", False, "copies a phrase from the template's example answer")
    return CheckResult("example_copy", True)


_LABEL = regex.compile(r"(?m)^\s*([^\n:：]{1,40}?)\s*[:：]")


def check_prompt_echo(title: str, body: str, ctx: GuardContext) -> CheckResult:
    """The copy is not the prompt read back: none of its fact labels ("商品：", "Price now:") and none of its
    unlabelled lines (the instruction, "写一条商品推荐推送。") come back."""
    if not ctx.prompt_text:
        return CheckResult("prompt_echo", True)
    text = f"{title}\n{body}".lower()
    for label in {m.strip().lower() for m in _LABEL.findall(ctx.prompt_text)}:
        if regex.search(rf"(?<!\w){regex.escape(label)}\s*[:：]", text):
            return CheckResult("prompt_echo", False, f"repeats the prompt's label {label!r}")
    for line in ctx.prompt_text.lower().splitlines():
        line = line.strip()
        if len(line) >= 6 and not _LABEL.match(line) and line in text:
            return CheckResult("prompt_echo", False, f"repeats the prompt's line {line!r}")
    return CheckResult("prompt_echo", True)


def near_duplicate(a: str, b: str, threshold: float = 0.8) -> bool:
    """Jaccard similarity of word 3-shingles (Han 3-grams) at or above ``threshold``."""
    sa, sb = _shingles(a, 3), _shingles(b, 3)
    if not sa or not sb:
        return a.strip().lower() == b.strip().lower()
    return len(sa & sb) / len(sa | sb) >= threshold


Check = Callable[[str, str, GuardContext], CheckResult | list[CheckResult]]
DEFAULT_CHECKS: tuple[Check, ...] = (check_lengths, check_payload_size, check_well_formed, check_language,
                                     check_prices, check_percentages, check_facts, check_mentions_item,
                                     check_example_copy, check_prompt_echo, check_policy, check_tone, check_pii,
                                     check_injection)


def run_checks(title: str, body: str, ctx: GuardContext,
               checks: Sequence[Check] = DEFAULT_CHECKS) -> list[CheckResult]:
    """Run every check; the message passes when all results pass."""
    results: list[CheckResult] = []
    for check in checks:
        r = check(title, body, ctx)
        results.extend(r if isinstance(r, list) else [r])
    return results


def failures(results: Sequence[CheckResult]) -> list[str]:
    return [f"{r.name}: {r.reason}" for r in results if not r.passed]
