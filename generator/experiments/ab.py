"""A/B push experiments: the approved variants of a job plus a holdout (control) group, sent to users.

Read top to bottom:

* **Arms.** An experiment over a job has one arm per variant (``A`` = variant 0, ``B`` = variant 1, ...) and,
  unless ``holdout=0``, a ``holdout`` arm whose users get no push (the control for conversion and revenue).
  Each arm has an allocation weight; the weights are fixed when the first user is assigned. Changing them
  afterwards is refused (:class:`ExperimentError`): a new allocation needs a new experiment, so every user of
  one experiment was randomised under the same weights. The one exception is an experiment created with
  ``allocation="thompson"``, whose weights only :func:`rebalance` may change, each change opening a new
  *phase* that is recorded on every assignment made under it.
* **Assignment** (:func:`assign`) maps ``sha256(salt + ":" + user_id)`` to a number in [0, 1) and that number
  to an arm by the cumulative weights: the same user always lands in the same arm, in any process, on any
  machine (Python's ``hash()`` is salted per process and is never used). Assignments are stored before any
  copy is sent, and a user keeps their arm even when their arm's copy is rejected by a reviewer or a guardrail
  (their send is recorded as ``dropped``): drops can never move users between arms and bias the comparison.
* **Sending** (:func:`send`) walks the assignments that have no final send yet and records one
  :class:`Send` per user: ``holdout`` (no push), ``global_control`` (the brand's global control group,
  :mod:`generator.experiments.holdout`: no push), ``dropped`` (the arm's copy for the user was rejected or
  fails a guardrail), ``awaiting`` (not generated or not reviewed yet: tried again on the next run),
  ``scheduled`` (the user's own send time, :mod:`generator.experiments.sendtime`, is still to come), ``deferred`` (quiet
  hours in the user's time zone: tried again on the next run), ``capped`` (the user's
  frequency cap), ``no_token``, then the provider's verdict: ``sent``, ``dead_token`` (the provider said the
  token is invalid; it is marked dead and never used again), ``too_large`` (payload over 4,096 bytes after
  JSON encoding), ``failed`` or ``retry`` (transient errors after the sender's own retries; a later run tries
  again). Each send carries an idempotency key of (experiment, user) and is claimed (``sending``) in the
  database before the provider is called, so a task run twice never sends twice.
* **Outcomes** (:func:`record_events`): delivered, opened, clicked and converted (with revenue) events,
  idempotent by event id, stored per send.

The statistics live in :mod:`generator.experiments.stats`, the report in :mod:`generator.experiments.report`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from generator.core.config import DEFAULT_BRAND, get_settings
from generator.core.data import cached_shop, unit_interval
from generator.core.errors import PushgenError
from generator.core.payload import rich_fields
from generator.db import tables
from generator.db.jobs import get_job
from generator.db.store import Store
from generator.db.suppression import ERASED, installation_key, keyed
from generator.db.tables import (
    Arm,
    Assignment,
    DeadToken,
    DeviceToken,
    Experiment,
    Job,
    Message,
    OutcomeEvent,
    Send,
    utcnow,
)
from generator.experiments import holdout, sendtime
from generator.experiments.stats import prob_best

HOLDOUT = "holdout"
EVENT_TYPES = ("delivered", "opened", "clicked", "converted")
FINAL_SEND = ("holdout", "dropped", "capped", "no_token", "sent", "dead_token", "too_large", "failed", "sending",
              "global_control")
RETRYABLE_SEND = ("deferred", "retry", "awaiting", "scheduled")
# the sends an outcome may belong to: only a push that went out is delivered, opened or clicked; a holdout user
# or a member of the brand's global control (no push, the control) still converts
OUTCOME_SENDS = {"delivered": ("sent",), "opened": ("sent",), "clicked": ("sent",),
                 "converted": ("sent", "holdout", "global_control")}


class ExperimentError(PushgenError):
    """An experiment cannot be created, changed or run as asked."""
















# -- assignment ----------------------------------------------------------------------------------------------
def arm_for(unit: float, weights: Sequence[tuple[str, float]]) -> str:
    """The arm whose slice of [0, 1) holds ``unit``; slices follow the arms' order, sized by weight."""
    total = sum(w for _, w in weights)
    edge = 0.0
    for name, w in weights:
        edge += w / total
        if unit < edge:
            return name
    return weights[-1][0]  # float round-off at the top edge


def idempotency_key(experiment_id: str, user_id: str) -> str:
    return hashlib.sha256(f"send:{experiment_id}:{user_id}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class SendRules:
    """Per-user limits applied at send time."""

    frequency_cap: int = 1
    """Most pushes a user gets (over every experiment) within ``cap_window_hours``; 0: no cap."""
    cap_window_hours: float = 24.0
    quiet_start: int = 21
    """Local hour (user's time zone) from which no push is sent ..."""
    quiet_end: int = 8
    """... until this local hour. Equal hours: no quiet hours."""

    def quiet(self, at: datetime, zone: str) -> bool:
        if self.quiet_start == self.quiet_end:
            return False
        local = at.astimezone(ZoneInfo(zone)).time()
        start, end = time(self.quiet_start), time(self.quiet_end)
        return start <= local < end if start < end else (local >= start or local < end)


def create_experiment(store: Store, job_id: str, *, name: str | None = None, variants: Sequence[int] | None = None,
                      weights: Sequence[float] | None = None, holdout: float = 0.1, salt: str | None = None,
                      allocation: str = "fixed", rules: SendRules | None = None, seed: int = 0) -> Experiment:
    """An experiment over ``job_id``'s variants (default: those with approved copy, else the campaign's
    ``variants``) plus a holdout arm of share ``holdout`` (0: none). ``weights`` (one per variant arm, then the
    holdout's) default to equal shares of what the holdout leaves."""
    if allocation not in ("fixed", "thompson"):
        raise ExperimentError(f"allocation: {allocation!r} is not 'fixed' or 'thompson'")
    if not 0 <= holdout < 1:
        raise ExperimentError("holdout: must be in [0, 1)")
    job = get_job(store, job_id)
    if job is None:
        raise ExperimentError(f"no job {job_id}")
    if variants is None:
        variants = _job_variants(store, job)
    variants = sorted(set(int(v) for v in variants))
    if not variants:
        raise ExperimentError(f"job {job_id} has no variants to test")
    names = [chr(ord("A") + i) if i < 26 else f"V{i}" for i in range(len(variants))]
    arms = list(zip(names, variants, strict=True)) + ([(HOLDOUT, None)] if holdout > 0 else [])
    if weights is None:
        shares = [(1 - holdout) / len(variants)] * len(variants) + ([holdout] if holdout > 0 else [])
    else:
        shares = [float(w) for w in weights]
        if len(shares) != len(arms):
            raise ExperimentError(f"weights: {len(shares)} given for {len(arms)} arms "
                                  f"({', '.join(n for n, _ in arms)})")
    if any(w < 0 for w in shares) or sum(shares) <= 0:
        raise ExperimentError("weights: must be non-negative and not all zero")
    total = sum(shares)
    rules = rules or SendRules()
    exp = Experiment(name=name or f"{job.campaign_type}-{job_id[:8]}", job_id=job_id,
                     salt=salt or uuid.uuid4().hex, allocation=allocation,
                     control=HOLDOUT if holdout > 0 else names[0],
                     params={"rules": rules.__dict__, "seed": seed},
                     phases=[{"weights": {n: w / total for (n, _), w in zip(arms, shares, strict=True)},
                              "at": utcnow().isoformat(), "reason": "created"}])
    with store.session() as s:
        s.add(exp)
        s.flush()
        for pos, ((arm_name, variant), w) in enumerate(zip(arms, shares, strict=True)):
            s.add(Arm(experiment_id=exp.id, name=arm_name, position=pos, variant=variant, weight=w / total))
    return exp


def _job_variants(store: Store, job: Job) -> list[int]:
    with store.session() as s:
        approved = list(s.scalars(select(Message.variant).where(Message.job_id == job.id,
                                                                Message.review_status == "approved").distinct()))
    if approved:
        return approved
    n = int((job.params or {}).get("campaign", {}).get("variants", 0) or 0)
    if n:
        return list(range(n))
    with store.session() as s:
        return list(s.scalars(select(Message.variant).where(Message.job_id == job.id).distinct()))


def get_experiment(store: Store, experiment_id: str) -> Experiment:
    with store.session() as s:
        exp = s.get(Experiment, experiment_id)
    if exp is None:
        raise ExperimentError(f"no experiment {experiment_id}")
    return exp


def arms(store: Store, experiment_id: str) -> list[Arm]:
    with store.session() as s:
        return list(s.scalars(select(Arm).where(Arm.experiment_id == experiment_id).order_by(Arm.position)))


def set_weights(store: Store, experiment_id: str, weights: Mapping[str, float]) -> None:
    """Change the weights of an experiment that has not started. Once a user is assigned they are fixed: a
    different allocation is a new experiment."""
    with store.session() as s:
        exp = s.get(Experiment, experiment_id, with_for_update=True)
        if exp is None:
            raise ExperimentError(f"no experiment {experiment_id}")
        if exp.status != "draft":
            raise ExperimentError(f"experiment {experiment_id} has started: its weights are fixed; create a new "
                                  "experiment for a different allocation")
        rows = {a.name: a for a in s.scalars(select(Arm).where(Arm.experiment_id == experiment_id))}
        if set(weights) != set(rows) or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ExperimentError(f"weights: give a non-negative weight for each of {sorted(rows)}")
        total = sum(weights.values())
        for n, row in rows.items():
            row.weight = weights[n] / total
        exp.phases = [{"weights": {n: weights[n] / total for n in rows}, "at": utcnow().isoformat(),
                       "reason": "set before start"}]


def current_weights(exp: Experiment) -> list[tuple[str, float]]:
    return list(exp.phases[-1]["weights"].items())


def assign(store: Store, experiment_id: str, user_ids: Iterable[str]) -> dict[str, str]:
    """Assign users to arms (sticky: a user assigned before keeps their arm) and store it; returns
    {user: arm} for every user asked about. The first assignment starts the experiment and fixes its weights."""
    users = list(dict.fromkeys(user_ids))
    out: dict[str, str] = {}
    with store.session() as s:
        exp = s.get(Experiment, experiment_id, with_for_update=True)
        if exp is None:
            raise ExperimentError(f"no experiment {experiment_id}")
        if exp.status == "stopped":
            raise ExperimentError(f"experiment {experiment_id} is stopped")
        for i in range(0, len(users), 500):
            chunk = users[i:i + 500]
            for a in s.scalars(select(Assignment).where(Assignment.experiment_id == experiment_id,
                                                        Assignment.user_id.in_(chunk))):
                out[a.user_id] = a.arm
        weights, phase = current_weights(exp), len(exp.phases) - 1
        now = utcnow()
        for user in users:
            if user in out:
                continue
            u = unit_interval(exp.salt, user)
            out[user] = arm_for(u, weights)
            s.add(Assignment(experiment_id=experiment_id, user_id=user, arm=out[user], phase=phase, unit=u,
                             assigned_at=now))
        if exp.status == "draft" and users:
            exp.status, exp.started_at = "running", now
    return out


def assignments(store: Store, experiment_id: str) -> list[Assignment]:
    with store.session() as s:
        return list(s.scalars(select(Assignment).where(Assignment.experiment_id == experiment_id)
                              .order_by(Assignment.user_id)))


def rebalance(store: Store, experiment_id: str, *, metric: str = "clicked", floor: float = 0.05,
              draws: int = 20_000) -> dict[str, float]:
    """Thompson sampling: new weights for the variant arms = each arm's posterior probability of having the
    best ``metric`` rate (Beta(1 + events, 1 + non-events) per assigned user), floored at ``floor`` so no arm
    starves; the holdout keeps its share. Opens a new phase that later assignments record. Only for
    experiments created with ``allocation="thompson"``."""
    exp = get_experiment(store, experiment_id)
    if exp.allocation != "thompson":
        raise ExperimentError(f"experiment {experiment_id} has fixed weights; create it with allocation "
                              "'thompson' for adaptive allocation")
    counts = arm_counts(store, experiment_id)
    variant_arms = [a.name for a in arms(store, experiment_id) if a.variant is not None]
    old = dict(current_weights(exp))
    holdout_share = old.get(HOLDOUT, 0.0)
    p = prob_best([counts[a][metric] for a in variant_arms], [counts[a]["assigned"] for a in variant_arms],
                  draws=draws, seed=int(exp.params.get("seed", 0)) + len(exp.phases))
    low = [x < floor for x in p]
    rest, high = 1 - floor * sum(low), sum(x for x, is_low in zip(p, low, strict=True) if not is_low)
    p = [floor if is_low else rest * x / high for x, is_low in zip(p, low, strict=True)]
    new = {a: (1 - holdout_share) * x for a, x in zip(variant_arms, p, strict=True)}
    if HOLDOUT in old:
        new[HOLDOUT] = holdout_share
    with store.session() as s:
        row = s.get(Experiment, experiment_id, with_for_update=True)
        row.phases = [*row.phases, {"weights": new, "at": utcnow().isoformat(), "reason": f"thompson on {metric}"}]
    return new


def expected_shares(store: Store, experiment_id: str, arm_names: Sequence[str]) -> list[float]:
    """The share of users each arm should hold given the phases its assignments were made under (for the
    sample-ratio check): the mean over assignments of their phase's weight of the arm."""
    exp = get_experiment(store, experiment_id)
    with store.session() as s:
        per_phase = dict(s.execute(select(Assignment.phase, func.count()).where(
            Assignment.experiment_id == experiment_id).group_by(Assignment.phase)).all())
    n = sum(per_phase.values()) or 1
    out = []
    for arm in arm_names:
        out.append(sum(c * exp.phases[ph]["weights"].get(arm, 0.0) for ph, c in per_phase.items()) / n)
    return out


# -- sending -------------------------------------------------------------------------------------------------
class PushSender(Protocol):
    """What :func:`send` needs from a provider sender (``workers.senders``)."""

    platform: str

    def deliver(self, token: str, push: dict[str, Any]) -> Any:
        """Send with the sender's rate limit and retries; the result has ``status`` (sent / invalid_token /
        too_large / failed / retry), ``provider_id``, ``error``, ``attempts``."""


def _live_token(s: Any, user_id: str, platforms: Sequence[str]) -> DeviceToken | None:
    """The user's oldest token that is not dead and that one of the senders can reach (``any``: every)."""
    dead = select(DeadToken.token_id)
    q = select(DeviceToken).where(DeviceToken.user_id == user_id, DeviceToken.id.not_in(dead))
    for t in s.scalars(q.order_by(DeviceToken.id)):
        if t.platform in platforms or "any" in platforms:
            return t
    return None


def _sent_recently(s: Any, user_id: str, since: datetime) -> int:
    return int(s.scalar(select(func.count()).select_from(Send).where(
        Send.user_id == user_id, Send.status == "sent", Send.sent_at >= since)) or 0)


def push_payload(message: Message, experiment_id: str, send_key: str, arm: str,
                 rich: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provider-neutral push: copy, deep link and the ids that outcome events refer back to; with the
    campaign's ``rich`` settings also the featured item's image, buttons and per-platform links."""
    featured = (message.ranked_items or [{}])[0]
    return {"title": message.title, "body": message.body, "deep_link": message.deep_link or "",
            "idempotency_key": send_key, "collapse_id": f"exp-{experiment_id[:8]}",
            "data": {"experiment_id": experiment_id, "arm": arm, "send_key": send_key,
                     "deep_link": message.deep_link or ""},
            **rich_fields(rich, item_id=str(featured.get("item_id") or (message.item_ids or [""])[0]),
                          image_url=str(featured.get("image_url") or ""), web_link=message.deep_link or "")}


def send(store: Store, experiment_id: str, sender: PushSender | Sequence[PushSender], *,
         timezones: Mapping[str, str] | None = None, now: datetime | None = None,
         user_ids: Sequence[str] | None = None) -> Counter[str]:
    """Send the experiment's pushes to its assigned users that have no final send yet (see the module doc for
    the statuses) through ``sender`` (or several, one per platform: each user's oldest live token of a platform
    that one of them serves is used); returns how many sends ended in each status in this run."""
    by_platform = {x.platform: x for x in (sender if isinstance(sender, Sequence) else [sender])}
    exp = get_experiment(store, experiment_id)
    if exp.status == "stopped":
        raise ExperimentError(f"experiment {experiment_id} is stopped")
    now = now or utcnow()
    rules = SendRules(**exp.params.get("rules", {}))
    tz = timezones if timezones is not None else _timezones(store, exp)
    arm_rows = {a.name: a for a in arms(store, experiment_id)}
    campaign = _campaign_of(store, exp)
    rich, control = campaign.get("rich"), holdout.get_control(store, campaign.get("brand", DEFAULT_BRAND))
    todo = [a for a in assignments(store, experiment_id) if (user_ids is None or a.user_id in set(user_ids))
            and not a.user_id.startswith("erased:")]  # an erased user is never sent to
    counts: Counter[str] = Counter()
    for a in todo:
        key = idempotency_key(experiment_id, a.user_id)
        try:
            with store.session() as s:
                # row-locked: of two workers sending the same experiment, only one claims a send
                row = s.scalar(select(Send).where(Send.idempotency_key == key).with_for_update())
                if row is not None and row.status not in RETRYABLE_SEND:
                    continue
                if row is None:
                    row = Send(experiment_id=experiment_id, user_id=a.user_id, arm=a.arm, idempotency_key=key,
                               status="pending")
                    s.add(row)
                    s.flush()  # a concurrent insert of the same key fails here: the other worker owns it
                status, message, token = _decide(s, exp, arm_rows[a.arm], a.user_id, rules, tz, now,
                                                 list(by_platform), control)
                row.updated_at = now
                if message is not None:
                    row.message_id, row.adapter = message.id, message.adapter
                if status != "go":
                    row.status = status
                    counts[status] += 1
                    continue
                row.status, row.platform, row.device_token_id = "sending", token.platform, token.id
                payload = push_payload(message, experiment_id, key, a.arm, rich)
                token_value, send_id, token_id = token.token, row.id, token.id
        except IntegrityError:
            continue
        chosen = by_platform.get(token.platform) or by_platform["any"]
        result = chosen.deliver(token_value, payload)  # outside the transaction: no lock held over the network
        with store.session() as s:
            row = s.get(Send, send_id)
            status = {"invalid_token": "dead_token"}.get(result.status, result.status)
            row.status, row.attempts = status, row.attempts + int(result.attempts)
            row.provider_id, row.error, row.updated_at = result.provider_id, result.error, utcnow()
            if status == "sent":
                row.sent_at = utcnow()
            if status == "dead_token" and s.get(DeadToken, token_id) is None:
                s.add(DeadToken(token_id=token_id, reason=(result.error or "invalid token")[:200]))
        counts[status] += 1
    return counts


def _decide(s: Any, exp: Experiment, arm: Arm, user_id: str, rules: SendRules, tz: Mapping[str, str],
            now: datetime, platforms: Sequence[str],
            control: holdout.Control | None = None) -> tuple[str, Message | None, DeviceToken | None]:
    """What to do with one user's send: a final status, or ``go`` with the approved message and a live token."""
    if arm.variant is None:
        return "holdout", None, None
    if control is not None and user_id in control:
        return holdout.STATUS, None, None  # the brand's global control group: no campaign push at all
    message = s.scalar(select(Message).where(Message.job_id == exp.job_id, Message.user_id == user_id,
                                             Message.variant == arm.variant))
    if message is None:
        return "awaiting", None, None  # assigned before generation: the copy is not written yet
    if message.review_status != "approved":
        if message.review_status == "rejected" or message.status not in ("passed", "fallback"):
            return "dropped", message, None  # can never be approved: the user stays in the arm, unsent
        return "awaiting", message, None  # waiting for a reviewer
    if sendtime.wait(s, exp.id, user_id, now, tz.get(user_id, "UTC")):
        return "scheduled", message, None  # the user's own send time (generator.experiments.sendtime) is still to come
    if rules.quiet(now, tz.get(user_id, "UTC")):
        return "deferred", message, None
    if rules.frequency_cap and _sent_recently(s, user_id, now - timedelta(hours=rules.cap_window_hours)) \
            >= rules.frequency_cap:
        return "capped", message, None
    token = _live_token(s, user_id, platforms)
    if token is None:
        return "no_token", message, None
    return "go", message, token


def _campaign_of(store: Store, exp: Experiment) -> dict[str, Any]:
    """The campaign (as stored JSON) of the experiment's job; {} when the job is gone."""
    job = get_job(store, exp.job_id) if exp.job_id else None
    return dict(((job.params or {}).get("campaign") or {}) if job else {})


def _timezones(store: Store, exp: Experiment) -> dict[str, str]:
    """Users' time zones from the job's shop (the users table's ``timezone``)."""
    job = get_job(store, exp.job_id) if exp.job_id else None
    folder = ((job.params or {}).get("shop") if job else None) or get_settings().shop_dir
    try:
        return {u.user_id: u.timezone for u in cached_shop(folder).users}
    except (OSError, PushgenError):
        return {}


def sends(store: Store, experiment_id: str) -> list[Send]:
    with store.session() as s:
        return list(s.scalars(select(Send).where(Send.experiment_id == experiment_id).order_by(Send.user_id)))


def dead_tokens(store: Store) -> set[int]:
    with store.session() as s:
        return set(s.scalars(select(DeadToken.token_id)))


def reset_stuck(store: Store, experiment_id: str, older_than: timedelta) -> int:
    """Sends left ``sending`` by a crash: whether the provider got them is unknown, so they are *not* resent
    (at most once); this marks them ``failed`` with that reason. Returns how many."""
    with store.session() as s:
        res = s.execute(update(Send).where(Send.experiment_id == experiment_id, Send.status == "sending",
                                           Send.updated_at < utcnow() - older_than)
                        .values(status="failed", error="interrupted while sending; not resent (at most once)"))
        return int(res.rowcount or 0)


def pseudonymise_user(s: Any, user_id: str, key: bytes) -> int:
    """For an erasure (:func:`generator.erasure.erase`, in its transaction): the user's assignments and sends
    get a random id per experiment, so the experiments' counts stay right while nothing links them to the
    person; a send's idempotency key (a plain hash of experiment and user id) becomes random, its provider id
    and error are dropped, and the client's ids of its outcome events become keyed hashes (a repost of the same
    event is still recognised). Returns the rows changed."""
    pseudonyms: dict[str, str] = {}
    n = 0
    for a in s.scalars(select(Assignment).where(Assignment.user_id == user_id)):
        a.user_id = pseudonyms.setdefault(a.experiment_id, ERASED + uuid.uuid4().hex)
        n += 1
    for x in s.scalars(select(Send).where(Send.user_id == user_id)):
        x.user_id = pseudonyms.setdefault(x.experiment_id, ERASED + uuid.uuid4().hex)
        x.idempotency_key, x.provider_id, x.error = ERASED + uuid.uuid4().hex[:32], None, None
        for event_id in list(s.scalars(select(OutcomeEvent.event_id).where(OutcomeEvent.send_id == x.id))):
            s.execute(update(OutcomeEvent).where(OutcomeEvent.event_id == event_id)
                      .values(event_id=ERASED + keyed(key, event_id)))
            n += 1
        n += 1
    for t in s.scalars(select(tables.SendTime).where(tables.SendTime.user_id == user_id)):
        t.user_id = pseudonyms.setdefault(t.experiment_id, ERASED + uuid.uuid4().hex)  # still joins its send
        n += 1
    return n


# -- outcomes ------------------------------------------------------------------------------------------------
def record_events(store: Store, events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Store outcome events, each ``{event_id, type, send_id | send_key | (experiment_id, user_id), revenue?,
    occurred_at?}``. An event id seen before is skipped (idempotent). Returns counts ``stored`` and
    ``duplicate``; an event naming no known send raises :class:`ExperimentError` and nothing is stored."""
    out = {"stored": 0, "duplicate": 0}

    def key() -> bytes:
        return installation_key(store)

    with store.session() as s:
        for e in events:
            etype = e.get("type")
            if etype not in EVENT_TYPES:
                raise ExperimentError(f"type: {etype!r} is not one of {', '.join(EVENT_TYPES)}")
            send_row = _find_send(s, e)
            if send_row is None:
                raise ExperimentError(f"event {e.get('event_id')!r}: no such send")
            if send_row.status not in OUTCOME_SENDS[etype]:  # dropped, no token, failed...: nothing went out
                raise ExperimentError(f"event {e.get('event_id')!r}: send {send_row.id} did not go out "
                                      f"(status {send_row.status}), so it cannot be {etype}")
            if s.get(OutcomeEvent, e["event_id"]) is not None or (
                    send_row.user_id.startswith(ERASED) and s.get(OutcomeEvent, ERASED + keyed(key(), e["event_id"]))):
                out["duplicate"] += 1
                continue
            revenue = e.get("revenue")
            if revenue is not None and etype != "converted":
                raise ExperimentError("revenue: only a 'converted' event carries revenue")
            s.add(OutcomeEvent(event_id=e["event_id"], send_id=send_row.id, experiment_id=send_row.experiment_id,
                               arm=send_row.arm, type=etype, revenue=float(revenue) if revenue is not None else None,
                               occurred_at=e.get("occurred_at") or utcnow(), received_at=utcnow()))
            s.flush()
            out["stored"] += 1
    return out


def _find_send(s: Any, e: Mapping[str, Any]) -> Send | None:
    if e.get("send_id") is not None:
        return s.get(Send, int(e["send_id"]))
    if e.get("send_key"):
        return s.scalar(select(Send).where(Send.idempotency_key == e["send_key"]))
    if e.get("experiment_id") and e.get("user_id"):
        return s.scalar(select(Send).where(Send.idempotency_key == idempotency_key(e["experiment_id"],
                                                                                      e["user_id"])))
    return None


# -- counts for the statistics -------------------------------------------------------------------------------
def arm_counts(store: Store, experiment_id: str, until: datetime | None = None) -> dict[str, dict[str, float]]:
    """Per arm: users ``assigned``, ``sent``, distinct sends with each event type (``delivered``, ``opened``,
    ``clicked``, ``converted``), ``revenue`` and ``revenue_sq`` (sum of squared per-user revenue), up to
    ``until`` (default: everything)."""
    names = [a.name for a in arms(store, experiment_id)]
    out = {n: {"assigned": 0, "sent": 0, **{t: 0 for t in EVENT_TYPES}, "revenue": 0.0, "revenue_sq": 0.0}
           for n in names}
    with store.session() as s:
        q = select(Assignment.arm, func.count()).where(Assignment.experiment_id == experiment_id)
        if until is not None:
            q = q.where(Assignment.assigned_at <= until)
        for arm, n in s.execute(q.group_by(Assignment.arm)):
            out[arm]["assigned"] = n
        q = select(Send.arm, func.count()).where(Send.experiment_id == experiment_id, Send.status == "sent")
        if until is not None:
            q = q.where(Send.sent_at <= until)
        for arm, n in s.execute(q.group_by(Send.arm)):
            out[arm]["sent"] = n
        q = select(OutcomeEvent.arm, OutcomeEvent.type, func.count(OutcomeEvent.send_id.distinct())).where(
            OutcomeEvent.experiment_id == experiment_id)
        if until is not None:
            q = q.where(OutcomeEvent.occurred_at <= until)
        for arm, etype, n in s.execute(q.group_by(OutcomeEvent.arm, OutcomeEvent.type)):
            out[arm][etype] = n
        q = select(OutcomeEvent.arm, OutcomeEvent.send_id, func.sum(OutcomeEvent.revenue)).where(
            OutcomeEvent.experiment_id == experiment_id, OutcomeEvent.revenue.is_not(None))
        if until is not None:
            q = q.where(OutcomeEvent.occurred_at <= until)
        for arm, _, total in s.execute(q.group_by(OutcomeEvent.arm, OutcomeEvent.send_id)):
            out[arm]["revenue"] += float(total)
            out[arm]["revenue_sq"] += float(total) ** 2
    return out


def stop(store: Store, experiment_id: str, winner: str | None = None) -> Experiment:
    with store.session() as s:
        exp = s.get(Experiment, experiment_id, with_for_update=True)
        if exp is None:
            raise ExperimentError(f"no experiment {experiment_id}")
        if winner is not None and s.get(Arm, (experiment_id, winner)) is None:
            raise ExperimentError(f"winner: no arm {winner!r}")
        exp.status, exp.stopped_at, exp.winner = "stopped", utcnow(), winner
    return get_experiment(store, experiment_id)


def list_experiments(store: Store) -> list[Experiment]:
    with store.session() as s:
        return list(s.scalars(select(Experiment).order_by(Experiment.created_at.desc())))
