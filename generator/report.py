"""Demo and campaign outputs: ``messages.csv`` and a self-contained ``review.html``.

Every text in the HTML comes from shoppers or the model, so the page is rendered with autoescaping on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from generator.campaign.runner import UserMessage
from generator.core.data import write_table
from generator.write.prompts import format_price

MESSAGE_COLUMNS = ("user_id", "variant", "locale", "item_ids", "template", "adapter", "title", "body", "deep_link",
                   "status", "reasons", "ctr_score")


def message_rows(messages: Sequence[UserMessage]) -> list[dict[str, str]]:
    return [{
        "user_id": m.user.user_id,
        "variant": str(m.variant),
        "locale": m.user.locale,
        "item_ids": " ".join(r.item.item_id for r in m.ranked),
        "template": m.template,
        "adapter": m.as_record()["adapter"] or "",
        "title": m.chosen.title if m.chosen else "",
        "body": m.chosen.body if m.chosen else "",
        "deep_link": m.deep_link,
        "status": m.status,
        "reasons": "; ".join(m.reasons),
        "ctr_score": "" if m.chosen is None or m.chosen.ctr is None else f"{m.chosen.ctr:.4f}",
    } for m in messages]


def write_messages_csv(messages: Sequence[UserMessage], path: Path) -> Path:
    return write_table(path, message_rows(messages), columns=MESSAGE_COLUMNS)


def render_review_html(messages: Sequence[UserMessage], *, title: str, job_id: str | None = None) -> str:
    env = Environment(loader=PackageLoader("generator", "templates"), autoescape=select_autoescape(default=True))
    env.filters["money"] = lambda item, locale: format_price(item.current_price, item.currency, locale)
    env.filters["old_money"] = lambda item, locale: format_price(item.price, item.currency, locale)
    passed = sum(m.status == "passed" for m in messages)
    fallbacks = sum(m.status == "fallback" for m in messages)
    return env.get_template("review.html").render(
        title=title, job_id=job_id, messages=messages, passed=passed, fallbacks=fallbacks,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_review_html(messages: Sequence[UserMessage], path: Path, *, title: str, job_id: str | None = None) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_review_html(messages, title=title, job_id=job_id), encoding="utf-8")
    tmp.replace(path)
    return path
