"""Prompt templates: sandboxed Jinja, strict about variables, one file per campaign type and language.

A template lives at ``prompts/<campaign_type>.<lang>.j2``. It starts with a header comment declaring its
variables and sets the system message in a ``{% set system %}`` block; the rest of the file is the user
message. Marketers edit templates, so they render in a ``SandboxedEnvironment`` with ``StrictUndefined``.

Text written by shoppers (reviews) enters a prompt only through :func:`quote_user_text`: length-capped,
stripped of markup and line structure, and wrapped in quotes, as data rather than instructions.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from generator.core.config import get_settings
from generator.core.data import Item, language_of
from generator.core.errors import TemplateError
from generator.core.formatting import format_count, format_day, format_money, format_pct
from generator.core.names import ends_plural

HEADER = re.compile(r"^\{#-?\s*(.*?)\s*-?#\}", re.S)
GENERATION_PREFIX = "Title:"  # prefilled assistant text so the model answers in the Title/Body format


def format_price(amount: Decimal, currency: str, locale: str = "en_US") -> str:
    """A price as a shopper of ``locale`` reads it (``$12.99``, ``₹1,399``, ``1.399 €``); see
    :mod:`generator.core.formatting`, which the guardrails use to read it back."""
    return format_money(amount, currency, locale, get_settings().default_locale)


def quote_user_text(text: str, limit: int = 160) -> str:
    """Shopper-written text as inert, quoted data: no markup, no newlines, no quotes to break out of."""
    text = re.sub(r"<[^>]*>", " ", text)
    text = re.sub(r"https?://\S+|www\.\S+", "[link]", text)
    text = re.sub(r"[\"“”«»`]", "'", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f'"{text}"'


_FACTS: dict[tuple[Any, ...], dict[str, Any]] = {}


def answer_text(title: str | None, body: str | None) -> str:
    """Copy in the generator's answer format, without the prefilled ``Title:``: `` <title>\\nBody: <body>``, or
    `` <text>`` for copy of one text (a headline); what training targets and preference pairs hold."""
    title, body = (title or "").strip(), (body or "").strip()
    if title and body:
        return f" {title}\nBody: {body}"
    return f" {title or body}"


def item_facts(item: Item, locale: str = "en_US") -> dict[str, Any]:
    """The facts of an item a template may use, written for ``locale`` so the model copies them as the
    shopper reads them: ``name`` (the short display name), ``price``/``old_price`` (money), ``discount``
    (``15%``, ``15 %``) and ``discount_pct`` (the number), ``title`` (the whole catalog title); ``it`` ("it" or
    "them", as the name is singular or plural); ``money(x)`` writes a few-shot example's price in the same
    currency and locale. Made once per item (its field values) and locale: formatting money costs more than the
    rest of a prompt, and the same ``money`` function keeps the rendered prompts of one item's users one cached
    render."""
    try:
        key = (tuple(item.__dict__.values()), locale, get_settings().default_locale)
        hit = _FACTS.get(key)
    except TypeError:  # a field value that cannot be a key
        return _item_facts(item, locale)
    if hit is None:
        if len(_FACTS) >= 1 << 14:
            _FACTS.clear()
        hit = _FACTS[key] = _item_facts(item, locale)
    return dict(hit)


def _item_facts(item: Item, locale: str) -> dict[str, Any]:
    default = get_settings().default_locale
    pct = item.discount_pct
    return {
        "item_id": item.item_id,
        "title": item.title,
        "name": item.display_name,
        "brand": item.brand,
        "category": item.category,
        "price": format_price(item.current_price, item.currency, locale),
        "old_price": format_price(item.price, item.currency, locale) if pct else None,
        "discount_pct": pct,
        "discount": format_pct(pct, locale, default) if pct else None,
        "in_stock": item.in_stock,
        "it": "them" if ends_plural(item.display_name) else "it",  # "Tap to see them" for "Hose Clamps"
        "url": item.url,
        "currency": item.currency,
        "money": lambda amount: format_price(Decimal(str(amount)), item.currency, locale),  # example prices
    }


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # e.g. "price_drop.en"
    path: Path
    description: str
    variables: tuple[str, ...]


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered template: system message, example turns (few-shot) and the user message."""

    template: str
    system: str
    user: str
    examples: tuple[tuple[str, str], ...] = ()
    title: str = ""  # set by template-only (fallback) copy, whose body is the rendered text


def _environment(folder: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(loader=FileSystemLoader(str(folder)), undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
                               autoescape=False)
    env.filters["quote"] = quote_user_text
    default = get_settings().default_locale
    env.filters["money"] = lambda amount, currency, locale: format_money(amount, currency, locale, default)
    env.filters["pct"] = lambda value, locale: format_pct(value, locale, default)
    env.filters["count"] = lambda value, locale: format_count(value, locale, default)
    env.filters["day"] = lambda value, locale: format_day(value, locale, default)
    return env


class PromptLibrary:
    """The templates of one folder (``Settings.prompts_dir`` by default)."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder or get_settings().prompts_dir)
        if not self.folder.is_dir():
            raise TemplateError(f"prompt folder {self.folder} does not exist")
        self.env = _environment(self.folder)
        self._headers: dict[str, tuple[tuple[int, int], PromptTemplate]] = {}
        # rendered prompts by (template as loaded, name, repr of the variables): users with the same featured item
        # share one; a template file that changes is loaded anew by Jinja, which makes a new key
        self._rendered: dict[tuple[Any, str, str], RenderedPrompt] = {}

    def names(self) -> list[str]:
        return sorted(p.name.removesuffix(".j2") for p in self.folder.glob("*.j2"))

    def get(self, name: str) -> PromptTemplate:
        """A template's header (read again only when its file changes: a campaign asks once per user)."""
        path = self.folder / f"{name}.j2"
        try:
            st = path.stat()
        except FileNotFoundError:
            raise TemplateError(f"no template {name!r} in {self.folder} (have: {', '.join(self.names())})") from None
        hit = self._headers.get(name)
        if hit is None or hit[0] != (st.st_mtime_ns, st.st_size):
            hit = self._headers[name] = ((st.st_mtime_ns, st.st_size), self._read_header(name, path))
        return hit[1]

    def _read_header(self, name: str, path: Path) -> PromptTemplate:
        m = HEADER.match(path.read_text(encoding="utf-8"))
        if not m:
            raise TemplateError(f"{path}: missing header comment declaring 'variables'")
        try:
            header = yaml.safe_load(m.group(1)) or {}
        except yaml.YAMLError as exc:
            raise TemplateError(f"{path}: header is not valid YAML: {exc}") from exc
        if not isinstance(header, dict) or not isinstance(header.get("variables"), list):
            raise TemplateError(f"{path}: header must declare 'variables: [..]'")
        return PromptTemplate(name, path, str(header.get("description", "")), tuple(header["variables"]))

    def resolve(self, campaign_type: str, locale: str) -> str:
        """Template name for a campaign type and locale: ``<type>.<lang>``, falling back to English."""
        lang = language_of(locale)
        for name in (f"{campaign_type}.{lang}", f"{campaign_type}.en"):
            if (self.folder / f"{name}.j2").exists():
                return name
        raise TemplateError(f"no template for campaign type {campaign_type!r} in {self.folder}")

    def check(self, name: str) -> list[str]:
        """Problems with a template: syntax errors, variables used but not declared, declared but unused."""
        tpl = self.get(name)
        source = tpl.path.read_text(encoding="utf-8")
        try:
            used = meta.find_undeclared_variables(self.env.parse(source))
        except TemplateSyntaxError as exc:
            return [f"{tpl.path}:{exc.lineno}: syntax error: {exc.message}"]
        problems = [f"{tpl.path}: uses undeclared variable {v!r}" for v in sorted(used - set(tpl.variables))]
        problems += [f"{tpl.path}: declares unused variable {v!r}" for v in sorted(set(tpl.variables) - used)]
        return problems

    def render(self, name: str, **variables: Any) -> RenderedPrompt:
        """Render a template; a missing or unknown variable is a :class:`TemplateError` naming it. The same
        template and variables give the same (immutable) result, rendered once."""
        try:
            key = (self.env.get_template(f"{name}.j2"), name, repr(variables))
        except (TemplateNotFound, TemplateSyntaxError):
            return self._render(name, **variables)  # reports the error
        hit = self._rendered.get(key)
        if hit is None:
            if len(self._rendered) >= 1 << 14:
                self._rendered.clear()
            hit = self._rendered[key] = self._render(name, **variables)
        return hit

    def _render(self, name: str, **variables: Any) -> RenderedPrompt:
        tpl = self.get(name)
        missing = [v for v in tpl.variables if v not in variables]
        unknown = [v for v in variables if v not in tpl.variables]
        if missing or unknown:
            raise TemplateError(f"{tpl.path}: missing variables {missing}, unknown variables {unknown}")
        try:
            module = self.env.get_template(f"{name}.j2").make_module(variables)
        except UndefinedError as exc:
            raise TemplateError(f"{tpl.path}: {exc.message}") from exc
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{tpl.path}:{exc.lineno}: {exc.message}") from exc
        system = str(getattr(module, "system", "")).strip()
        examples = []
        for n in range(1, 10):
            user, answer = getattr(module, f"example_user_{n}", None), getattr(module, f"example_answer_{n}", None)
            if user is None or answer is None:
                break
            examples.append((str(user).strip(), str(answer).strip()))
        return RenderedPrompt(template=name, system=system, user=str(module).strip(), examples=tuple(examples),
                              title=str(getattr(module, "title", "")).strip())


@lru_cache(maxsize=4)
def default_library() -> PromptLibrary:
    return PromptLibrary()


_PARTS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[str, str]]] = weakref.WeakKeyDictionary()


def generic_copy(prompts: PromptLibrary, locale: str, campaign_type: str, item: Item,
                 facts: dict[str, Any]) -> list[str]:
    """The brand's template-only copy (title, body) for a user's featured item: the fallback message, and the
    phrasing the example-copy check never counts as lifted from an example."""
    r = prompts.render(prompts.resolve("fallback", locale), campaign_type=campaign_type,
                       item=item_facts(item, locale), campaign=facts, locale=locale)
    return [r.title, r.user]


def prompt_parts(tokenizer: Any, rendered: RenderedPrompt, prefix: str = GENERATION_PREFIX, *,
                 with_examples: bool = True) -> tuple[str, str]:
    """The model input as ``(shared, own)``: the system message and the template's example turns (the same
    for every user of a template, so their KV cache can be computed once), then the user message and the
    prefilled answer ``prefix``. Uses the tokenizer's chat template when it has one, plain text otherwise.
    Made once per tokenizer, chat template and prompt (users with the same featured item share it)."""
    key = (getattr(tokenizer, "chat_template", None), rendered, prefix, with_examples)
    try:
        memo = _PARTS.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be referenced weakly
        return _prompt_parts(tokenizer, rendered, prefix, with_examples=with_examples)
    hit = memo.get(key)
    if hit is None:
        if len(memo) >= 1 << 14:
            memo.clear()
        hit = memo[key] = _prompt_parts(tokenizer, rendered, prefix, with_examples=with_examples)
    return hit


def _prompt_parts(tokenizer: Any, rendered: RenderedPrompt, prefix: str, *, with_examples: bool) -> tuple[str, str]:
    examples = rendered.examples if with_examples else ()
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": rendered.system}] if rendered.system else []
        for user, answer in examples:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        whole = tokenizer.apply_chat_template(messages + [{"role": "user", "content": rendered.user}],
                                              tokenize=False, add_generation_prompt=True)
        shared = tokenizer.apply_chat_template(messages, tokenize=False) if messages else ""
        if not whole.startswith(shared):  # a template that rewrites earlier turns: share nothing
            shared = ""
        return shared, whole[len(shared):] + prefix
    turns = [rendered.system] if rendered.system else []
    turns += [f"{user}\n{answer}" for user, answer in examples]
    shared = "".join(t + "\n\n" for t in turns)
    return shared, rendered.user + "\n" + prefix


def chat_prompt(tokenizer: Any, rendered: RenderedPrompt, prefix: str = GENERATION_PREFIX, *,
                with_examples: bool = True) -> str:
    """The whole model input as one string (see :func:`prompt_parts`)."""
    return "".join(prompt_parts(tokenizer, rendered, prefix, with_examples=with_examples))
