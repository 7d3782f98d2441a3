"""Human review of generated messages: approve, edit, reject with a reason, bulk approval of passing copy, an
optional per-job auto-approve rule, an audit trail of every decision, and the preference pairs that the
reviewers' edits and rejections teach (``pushgen review export``).

Review states of a message (``Message.review_status``): ``pending`` (as generated), ``edited`` (a reviewer
changed the copy; it awaits approval), ``approved``, ``rejected``. Only copy that passes every guardrail can be
approved: an edit is checked again by the same guardrails (:func:`generator.check.guardrails.run_checks`) against the
same facts the generator was held to, and stays unapprovable while any check fails.

Every decision is a :class:`ReviewEvent` row: who (the token's name and role, or ``auto-rule``), when, the
decision, the text before and after, the reason and, for an edit, the checks it failed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from generator.campaign.spec import Campaign, campaign_type_for
from generator.check.brand import policy_with_guidelines
from generator.check.facts import message_facts
from generator.check.guardrails import GuardContext, failures, run_checks
from generator.check.result import CheckResult
from generator.core.config import get_settings
from generator.core.data import Item, Shop, cached_shop
from generator.core.errors import PushgenError
from generator.core.inputs import InputError, check_text
from generator.core.links import host_allowed
from generator.db.store import Store
from generator.db.tables import ApiToken, AppSecret, Job, Message, ReviewEvent, ReviewRule, ReviewSession, utcnow
from generator.db.tokens import may
from generator.write.prompts import default_library, format_price

REVIEW_STATUSES = ("pending", "edited", "approved", "rejected")
PASSING = ("passed", "fallback")  # guardrail status of copy that passes every check
AUTO_ACTOR = "auto-rule"
MAX_TEXT = 2000  # characters a reviewer may type into a title, body or reason


class ReviewError(PushgenError):
    """A review action that is not allowed (failing copy, missing reason, unknown message)."""


@dataclass(frozen=True)
class Reviewer:
    """Who acts: a logged-in token holder (name and role), or the auto-approve rule."""

    name: str
    role: str
    token_id: int | None = None


AUTO_REVIEWER = Reviewer(AUTO_ACTOR, "rule")


# --- identity -----------------------------------------------------------------------------------------------

def reviewer_for_token(store: Store, token: str) -> Reviewer | None:
    """The reviewer a token belongs to, when its role may review (reviewer or admin); else None."""
    import hashlib

    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    with store.session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if row is None or not may(row.role, "reviewer"):
            return None
        return Reviewer(row.name, row.role, row.id)


def reviewer_by_id(store: Store, token_id: int, token_hash_prefix: str) -> Reviewer | None:
    """The reviewer of a stored token (id and the start of its hash), if it still exists and may review."""
    with store.session() as s:
        row = s.get(ApiToken, token_id)
        if row is None or not may(row.role, "reviewer") or not row.token_hash.startswith(token_hash_prefix):
            return None
        return Reviewer(row.name, row.role, row.id)


def token_hash_prefix(store: Store, token_id: int) -> str:
    with store.session() as s:
        row = s.get(ApiToken, token_id)
        return row.token_hash[:16] if row else ""


def open_session(store: Store, token_id: int, seconds: int) -> str:
    """A new server-side review session for a token; returns its random id (the cookie carries it)."""
    import hashlib
    from datetime import timedelta

    sid = secrets.token_urlsafe(32)
    now = utcnow()
    with store.session() as s:
        s.execute(delete(ReviewSession).where(ReviewSession.expires_at < now))  # forget expired ones
        s.add(ReviewSession(id=hashlib.sha256(sid.encode()).hexdigest(), token_id=token_id,
                            expires_at=now + timedelta(seconds=seconds)))
    return sid


def session_is_open(store: Store, sid: str, token_id: int) -> bool:
    """Whether ``sid`` is an unexpired session of ``token_id`` that was not logged out."""
    import hashlib

    with store.session() as s:
        row = s.get(ReviewSession, hashlib.sha256(sid.encode()).hexdigest())
        if row is None or row.token_id != token_id:
            return False
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        return expires > utcnow()


def close_session(store: Store, sid: str) -> None:
    """Log a session out for good (the cookie is refused from now on, wherever it was copied to)."""
    import hashlib

    with store.session() as s:
        s.execute(delete(ReviewSession).where(ReviewSession.id == hashlib.sha256(sid.encode()).hexdigest()))


def app_secret(store: Store, name: str) -> str:
    """A random 256-bit key stored in the database under ``name``; created on first use."""
    for _ in range(2):
        with store.session() as s:
            row = s.get(AppSecret, name)
            if row is not None:
                return row.value
        try:
            with store.session() as s:
                s.add(AppSecret(name=name, value=secrets.token_hex(32)))
        except IntegrityError:  # another process created it first: read theirs
            continue
    with store.session() as s:
        return s.get(AppSecret, name).value


# --- what the guardrails held the generator to ---------------------------------------------------------------

def _shop(folder: str) -> Shop | None:
    """The job's shop (:func:`generator.core.data.cached_shop`); None when it cannot be loaded any more."""
    try:
        return cached_shop(folder)
    except (PushgenError, OSError) as exc:
        logging.getLogger(__name__).warning("review: cannot load shop %s (%s); re-checks use stored facts", folder,
                                            exc)
        return None


def campaign_of(job: Job) -> Campaign:
    """The campaign a job ran (API jobs keep it under ``params['campaign']``, CLI runs flat in ``params``)."""
    params = job.params or {}
    raw = params.get("campaign") if isinstance(params.get("campaign"), dict) else params
    try:
        return Campaign.model_validate(raw)
    except ValidationError:
        return Campaign()


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01")) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _item_from_record(r: dict[str, Any]) -> Item | None:
    """An Item from a stored ranked-item record (what the scorer saw), for messages whose shop is gone."""
    current, listed = _decimal(r.get("price")), _decimal(r.get("list_price"))
    if current is None:
        return None
    price = listed if listed is not None and listed > current else current
    try:
        return Item(item_id=str(r.get("item_id") or "?"), title=str(r.get("title") or "?"), price=price,
                    sale_price=current if price != current else None, currency=str(r.get("currency") or "USD"),
                    in_stock=True, url="about:blank", image_url=str(r.get("image_url") or ""))
    except ValidationError:
        return None


def guard_context(message: Message, job: Job | None) -> GuardContext:
    """Rebuild the facts a message's copy was checked against: the user's ranked items (from the job's shop
    when it still has them, else from the stored records), locale, campaign facts and policy, the shopper
    review the prompt quoted, the template's example answers and the prompt's user turn."""
    campaign = campaign_of(job) if job is not None else Campaign()
    params = (job.params or {}) if job is not None else {}
    shop = _shop(str(params.get("shop") or get_settings().shop_dir))
    by_id = shop.items_by_id if shop else {}
    items: list[Item] = []
    for r in message.ranked_items or []:
        known = by_id.get(str(r.get("item_id")))
        item = known if known is not None and known.title == r.get("title") else _item_from_record(r)
        if item is not None:
            items.append(item)
    user = next((u for u in shop.users if u.user_id == message.user_id), None) if shop else None
    lang = (message.template or "").rsplit(".", 1)[-1]
    locale = campaign.locale or (user.locale if user else ("zh_CN" if lang == "zh" else "en_US"))
    policy = policy_with_guidelines(campaign.policy, campaign.adapter, locale)
    ctype = campaign_type_for(campaign, items[0]) if items else ""
    library = default_library()
    if items and message.template in library.names():
        try:
            return message_facts(library, message.template, items=items, locale=locale, campaign_type=ctype,
                                 brand=campaign.brand, facts=campaign.facts, policy=policy, shop=shop).context
        except PushgenError:
            pass
    return GuardContext(items=items, locale=locale, facts=campaign.facts, catalog=shop.items if shop else (),
                        policy=policy, campaign_type=ctype)


def display_items(message: Message, job: Job | None, locale: str | None = None) -> list[dict[str, Any]]:
    """The user's ranked items as a reviewer sees them: name, price, list price, discount, image, why chosen.
    Fields that older records lack (list price, discount, image) come from the job's shop when it has the item."""
    params = (job.params or {}) if job is not None else {}
    shop = _shop(str(params.get("shop") or get_settings().shop_dir))
    by_id = shop.items_by_id if shop else {}
    if locale is None:  # prices as the user read them: the job's locale, else the user's, else the template's
        user = next((u for u in shop.users if u.user_id == message.user_id), None) if shop else None
        lang = (message.template or "").rsplit(".", 1)[-1]
        locale = (job.locale if job is not None and job.locale else None) or (user.locale if user else None) \
            or ("zh_CN" if lang == "zh" else get_settings().default_locale)
    out = []
    for r in message.ranked_items or []:
        known = by_id.get(str(r.get("item_id")))
        known = known if known is not None and known.title == r.get("title") else None
        currency = str(r.get("currency") or (known.currency if known else ""))
        price, listed = _decimal(r.get("price")), _decimal(r.get("list_price"))
        if listed is None and known is not None:
            listed = known.price
        discount = r.get("discount_pct", known.discount_pct if known else None)
        image = str(r.get("image_url") or (known.image_url if known else ""))

        def money(amount: Decimal, currency: str = currency) -> str:
            return format_price(amount, currency, locale) if currency else f"{amount:.2f}"

        out.append({"item_id": r.get("item_id"), "title": r.get("title"), "rank": r.get("rank"),
                    "score": r.get("score"), "why": list(r.get("why") or []),
                    "price": money(price) if price is not None else "",
                    "list_price": money(listed) if listed is not None and discount else "",
                    "discount_pct": discount,
                    "image_url": image if image_allowed(image) else ""})
    return out


def image_allowed(url: str) -> bool:
    """Whether the review pages may load this item image: https on a host of ``PUSHGEN_REVIEW_IMAGE_HOSTS``
    (none by default: the pages load nothing from outside the app, and show a placeholder)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and parts.username is None \
        and host_allowed(parts.hostname or "", get_settings().review_image_hosts)


def recheck(message: Message, job: Job | None, title: str, body: str) -> list[CheckResult]:
    """Run every guardrail on a reviewer's text, against the facts the model was held to."""
    return run_checks(title, body, guard_context(message, job))


def approvable(m: Message) -> bool:
    """Whether a message's current copy passes every guardrail (the only copy that may be approved)."""
    return (m.status in PASSING and bool(m.title.strip()) and bool(m.guardrails)
            and all(c.get("passed") for c in m.guardrails))


def failing_checks(m: Message) -> list[str]:
    return [f"{c.get('name')}: {c.get('reason')}" for c in (m.guardrails or []) if not c.get("passed")]


def erase_review_texts(s: Session, message_ids: Sequence[int]) -> int:
    """Blank the copy and reasons that the audit trail keeps of these messages (a user's erasure: the copy is
    personal). Who decided what, and when, stays. Runs in the caller's transaction; returns rows changed."""
    if not message_ids:
        return 0
    rows = list(s.scalars(select(ReviewEvent).where(ReviewEvent.message_id.in_(list(message_ids)))))
    for e in rows:
        e.old_title = e.old_body = e.new_title = e.new_body = ""
        e.reason = None if e.reason is None else "[erased]"
        e.checks = []
    return len(rows)


# --- decisions ----------------------------------------------------------------------------------------------

def _locked(s: Session, message_id: int) -> Message:
    m = s.scalar(select(Message).where(Message.id == message_id).with_for_update())
    if m is None:
        raise ReviewError(f"no message {message_id}")
    return m


def _record(s: Session, m: Message, who: Reviewer, action: str, new_status: str, *, reason: str | None = None,
            old: tuple[str, str] | None = None, checks: Sequence[str] = ()) -> ReviewEvent:
    old_title, old_body = old if old is not None else (m.title, m.body)
    event = ReviewEvent(message_id=m.id, job_id=m.job_id, actor=who.name, actor_role=who.role, action=action,
                        old_status=m.review_status, new_status=new_status, old_title=old_title,
                        old_body=old_body, new_title=m.title, new_body=m.body, reason=reason,
                        checks=list(checks))
    s.add(event)
    m.review_status = new_status
    return event


def _clean(text: str, what: str, *, required: bool = True) -> str:
    text = (text or "").strip()
    try:
        check_text(text, what)
    except InputError as exc:
        raise ReviewError(str(exc)) from None
    if required and not text:
        raise ReviewError(f"{what} is required")
    if len(text) > MAX_TEXT:
        raise ReviewError(f"{what} is longer than {MAX_TEXT} characters")
    return text


def _approve(s: Session, m: Message, who: Reviewer, reason: str | None = None) -> bool:
    if not approvable(m):
        why = "; ".join(failing_checks(m)) or f"its status is {m.status}"
        raise ReviewError(f"message {m.id} cannot be approved: it fails the guardrails ({why}); "
                          "edit it until every check passes")
    if m.review_status == "approved":
        return False
    _record(s, m, who, "approve", "approved", reason=reason)
    return True


def approve(store: Store, message_id: int, who: Reviewer, reason: str | None = None) -> Message:
    """Approve a message's current copy. Raises :class:`ReviewError` when it fails any guardrail."""
    with store.session() as s:
        m = _locked(s, message_id)
        _approve(s, m, who, _clean(reason or "", "reason", required=False) or None)
        return m


def reject(store: Store, message_id: int, who: Reviewer, reason: str) -> Message:
    """Reject a message; the reason is required (it becomes the learning signal's label)."""
    reason = _clean(reason, "a reason for rejecting")
    with store.session() as s:
        m = _locked(s, message_id)
        if m.status == "erased":
            raise ReviewError("this user's personal data was erased; the message cannot be reviewed")
        if m.review_status != "rejected":
            _record(s, m, who, "reject", "rejected", reason=reason)
        return m


def edit(store: Store, message_id: int, who: Reviewer, title: str, body: str) -> tuple[Message, list[CheckResult]]:
    """Replace a message's copy with a reviewer's text, re-checked by every guardrail. The message becomes
    ``edited`` (awaiting approval) and stays unapprovable while a check fails."""
    title, body = _clean(title, "title"), _clean(body, "body")
    with store.session() as s:
        m = _locked(s, message_id)
        if m.status == "erased":
            raise ReviewError("this user's personal data was erased; the message cannot be edited")
        if (title, body) == (m.title, m.body):
            raise ReviewError("the edit changes nothing")
        results = recheck(m, s.get(Job, m.job_id), title, body)
        old = (m.title, m.body)
        m.title, m.body = title, body
        m.guardrails = [r.as_dict() for r in results]
        m.status = "passed" if all(r.passed for r in results) else "flagged"
        _record(s, m, who, "edit", "edited", old=old, checks=failures(results))
        return m, results


def approve_passing(store: Store, job_id: str, who: Reviewer, *, variant: int | None = None) -> int:
    """Approve every pending or edited message of a job that passes every guardrail; returns how many."""
    with store.session() as s:
        q = select(Message).where(Message.job_id == job_id, Message.review_status.in_(("pending", "edited")),
                                  Message.status.in_(PASSING)).with_for_update()
        if variant is not None:
            q = q.where(Message.variant == variant)
        return sum(_approve(s, m, who, "bulk: approve all that pass") for m in s.scalars(q) if approvable(m))


def bulk(store: Store, message_ids: Iterable[int], action: str, who: Reviewer,
         reason: str = "") -> tuple[int, list[int]]:
    """Approve or reject the selected messages. Returns (done, skipped ids); copy that fails a guardrail is
    skipped, never approved."""
    if action not in ("approve", "reject"):
        raise ReviewError(f"unknown bulk action {action!r}")
    if action == "reject":
        reason = _clean(reason, "a reason for rejecting")
    done, skipped = 0, []
    with store.session() as s:
        for mid in sorted(set(message_ids)):
            m = _locked(s, mid)
            if action == "approve":
                if approvable(m):
                    done += _approve(s, m, who, "bulk: selected")
                else:
                    skipped.append(mid)
            elif m.status == "erased":
                skipped.append(mid)
            elif m.review_status != "rejected":
                _record(s, m, who, "reject", "rejected", reason=reason)
                done += 1
    return done, skipped


# --- auto-approve rule --------------------------------------------------------------------------------------

def get_rule(store: Store, job_id: str) -> ReviewRule | None:
    with store.session() as s:
        return s.get(ReviewRule, job_id)


def set_rule(store: Store, job_id: str, min_ctr: float, who: Reviewer) -> int:
    """Set a job's auto-approve rule (passing + predicted CTR >= ``min_ctr``) and apply it; returns how many
    messages it approved now. Messages saved later are approved when their chunk finishes."""
    if not 0.0 <= min_ctr <= 1.0:
        raise ReviewError("the predicted click-through threshold must be between 0 and 1")
    with store.session() as s:
        if s.get(Job, job_id) is None:
            raise ReviewError(f"no job {job_id}")
        rule = s.get(ReviewRule, job_id)
        if rule is None:
            s.add(ReviewRule(job_id=job_id, min_ctr=min_ctr, created_by=who.name))
        else:
            rule.min_ctr, rule.created_by, rule.created_at = min_ctr, who.name, utcnow()
    return apply_rule(store, job_id)


def clear_rule(store: Store, job_id: str) -> None:
    with store.session() as s:
        rule = s.get(ReviewRule, job_id)
        if rule is not None:
            s.delete(rule)


def apply_rule(store: Store, job_id: str) -> int:
    """Approve a job's pending messages that its rule allows, as the actor ``auto-rule``; returns how many.
    Copy without a predicted click-through (no CTR model) is never auto-approved."""
    with store.session() as s:
        rule = s.get(ReviewRule, job_id)
        if rule is None:
            return 0
        q = select(Message).where(Message.job_id == job_id, Message.review_status == "pending",
                                  Message.status.in_(PASSING), Message.ctr_score >= rule.min_ctr).with_for_update()
        reason = f"auto-approve rule set by {rule.created_by}: passes every guardrail, predicted CTR ≥ {rule.min_ctr:g}"
        return sum(_approve(s, m, AUTO_REVIEWER, reason) for m in s.scalars(q) if approvable(m))


# --- reading ------------------------------------------------------------------------------------------------

def list_messages(store: Store, job_id: str, *, review_status: str | None = None, flag: str | None = None,
                  variant: int | None = None, offset: int = 0, limit: int | None = None) -> list[Message]:
    """A job's messages by user and variant, optionally only one review status, guardrail flag
    (``pass``/``fail``) or variant."""
    with store.session() as s:
        return list(s.scalars(_filtered(select(Message), job_id, review_status, flag, variant)
                              .order_by(Message.user_id, Message.variant).offset(offset).limit(limit)))


def count_messages(store: Store, job_id: str, *, review_status: str | None = None, flag: str | None = None,
                   variant: int | None = None) -> int:
    with store.session() as s:
        q = _filtered(select(func.count()).select_from(Message), job_id, review_status, flag, variant)
        return int(s.scalar(q) or 0)


def _filtered(q: Any, job_id: str, review_status: str | None, flag: str | None, variant: int | None) -> Any:
    q = q.where(Message.job_id == job_id)
    if review_status:
        q = q.where(Message.review_status == review_status)
    if flag == "pass":
        q = q.where(Message.status.in_(PASSING))
    elif flag == "fail":
        q = q.where(Message.status.not_in(PASSING))
    if variant is not None:
        q = q.where(Message.variant == variant)
    return q


def review_counts(store: Store, job_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per job: message counts by review status, plus ``total`` and ``failing`` (guardrail flag)."""
    out: dict[str, dict[str, int]] = {j: {"total": 0, "failing": 0, **dict.fromkeys(REVIEW_STATUSES, 0)}
                                      for j in job_ids}
    if not job_ids:
        return out
    with store.session() as s:
        rows = s.execute(select(Message.job_id, Message.review_status, Message.status, func.count())
                         .where(Message.job_id.in_(list(job_ids)))
                         .group_by(Message.job_id, Message.review_status, Message.status))
        for job_id, rstatus, status, n in rows:
            c = out[job_id]
            c[rstatus] = c.get(rstatus, 0) + n
            c["total"] += n
            if status not in PASSING:
                c["failing"] += n
    return out


def list_jobs(store: Store, limit: int = 200) -> list[Job]:
    with store.session() as s:
        return list(s.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)))


def history(store: Store, message_ids: Sequence[int]) -> dict[int, list[ReviewEvent]]:
    """The audit trail of each message, oldest first."""
    out: dict[int, list[ReviewEvent]] = {i: [] for i in message_ids}
    if not message_ids:
        return out
    with store.session() as s:
        for e in s.scalars(select(ReviewEvent).where(ReviewEvent.message_id.in_(list(message_ids)))
                           .order_by(ReviewEvent.created_at, ReviewEvent.id)):
            out[e.message_id].append(e)
    return out


# --- learning signal ----------------------------------------------------------------------------------------



