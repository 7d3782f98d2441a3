"""Simulate send-time optimisation with known per-user preferences: how much it lifts the open rate over a
random-hour control arm (and a fixed hour for everyone), and how many sends it takes to learn each user's hour.

Each simulated user looks at their phone in hour ``h`` with probability ``a(h)``: a floor plus a bump around
their own peak hour (a morning, lunch or evening person). A push sent at hour ``t`` is seen at the first hour
``t + k`` they look (k = 0..5) and opened then with probability ``0.5 * 0.7**k`` (a buried push is opened
less): so the open *time* reveals when the user is active even when the push went out at another hour, which
is what the optimiser learns from. Halfway through, a share of users change routine (their peak moves 4-8
hours), which the recency weighting must follow. Every user gets one push a day; users are split by
``unit_interval`` into the optimised arm (:mod:`generator.experiments.sendtime`'s ``hour_profile`` and ``best_hour``
on their
own open history, the population's best hour as the fallback), the random-hour control arm and a fixed-hour arm
(the population's best hour for everyone). The oracle sends each user at their true best allowed hour.

    python scripts/sim_send_time.py --users 3000 --days 28 --json docs/bench/sim_send_time.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from generator.core.data import unit_interval  # noqa: E402
from generator.experiments.sendtime import SendTimeConfig, allowed_hours, best_hour, hour_profile  # noqa: E402
from generator.experiments.stats import compare_rates  # noqa: E402

LOOK_AHEAD = 6
ARMS = ("optimised", "random", "fixed")


def activity(peaks: np.ndarray, floor: float = 0.04, height: float = 0.55, width: float = 1.2) -> np.ndarray:
    """users x 24: the chance each user looks at their phone during each local hour."""
    hours = np.arange(24)
    d = np.abs(hours[None, :] - peaks[:, None]) % 24
    d = np.minimum(d, 24 - d)
    return floor + height * np.exp(-d**2 / (2 * width**2))


def open_chances(act: np.ndarray) -> np.ndarray:
    """users x 24 (send hour) x LOOK_AHEAD: the chance the push is first seen k hours later and opened then."""
    n = act.shape[0]
    out = np.zeros((n, 24, LOOK_AHEAD))
    for t in range(24):
        unseen = np.ones(n)
        for k in range(LOOK_AHEAD):
            a = act[:, (t + k) % 24]
            out[:, t, k] = unseen * a * 0.5 * 0.7**k
            unseen = unseen * (1 - a)
    return out


def draw_peaks(n: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(3, size=n, p=[0.3, 0.25, 0.45])
    centre = np.array([8.0, 12.5, 20.0])[kind]
    return (centre + rng.normal(0, 1.0, size=n)) % 24


def simulate(users: int, days: int, drift_share: float, seed: int, cfg: SendTimeConfig) -> dict:
    rng = np.random.default_rng(seed)
    allowed = allowed_hours(cfg, 22, 7)
    ids = [f"sim-{i:06d}" for i in range(users)]
    u = np.array([unit_interval("sim-send-time", x) for x in ids])
    arm = np.where(u < 0.4, 0, np.where(u < 0.7, 1, 2))  # optimised 40%, random 30%, fixed 30%
    peaks = draw_peaks(users, rng)
    chances = open_chances(activity(peaks))
    events: list[list[tuple[int, int]]] = [[] for _ in range(users)]  # (local open hour, day)
    per_day = {a: [] for a in ARMS} | {"oracle": []}
    learned = []  # per day: share of optimised users whose hour is within 1 of their true best hour
    drifted = rng.random(users) < drift_share
    for day in range(days):
        if day == days // 2:  # a routine change: the optimiser must follow it
            peaks = np.where(drifted, (peaks + rng.choice([-1, 1], users) * rng.uniform(4, 8, users)) % 24, peaks)
            chances = open_chances(activity(peaks))
        p_open = chances.sum(axis=2)[:, allowed]  # users x allowed send hours
        true_best = np.array(allowed)[np.argmax(p_open, axis=1)]
        pop = hour_profile([h for ev in events for h, _ in ev], [day - d for ev in events for _, d in ev],
                           half_life_days=cfg.half_life_days)
        fixed = best_hour(np.zeros(24), allowed, cfg, pop)[0]
        hours = np.empty(users, dtype=int)
        for i in range(users):
            if arm[i] == 0:
                prof = hour_profile([h for h, _ in events[i]], [day - d for _, d in events[i]],
                                    half_life_days=cfg.half_life_days)
                hours[i] = best_hour(prof, allowed, cfg, pop)[0]
            elif arm[i] == 1:
                hours[i] = allowed[rng.integers(len(allowed))]
            else:
                hours[i] = fixed
        q = chances[np.arange(users), hours]  # users x LOOK_AHEAD
        r = rng.random(users)
        k = (r[:, None] < np.cumsum(q, axis=1)).argmax(axis=1)
        opened = r < q.sum(axis=1)
        for i in np.flatnonzero(opened):
            events[i].append(((hours[i] + k[i]) % 24, day))
        for a, name in enumerate(ARMS):
            per_day[name].append((int(opened[arm == a].sum()), int((arm == a).sum())))
        per_day["oracle"].append((float(p_open.max(axis=1).sum()), users))  # expected opens at the true best hour
        d = np.abs(hours - true_best)
        near = np.minimum(d, 24 - d) <= 1
        learned.append(float(np.mean(near[arm == 0])))
    return {"per_day": per_day, "learned_within_1h": learned,
            "arm_sizes": {a: int((arm == i).sum()) for i, a in enumerate(ARMS)}}


def summarise(sim: dict, days: int, last: int) -> dict:
    rate = {a: [x / n for x, n in sim["per_day"][a]] for a in (*ARMS, "oracle")}
    window = slice(days - last, days)
    tot = {a: [sum(x for x, _ in sim["per_day"][a][window]), sum(n for _, n in sim["per_day"][a][window])]
           for a in ARMS}
    comps = {}
    for other in ("random", "fixed"):
        c = compare_rates("open_rate", "optimised", other, *tot["optimised"], *tot[other])
        lo, hi = _ratio_interval(*tot["optimised"], *tot[other])
        comps[other] = {"optimised": c.value, other: c.control_value, "diff": c.diff, "p_value": c.p_value,
                        "relative_lift": c.value / c.control_value - 1, "relative_lift_ci": (lo, hi)}
    oracle = float(np.mean(rate["oracle"][window]))
    marks = [n for n in (1, 7, 14, 28, 56, 84) if n <= days]
    week = {n: (float(np.mean(rate["optimised"][max(0, n - 7):n])), float(np.mean(rate["random"][max(0, n - 7):n])))
            for n in marks}
    return {"daily_open_rate": rate, "last_days": last, "totals": tot, "comparisons": comps,
            "oracle_open_rate": oracle, "learned_within_1h": sim["learned_within_1h"],
            "learning_curve": {n: {"within_1h": sim["learned_within_1h"][n - 1], "open_rate_week": week[n][0],
                                   "random_open_rate_week": week[n][1]} for n in marks}}


def _ratio_interval(x_t: float, n_t: float, x_c: float, n_c: float, z: float = 1.96) -> tuple[float, float]:
    """95% interval of the relative lift (rate ratio - 1), log method."""
    rr = (x_t / n_t) / (x_c / n_c)
    se = np.sqrt(1 / x_t - 1 / n_t + 1 / x_c - 1 / n_c)
    return float(rr * np.exp(-z * se) - 1), float(rr * np.exp(z * se) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=28, help="One push per user per day.")
    ap.add_argument("--drift", type=float, default=0.2, help="Share of users whose routine changes halfway.")
    ap.add_argument("--last", type=int, default=7, help="Days at the end the lift is measured over.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-events", type=float, default=None, help="History needed for a personal hour "
                    "(default: the library's).")
    ap.add_argument("--json", type=Path, default=None, help="Write the numbers here.")
    args = ap.parse_args()
    cfg = SendTimeConfig(window_start=8, window_end=22, **({"min_events": args.min_events} if args.min_events
                                                          is not None else {}))
    sim = simulate(args.users, args.days, args.drift, args.seed, cfg)
    out = summarise(sim, args.days, args.last)
    rate = out["daily_open_rate"]
    print(f"{args.users} users ({sim['arm_sizes']}), one push a day for {args.days} days; "
          f"{args.drift:.0%} change routine on day {args.days // 2 + 1}")
    print(f"{'day':>4} " + " ".join(f"{a:>10}" for a in (*ARMS, "oracle")) + f" {'hour ±1h':>9}")
    for d in range(args.days):
        print(f"{d + 1:>4} " + " ".join(f"{rate[a][d]:>10.3f}" for a in (*ARMS, "oracle"))
              + f" {out['learned_within_1h'][d]:>9.2f}")
    for other, c in out["comparisons"].items():
        lo, hi = c["relative_lift_ci"]
        print(f"last {args.last} days: optimised {c['optimised']:.4f} vs {other} {c[other]:.4f}: "
              f"lift {c['relative_lift']:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}), p = {c['p_value']:.2g}")
    print(f"oracle (every user at their true best hour): {out['oracle_open_rate']:.4f}")
    print("sends per user | optimised users within 1 h of their best hour | open rate, week up to it "
          "(optimised vs random hour)")
    for n, c in out["learning_curve"].items():
        print(f"{n:>14} | {c['within_1h']:>45.0%} | {c['open_rate_week']:.3f} vs {c['random_open_rate_week']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **out}, indent=1))


if __name__ == "__main__":
    main()
