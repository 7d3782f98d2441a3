"""Brand guidelines: one object per brand saying how its pushes sound and what they must and must not say.

It lives in the campaign (``policy.guidelines``) or, for every campaign written by an adapter, in
``brand.yaml`` beside that adapter (``<adapters_dir>/<name>/brand.yaml``; the campaign's wins). It is

* **applied in the prompt** (:func:`apply_to_prompt`): a few lines added to the system message (the voice's tone
  words, the emoji rule, the phrases to use and to avoid, the disclaimer, the capitalisation);
* **enforced by a guardrail** (:func:`check_brand`, check ``brand``, in the default checks): emoji off / on / at
  most N, every required phrase present and no banned phrase (per locale: ``"*"``, the language, the exact
  locale, merged), the disclaimer in the body, and the capitalisation (``sentence``: the title and body start
  with a capital and the title is not in Title Case; ``title``: every longer word of the title is capitalised;
  either way no shouted ALL-CAPS words other than names, codes and the brand's own phrases);
* **shown on the review page** above the queue.

Tone words are for the prompt only: whether copy is "warm" is not something a pattern can check.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from generator.check.result import CheckResult, passing
from generator.core.errors import DataError

GUIDELINES_FILE = "brand.yaml"
Phrase = Annotated[str, Field(min_length=1, max_length=100)]


class LocaleRules(BaseModel):
    """What copy in one locale must and must not say."""

    model_config = ConfigDict(extra="forbid")
    required: list[Phrase] = Field(default_factory=list, max_length=10,
                                description="Phrases every push must contain (case-insensitive).")
    banned: list[Phrase] = Field(default_factory=list, max_length=200,
                              description="Phrases no push may contain (case-insensitive, whole words).")
    disclaimer: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="Text every body must contain, as written.")


class BrandGuidelines(BaseModel):
    """A brand's guideline object (``policy.guidelines`` in a campaign, or ``brand.yaml`` beside an adapter)."""

    model_config = ConfigDict(extra="forbid")
    tone: list[str] = Field(default_factory=list, max_length=8,
                            description="Words describing the voice, e.g. [warm, playful, concise].")
    emoji: Literal["off", "on"] | int = Field(default="on", description="off, on, or at most this many (0-10).")
    capitalisation: Literal["any", "sentence", "title"] = Field(
        default="any", description="sentence: 'New lamp in stock'; title: 'New Lamp In Stock'; any: unchecked.")
    locales: dict[str, LocaleRules] = Field(
        default_factory=dict, max_length=50,
        description="Rules per locale: '*' for all, a language ('en') or a locale ('en_US'); merged in that order.")

    @field_validator("emoji")
    @classmethod
    def _emoji_rule(cls, v: str | int) -> str | int:
        if isinstance(v, int) and not 0 <= v <= 10:
            raise ValueError("give off, on, or a number 0-10")
        return v

    @field_validator("tone")
    @classmethod
    def _tone_words(cls, v: list[str]) -> list[str]:
        for word in v:
            if not regex.fullmatch(r"[\p{L}][\p{L} '-]{0,29}", word):
                raise ValueError(f"{word!r} is not a word (letters, at most 30)")
        return v

    @property
    def max_emoji(self) -> int | None:
        """How many emoji a push may have (None: any number)."""
        return {"off": 0, "on": None}.get(self.emoji, self.emoji) if isinstance(self.emoji, str) else self.emoji

    def rules_for(self, locale: str) -> LocaleRules:
        """The rules of ``"*"``, the locale's language and the locale itself, merged (the most specific
        disclaimer wins)."""
        norm = locale.replace("-", "_")
        keys = ["*", norm.split("_")[0], norm]
        parts = [self.locales[k] for k in dict.fromkeys(keys) if k in self.locales]
        return LocaleRules(required=list(dict.fromkeys(p for r in parts for p in r.required)),
                           banned=list(dict.fromkeys(p for r in parts for p in r.banned)),
                           disclaimer=next((r.disclaimer for r in reversed(parts) if r.disclaimer), None))

    def prompt_lines(self, locale: str) -> list[str]:
        """The guideline as instructions for the model."""
        rules = self.rules_for(locale)
        lines = [f"Voice: {', '.join(self.tone)}."] if self.tone else []
        if self.max_emoji is not None:
            lines.append("Use no emoji." if self.max_emoji == 0 else f"Use at most {self.max_emoji} emoji.")
        if rules.required:
            lines.append(f"Always include: {', '.join(repr(p) for p in rules.required)}.")
        if rules.banned:
            lines.append(f"Never say: {', '.join(repr(p) for p in rules.banned[:20])}.")
        if rules.disclaimer:
            lines.append(f"End the message body with: {rules.disclaimer}")
        if self.capitalisation != "any":
            lines.append("Write in sentence case." if self.capitalisation == "sentence"
                         else "Write the title in Title Case.")
        return lines


def load_guidelines(path: str | Path) -> BrandGuidelines:
    """Read a brand.yaml; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(str(path), None, None, f"not valid YAML: {exc}") from exc
    try:
        return BrandGuidelines.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        if loc is None and ": " in msg:
            loc, _, msg = msg.partition(": ")
        raise DataError(str(path), None, loc, msg) from None


def adapter_guidelines(adapter: str | dict[str, str] | None, locale: str | None = None) -> BrandGuidelines | None:
    """The brand.yaml beside the adapter (of the locale's language, for per-language adapters), if there is one."""
    from generator.core.data import language_of
    from generator.write.adapters import adapter_path

    if isinstance(adapter, dict):
        names = [adapter[language_of(locale)]] if locale and language_of(locale) in adapter else list(adapter.values())
    else:
        names = [adapter] if adapter else []
    for name in names:
        try:
            path = adapter_path(name) / GUIDELINES_FILE
        except Exception:  # noqa: BLE001 - a label or a name that is no adapter: no file to read
            continue
        if path.is_file():
            return load_guidelines(path)
    return None


def policy_with_guidelines(policy: Any, adapter: str | dict[str, str] | None, locale: str | None = None) -> Any:
    """``policy`` (a :class:`generator.check.guardrails.BrandPolicy`) with the adapter's guidelines when it has none."""
    if getattr(policy, "guidelines", None) is not None:
        return policy
    found = adapter_guidelines(adapter, locale)
    return policy if found is None else policy.model_copy(update={"guidelines": found})


def apply_to_prompt(rendered: Any, guidelines: BrandGuidelines | None, locale: str) -> Any:
    """The rendered prompt (:class:`generator.write.prompts.RenderedPrompt`) with the guidelines added to its system
    message; unchanged without guidelines."""
    lines = guidelines.prompt_lines(locale) if guidelines is not None else []
    if not lines:
        return rendered
    block = "Brand guidelines:\n" + "\n".join(f"- {line}" for line in lines)
    return dataclasses.replace(rendered, system=f"{rendered.system}\n\n{block}".strip())


# -- the guardrail --------------------------------------------------------------------------------------------
_EMOJI = regex.compile(r"\X")
_PICTO = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")
_WORD = regex.compile(r"[\p{Lu}\p{Ll}][\p{L}'’-]*")
_SMALL = {"a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "of", "on", "or", "the", "to",
          "with", "your", "you", "our", "is", "it", "now"}


def emoji_count(text: str) -> int:
    """Emoji as a person counts them: grapheme clusters with a pictograph (a flag or a family is one)."""
    return sum(1 for g in _EMOJI.findall(text) if _PICTO.search(g))


def _has(text: str, phrase: str) -> bool:
    """Case-insensitive; whole words where the phrase starts or ends with a letter of a spaced script (Chinese
    has no spaces between words, so there a phrase is found anywhere)."""
    return _phrase_pattern(phrase.lower()).search(text.lower()) is not None


@lru_cache(maxsize=4096)
def _phrase_pattern(p: str) -> regex.Pattern[str]:
    """A lower-cased phrase's pattern, compiled once (the regex module's own cache re-parses once it is full)."""
    before = r"(?<!\w)" if regex.match(r"[\p{Latin}\p{N}]", p) else ""
    after = r"(?!\w)" if regex.search(r"[\p{Latin}\p{N}]$", p) else ""
    return regex.compile(before + regex.escape(p) + after)


def _names(ctx: Any, rules: LocaleRules) -> str:
    """Text whose words may be capitalised or shouted: item titles and brands, campaign facts, brand phrases."""
    parts = [getattr(it, "title", "") for it in ctx.items] + [getattr(it, "brand", "") for it in ctx.items]
    parts += [str(v) for v in (ctx.facts or {}).values()] + rules.required + [rules.disclaimer or ""]
    return " ".join(parts)


def _capitalisation(title: str, body: str, style: str, names: str) -> str | None:
    """What breaks the style, or None."""
    known = {w for w in _WORD.findall(names)}
    for w in _WORD.findall(f"{title} {body}"):
        if len(w) >= 4 and w.isupper() and w not in known:
            return f"shouts {w!r} in capitals"
    for part, text in (("title", title), ("body", body)):
        first = next((c for c in text if c.isalpha()), "")
        if style == "sentence" and first and first.lower() != first.upper() and not first.isupper():
            return f"the {part} does not start with a capital"
    words = [w for w in _WORD.findall(title)[1:] if len(w) >= 4 and w not in known and not w.isupper()]
    if style == "sentence" and len(words) >= 2 and sum(w[0].isupper() for w in words) > len(words) / 2:
        return "the title is in Title Case; the brand writes sentence case"
    if style == "title" and any(w[0].islower() and w.lower() not in _SMALL for w in words):
        return "the title is not in Title Case"
    return None


def check_brand(title: str, body: str, ctx: Any) -> Any:
    """The campaign's brand guidelines (``ctx.policy.guidelines``): emoji, required and banned phrases of the
    locale, disclaimer, capitalisation. Passes when the campaign has none."""
    g: BrandGuidelines | None = getattr(ctx.policy, "guidelines", None)
    if g is None:
        return passing("brand")
    rules, text = g.rules_for(ctx.locale), f"{title}\n{body}"
    n, most = emoji_count(text), g.max_emoji
    if most is not None and n > most:
        return CheckResult("brand", False, f"{n} emoji; the brand allows {'none' if most == 0 else f'at most {most}'}")
    for phrase in rules.banned:
        if _has(text, phrase):
            return CheckResult("brand", False, f"banned phrase {phrase!r} ({ctx.locale})")
    for phrase in rules.required:
        if not _has(text, phrase):
            return CheckResult("brand", False, f"missing the required phrase {phrase!r} ({ctx.locale})")
    if rules.disclaimer and rules.disclaimer not in body:
        return CheckResult("brand", False, f"missing the disclaimer {rules.disclaimer!r}")
    if g.capitalisation != "any" and (why := _capitalisation(title, body, g.capitalisation, _names(ctx, rules))):
        return CheckResult("brand", False, why)
    return passing("brand")
