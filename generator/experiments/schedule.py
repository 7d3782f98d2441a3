"""Planning an experiment's send times: every assigned user of a variant arm gets the local hour they are most
likely to open a push (:mod:`generator.experiments.sendtime`), or a random one in the control share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime

import numpy as np
from sqlalchemy import select

from generator.core.data import unit_interval
from generator.db import tables
from generator.db.store import Store
from generator.db.tables import SendTime, utcnow
from generator.experiments import ab as ex
from generator.experiments.sendtime import (
    SendTimeConfig,
    allowed_hours,
    best_hour,
    history,
    next_local,
    profiles,
    random_hour,
)


def plan(store: Store, experiment_id: str, cfg: SendTimeConfig | None = None, *, now: datetime | None = None,
         timezones: Mapping[str, str] | None = None) -> Counter[str]:
    """Give every assigned user of the experiment without a send time one (see the module doc); returns counts
    per ``timing/source``. The experiment keeps ``cfg`` in its params."""
    exp = ex.get_experiment(store, experiment_id)
    stored = exp.params.get("send_time")
    cfg = cfg or (SendTimeConfig(**stored) if stored else SendTimeConfig())
    rules = ex.SendRules(**exp.params.get("rules", {}))
    allowed = allowed_hours(cfg, rules.quiet_start, rules.quiet_end)
    now = now or utcnow()
    zones = timezones if timezones is not None else ex._timezones(store, exp)
    arm_rows = {a.name: a for a in ex.arms(store, experiment_id)}
    with store.session() as s:
        planned = set(s.scalars(select(SendTime.user_id).where(SendTime.experiment_id == experiment_id)))
    todo = [a.user_id for a in ex.assignments(store, experiment_id)
            if a.user_id not in planned and arm_rows[a.arm].variant is not None]
    prof = profiles(history(store, todo), zones, now, cfg)
    population = np.sum(list(prof.values()), axis=0) if prof else np.zeros(24)
    counts: Counter[str] = Counter()
    with store.session() as s:
        for user in todo:
            if unit_interval(f"{exp.salt}:timing", user) < cfg.control_share:
                timing, (hour, source) = "random", (random_hour(exp.salt, user, allowed), "random")
            else:
                timing, (hour, source) = "optimised", best_hour(prof[user], allowed, cfg, population)
            s.add(SendTime(experiment_id=experiment_id, user_id=user, timing=timing, local_hour=hour, source=source,
                           scheduled_for=next_local(now, zones.get(user, "UTC"), hour)))
            counts[f"{timing}/{source}"] += 1
        row = s.get(tables.Experiment, experiment_id)
        row.params = {**row.params, "send_time": asdict(cfg)}
    return counts
