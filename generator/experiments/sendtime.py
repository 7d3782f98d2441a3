"""Send-time optimisation: each user gets an experiment's push at the local hour they are most likely to open it.

Read top to bottom:

* **Profile** (:func:`hour_profile`): the local hours of a user's past opens and clicks (a click weighs
  ``click_weight`` opens), each weighted by ``0.5 ** (age / half_life_days)``, so recent habits count more and a
  user whose routine changed is followed within a few half-lives.
* **Best hour** (:func:`best_hour`): the profile smoothed over neighbouring hours (a 9:40 open is evidence for
  9:00 and 10:00 too) plus a weak prior (the population's profile), maximised over the *allowed* hours: the
  campaign's window minus the quiet hours. A user whose recency-weighted history is under ``min_events`` gets
  the fallback hour (``fallback_hour``, else the population's best allowed hour).
* **Plan** (:func:`plan`): every assigned user of an experiment (not its holdout) gets a row in ``send_times``:
  the timing arm, the local hour and the UTC time it falls on next. A share ``control_share`` of users, chosen
  by ``unit_interval`` with the experiment's salt (independent of the variant arm), is the *random-hour control
  arm*: a uniformly drawn allowed hour instead of their best one, so the report can measure the lift of the
  optimisation itself. A plan is sticky: planning again only adds users.
* **Sending**: :func:`generator.experiments.ab.send` asks :func:`wait` for each user: a send before its time is
  ``scheduled`` (tried again on a later run); one whose hour passed more than ``slack_hours`` ago moves to the
  same local hour the next day. Quiet hours and the frequency cap are checked at send time as before. Run the
  send every 15 minutes or so (cron, or Celery beat) so each user's hour is met.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select

from generator.core.data import unit_interval
from generator.core.errors import PushgenError
from generator.db.store import Store
from generator.db.tables import OutcomeEvent, Send, SendTime
from generator.experiments.stats import compare_rates

TIMINGS = ("optimised", "random")




@dataclass(frozen=True)
class SendTimeConfig:
    """How send times are chosen (``pushgen experiment schedule`` options)."""

    window_start: int = 9
    """The campaign's allowed window, local hours [start, end); start > end wraps past midnight."""
    window_end: int = 21
    fallback_hour: int | None = None
    """The hour for users with too little history; None: the population's best allowed hour."""
    min_events: float = 0.5
    """Recency-weighted opens (clicks count ``click_weight``) a user needs for a personal hour; 0.5: one open
    within the last half-life."""
    half_life_days: float = 14.0
    """An open this many days old counts half as much as one today."""
    click_weight: float = 2.0
    smoothing: float = 0.5
    """Weight of each neighbouring hour in the smoothing (the hour itself weighs 1)."""
    prior: float = 0.5
    """Weight, in events, of the population's (normalised) profile added to every user's."""
    control_share: float = 0.2
    """Share of users in the random-hour control arm (0: none)."""
    slack_hours: float = 1.0
    """A send this late after its hour is moved to the next day instead."""

    def __post_init__(self) -> None:
        for name in ("window_start", "window_end"):
            if not 0 <= getattr(self, name) <= 23:
                raise PushgenError(f"{name}: {getattr(self, name)} is not an hour 0-23")
        if self.fallback_hour is not None and not 0 <= self.fallback_hour <= 23:
            raise PushgenError(f"fallback_hour: {self.fallback_hour} is not an hour 0-23")
        if not 0 <= self.control_share < 1:
            raise PushgenError("control_share: must be in [0, 1)")
        if self.half_life_days <= 0 or self.min_events < 0:
            raise PushgenError("half_life_days must be positive and min_events not negative")


def window_hours(start: int, end: int) -> list[int]:
    """Local hours in [start, end), wrapping past midnight when start > end; equal: every hour."""
    if start == end:
        return list(range(24))
    return [h % 24 for h in range(start, end if end > start else end + 24)]


def allowed_hours(cfg: SendTimeConfig, quiet_start: int = 21, quiet_end: int = 8) -> list[int]:
    """The window's hours that are not quiet hours (the experiment's send rules)."""
    quiet = set(window_hours(quiet_start, quiet_end)) if quiet_start != quiet_end else set()
    hours = [h for h in window_hours(cfg.window_start, cfg.window_end) if h not in quiet]
    if not hours:
        raise PushgenError(f"the window {cfg.window_start}-{cfg.window_end} lies inside the quiet hours "
                           f"{quiet_start}-{quiet_end}: no hour is left to send at")
    return hours


def hour_profile(hours: Sequence[int] | np.ndarray, ages_days: Sequence[float] | np.ndarray,
                 weights: Sequence[float] | np.ndarray | None = None, *, half_life_days: float = 14.0) -> np.ndarray:
    """24 recency-weighted counts: event i adds ``weights[i] * 0.5 ** (ages_days[i] / half_life)`` to its hour."""
    h = np.asarray(hours, dtype=int)
    w = np.ones(len(h)) if weights is None else np.asarray(weights, dtype=float)
    decay = 0.5 ** (np.maximum(np.asarray(ages_days, dtype=float), 0.0) / half_life_days)
    return np.bincount(h, weights=w * decay, minlength=24)[:24]


def smooth(profile: np.ndarray, neighbour: float) -> np.ndarray:
    """Circular smoothing over the hours of the day: each hour plus ``neighbour`` times each adjacent hour."""
    return profile + neighbour * (np.roll(profile, 1) + np.roll(profile, -1))


def best_hour(profile: np.ndarray, allowed: Sequence[int], cfg: SendTimeConfig,
              population: np.ndarray | None = None) -> tuple[int, str]:
    """The user's best allowed local hour and where it came from (``history`` or ``fallback``)."""
    if float(profile.sum()) < cfg.min_events:
        return fallback_hour(allowed, cfg, population), "fallback"
    score = smooth(profile, cfg.smoothing)
    if population is not None and population.sum() > 0:
        score = score + cfg.prior * smooth(population / population.sum(), cfg.smoothing)
    return max(allowed, key=lambda h: (score[h], -allowed.index(h))), "history"


def fallback_hour(allowed: Sequence[int], cfg: SendTimeConfig, population: np.ndarray | None = None) -> int:
    if cfg.fallback_hour is not None and cfg.fallback_hour in allowed:
        return cfg.fallback_hour
    if population is None or population.sum() <= 0:
        return cfg.fallback_hour if cfg.fallback_hour is not None else allowed[len(allowed) // 3]
    score = smooth(population, cfg.smoothing)
    return max(allowed, key=lambda h: (score[h], -allowed.index(h)))


def random_hour(salt: str, user_id: str, allowed: Sequence[int]) -> int:
    """The control arm's hour: uniform over the allowed hours, fixed by (salt, user)."""
    return allowed[min(int(unit_interval(f"{salt}:hour", user_id) * len(allowed)), len(allowed) - 1)]


def next_local(now: datetime, zone: str, hour: int) -> datetime:
    """The first time at or after ``now`` that is ``hour``:00 in ``zone`` (in UTC)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at < local:
        at = (local + timedelta(days=1)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return at.astimezone(ZoneInfo("UTC"))


# -- the database side ----------------------------------------------------------------------------------------
def history(store: Store, user_ids: Iterable[str]) -> dict[str, list[tuple[datetime, str]]]:
    """Each user's past opens and clicks of pushes (every experiment's outcome events): (time, type)."""
    users = list(user_ids)
    out: dict[str, list[tuple[datetime, str]]] = {u: [] for u in users}
    with store.session() as s:
        for i in range(0, len(users), 500):
            q = (select(Send.user_id, OutcomeEvent.occurred_at, OutcomeEvent.type)
                 .join(OutcomeEvent, OutcomeEvent.send_id == Send.id)
                 .where(Send.user_id.in_(users[i:i + 500]), OutcomeEvent.type.in_(("opened", "clicked"))))
            for user, at, kind in s.execute(q):
                out[user].append((at, kind))
    return out


def profiles(events: Mapping[str, list[tuple[datetime, str]]], zones: Mapping[str, str], now: datetime,
             cfg: SendTimeConfig) -> dict[str, np.ndarray]:
    """Per user the recency-weighted 24-hour profile of their opens and clicks in their own time zone."""
    out = {}
    for user, rows in events.items():
        tz = ZoneInfo(zones.get(user, "UTC"))
        local = [(at if at.tzinfo else at.replace(tzinfo=ZoneInfo("UTC"))).astimezone(tz) for at, _ in rows]
        out[user] = hour_profile([t.hour for t in local], [(now - t).total_seconds() / 86400 for t in local],
                                 [cfg.click_weight if k == "clicked" else 1.0 for _, k in rows],
                                 half_life_days=cfg.half_life_days)
    return out




def wait(s: Any, experiment_id: str, user_id: str, now: datetime, zone: str, slack_hours: float = 1.0) -> bool:
    """Whether the user's send must wait (inside :func:`generator.experiments.ab.send`'s transaction): True before
    its time, and when its hour passed more than ``slack_hours`` ago (it moves to that hour the next day)."""
    row = s.get(SendTime, (experiment_id, user_id))
    if row is None:
        return False
    at = row.scheduled_for if row.scheduled_for.tzinfo else row.scheduled_for.replace(tzinfo=ZoneInfo("UTC"))
    if now < at:
        return True
    if now - at > timedelta(hours=slack_hours):
        row.scheduled_for = next_local(now, zone, row.local_hour)
        return True
    return False


def report(store: Store, experiment_id: str, alpha: float = 0.05) -> dict[str, Any] | None:
    """Open and click rates per timing arm (per planned user: intent to treat) and the optimised arm against the
    random-hour control; None when the experiment has no send-time plan."""
    from sqlalchemy import func

    with store.session() as s:
        planned = dict(s.execute(select(SendTime.timing, func.count()).where(SendTime.experiment_id == experiment_id)
                                 .group_by(SendTime.timing)).all())
        if not planned:
            return None
        same_user = (Send.experiment_id == SendTime.experiment_id) & (Send.user_id == SendTime.user_id)
        sent = dict(s.execute(select(SendTime.timing, func.count()).join(Send, same_user)
                              .where(SendTime.experiment_id == experiment_id, Send.status == "sent")
                              .group_by(SendTime.timing)).all())
        events = {(t, k): n for t, k, n in s.execute(
            select(SendTime.timing, OutcomeEvent.type, func.count(OutcomeEvent.send_id.distinct()))
            .join(Send, same_user).join(OutcomeEvent, OutcomeEvent.send_id == Send.id)
            .where(SendTime.experiment_id == experiment_id).group_by(SendTime.timing, OutcomeEvent.type))}
    arms = {t: {"planned": planned.get(t, 0), "sent": sent.get(t, 0), "opened": events.get((t, "opened"), 0),
                "clicked": events.get((t, "clicked"), 0)} for t in TIMINGS}
    comparisons = [compare_rates(metric, "optimised", "random", arms["optimised"][ev], arms["optimised"]["planned"],
                                 arms["random"][ev], arms["random"]["planned"], alpha=alpha).to_dict()
                   for metric, ev in (("open_rate", "opened"), ("click_through", "clicked"))
                   if arms["random"]["planned"] and arms["optimised"]["planned"]]
    return {"arms": arms, "comparisons": comparisons}
