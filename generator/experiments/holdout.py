"""Global control groups: a stable share of each brand's users who receive no campaign push at all, to measure the
long-term uplift of all campaigns together (per-experiment holdouts measure one campaign each).

* **Membership** is ``unit_interval("global:" + salt, user_id) < share`` with a salt per brand: the same users in
  every process, independent of any experiment's arms (each experiment has its own salt). Raising the share only
  adds users (those between the old and the new share) and lowering it only releases some: membership is
  monotone in the share. A different set of people needs a new salt (:func:`set_control` with ``new_salt``),
  which starts a new period: compare outcomes within one salt's period.
* **Enforcement**: :func:`generator.experiments.ab.send` records a member's send as ``global_control`` (no push),
  before the variant's copy, the device token or the provider are looked at. The user stays assigned to their
  arm (the experiment's own comparison loses the same share of every arm at random), and outcome events
  (conversions, revenue) can be posted for that send like for a holdout's.
* **Uplift** (:func:`experiment_uplift`, :func:`brand_uplift`): users who could receive the brand's campaigns
  (intent to treat: every variant-arm user outside the control, sent or not) against the control's users, on
  open, click and conversion rates (Newcombe interval of the difference, z-test) and revenue per user (Welch's
  interval), with the relative lift.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from generator.core.config import DEFAULT_BRAND
from generator.core.data import unit_interval
from generator.core.errors import PushgenError
from generator.db.store import Store
from generator.db.tables import Arm, Experiment, GlobalControl, Job, OutcomeEvent, Send, utcnow
from generator.experiments.stats import compare_means, two_proportion_z, wilson

STATUS = "global_control"
MAX_SHARE = 0.5




@dataclass(frozen=True)
class Control:
    """A brand's control group as the sender uses it."""

    brand: str
    salt: str
    share: float

    def __contains__(self, user_id: object) -> bool:
        return unit_interval(f"global:{self.salt}", str(user_id)) < self.share


def set_control(store: Store, brand: str, share: float, *, new_salt: bool = False,
                salt: str | None = None) -> Control:
    """Create or change a brand's control group. The share may change under the same salt (membership stays
    monotone); ``new_salt`` (or a different ``salt``) draws a new set of people and starts a new period."""
    if not brand or len(brand) > 200:
        raise PushgenError("brand: give the campaign's brand name (1-200 characters)")
    if not 0 <= share <= MAX_SHARE:
        raise PushgenError(f"share: {share} is not in [0, {MAX_SHARE}]")
    now = utcnow().isoformat()
    with store.session() as s:
        row = s.get(GlobalControl, brand, with_for_update=True)
        if row is None:
            row = GlobalControl(brand=brand, salt=salt or uuid.uuid4().hex, share=share, history=[])
            s.add(row)
            reason = "created"
        elif new_salt or (salt is not None and salt != row.salt):
            if salt is not None and salt == row.salt:
                raise PushgenError("salt: a new salt must differ from the current one")
            row.salt, reason = salt or uuid.uuid4().hex, "new salt: new members, a new period"
        else:
            reason = f"share {row.share:g} -> {share:g} (same salt: membership monotone)"
        row.share, row.updated_at = share, utcnow()
        row.history = [*row.history, {"at": now, "share": share, "salt": row.salt, "reason": reason}]
        return Control(row.brand, row.salt, row.share)


def get_control(store: Store, brand: str | None) -> Control | None:
    if not brand:
        return None
    with store.session() as s:
        row = s.get(GlobalControl, brand)
        return Control(row.brand, row.salt, row.share) if row is not None and row.share > 0 else None


def controls(store: Store) -> list[GlobalControl]:
    with store.session() as s:
        return list(s.scalars(select(GlobalControl).order_by(GlobalControl.brand)))


# -- uplift ---------------------------------------------------------------------------------------------------
def _per_user(store: Store, experiment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per user over these experiments' variant-arm sends: in the control or not (``mixed`` when both), whether
    they opened, clicked, converted, and their revenue."""
    users: dict[str, dict[str, Any]] = {}
    with store.session() as s:
        sends = s.execute(select(Send.id, Send.user_id, Send.status).join(
            Arm, (Arm.experiment_id == Send.experiment_id) & (Arm.name == Send.arm))
            .where(Send.experiment_id.in_(list(experiment_ids)), Arm.variant.is_not(None))).all()
        owner = {}
        for send_id, user, status in sends:
            u = users.setdefault(user, {"control": set(), "opened": 0, "clicked": 0, "converted": 0, "revenue": 0.0})
            u["control"].add(status == STATUS)
            owner[send_id] = user
        for i in range(0, len(owner), 1000):
            ids = list(owner)[i:i + 1000]
            for send_id, kind, revenue in s.execute(select(OutcomeEvent.send_id, OutcomeEvent.type,
                                                           OutcomeEvent.revenue)
                                                    .where(OutcomeEvent.send_id.in_(ids))):
                u = users[owner[send_id]]
                if kind in ("opened", "clicked", "converted"):
                    u[kind] = 1
                u["revenue"] += float(revenue or 0.0)
    return users


def _uplift(users: dict[str, dict[str, Any]], alpha: float) -> dict[str, Any]:
    from statsmodels.stats.proportion import confint_proportions_2indep

    groups = {"sent": [u for u in users.values() if u["control"] == {False}],
              "global_control": [u for u in users.values() if u["control"] == {True}]}
    n_t, n_c = len(groups["sent"]), len(groups["global_control"])
    out: dict[str, Any] = {"users": {"sent": n_t, "global_control": n_c,
                                     "mixed": sum(len(u["control"]) > 1 for u in users.values())},
                           "metrics": [], "alpha": alpha}
    for metric, event in (("open_rate", "opened"), ("click_through", "clicked"), ("conversion", "converted")):
        x_t, x_c = (sum(u[event] for u in groups[g]) for g in ("sent", "global_control"))
        row = {"metric": metric, "sent": x_t / n_t if n_t else 0.0, "global_control": x_c / n_c if n_c else 0.0,
               "sent_ci": wilson(x_t, n_t, alpha), "global_control_ci": wilson(x_c, n_c, alpha)}
        row["diff"] = row["sent"] - row["global_control"]
        row["diff_ci"] = tuple(float(v) for v in confint_proportions_2indep(
            x_t, n_t, x_c, n_c, method="newcomb", alpha=alpha)) if n_t and n_c else (0.0, 0.0)
        row["p_value"] = two_proportion_z(x_t, n_t, x_c, n_c)[1]
        row["relative_lift"] = row["diff"] / row["global_control"] if row["global_control"] else None
        out["metrics"].append(row)
    rev = {g: [u["revenue"] for u in groups[g]] for g in groups}
    c = compare_means("revenue_per_user", "sent", "global_control", sum(rev["sent"]),
                      sum(r * r for r in rev["sent"]), n_t, sum(rev["global_control"]),
                      sum(r * r for r in rev["global_control"]), n_c, alpha=alpha)
    from scipy import stats

    half = abs(c.diff / c.z) * stats.norm.ppf(1 - alpha / 2) if c.z else 0.0
    out["metrics"].append({"metric": "revenue_per_user", "sent": c.value, "global_control": c.control_value,
                           "sent_ci": c.ci, "global_control_ci": None, "diff": c.diff,
                           "diff_ci": (c.diff - half, c.diff + half), "p_value": c.p_value,
                           "relative_lift": c.diff / c.control_value if c.control_value else None})
    return out


def experiment_uplift(store: Store, experiment_id: str, alpha: float = 0.05) -> dict[str, Any] | None:
    """Sent vs the brand's global control within one experiment; None when none of its users was held back."""
    with store.session() as s:
        if s.scalar(select(Send.id).where(Send.experiment_id == experiment_id, Send.status == STATUS).limit(1)) \
                is None:
            return None
    return _uplift(_per_user(store, [experiment_id]), alpha)


def brand_uplift(store: Store, brand: str, *, since: datetime | None = None, until: datetime | None = None,
                 alpha: float = 0.05) -> dict[str, Any]:
    """Sent vs global control over every experiment of the brand's campaigns started in [since, until): per
    user, whether they opened, clicked or converted after any of them, and their revenue. Users who were in the
    control for some sends and not for others (the share or salt changed) are counted as ``mixed`` and left
    out."""
    ids = []
    with store.session() as s:
        for exp, job in s.execute(select(Experiment, Job).join(Job, Job.id == Experiment.job_id)):
            started = exp.started_at or exp.created_at
            if started.tzinfo is None and (since or until):
                started = started.replace(tzinfo=(since or until).tzinfo)
            if ((job.params or {}).get("campaign") or {}).get("brand", DEFAULT_BRAND) != brand:
                continue
            if (since is None or started >= since) and (until is None or started < until):
                ids.append(exp.id)
    control = get_control(store, brand)
    return {"brand": brand, "experiments": len(ids), "share": control.share if control else 0.0,
            **_uplift(_per_user(store, ids), alpha)}

