"""The statistics of push experiments, on scipy and statsmodels (GrowthBook's ``gbstats`` is the reference for
the methods and defaults; it pins numpy<2, so it is not a dependency).

For each metric (open rate, click-through, conversion: events per user; revenue per user) and each arm against
the control arm:

* **rates with Wilson intervals** (``statsmodels.stats.proportion.proportion_confint(method="wilson")``);
* **fixed-horizon two-proportion z-test** (``proportions_ztest``; Welch's z for revenue): valid for *one* look
  at a sample size fixed in advance;
* **Bayesian chance to beat control**: Beta(1 + x, 1 + n - x) posteriors per arm, P(variant > control) by
  seeded Monte Carlo (normal posterior of the mean difference for revenue);
* **sequential (always-valid) analysis**: the asymptotic confidence sequence of Howard, Ramdas, McAuliffe and
  Sekhon (2021), as GrowthBook uses it: a half-width ``sigma * sqrt(2 (N rho^2 + 1) / (N^2 rho^2) *
  log(sqrt(N rho^2 + 1) / alpha))`` around the difference, with ``rho`` tuned for an expected sample size
  (``tuning``, GrowthBook's default 5,000). It covers the true difference at *every* look simultaneously
  with probability 1 - alpha, so looking every day and stopping when it excludes 0 keeps the false positive
  rate at most alpha; the always-valid p-value is the smallest alpha whose sequence excludes 0;
* **sample-ratio mismatch**: a chi-square goodness-of-fit test of the users per arm against the allocation
  weights at each stage (assigned, sent, delivered); p < 0.001 raises the alarm, since then the arms are no
  longer comparable (a sender failing for one arm, a guardrail dropping one arm's copy, a logging bug).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

SRM_ALPHA = 0.001
DEFAULT_TUNING = 5000.0
RATE_METRICS = {"open_rate": "opened", "click_through": "clicked", "conversion": "converted"}
METRICS = (*RATE_METRICS, "revenue_per_user")


def wilson(x: float, n: float, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion (0, 0 with no trials)."""
    if n <= 0:
        return (0.0, 0.0)
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(int(x), int(n), alpha=alpha, method="wilson")
    return float(lo), float(hi)


def two_proportion_z(x_t: float, n_t: float, x_c: float, n_c: float) -> tuple[float, float]:
    """Pooled two-sided two-proportion z-test: (z, p). (0, 1) when there is nothing to compare."""
    if n_t <= 0 or n_c <= 0 or (x_t + x_c) in (0, n_t + n_c):
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportions_ztest

    z, p = proportions_ztest([int(x_t), int(x_c)], [int(n_t), int(n_c)])
    return float(z), float(p)


def beta_draws(x: float, n: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    return rng.beta(1 + x, 1 + max(n - x, 0), size=draws)


def chance_to_beat(x_t: float, n_t: float, x_c: float, n_c: float, *, draws: int = 50_000,
                   seed: int = 0) -> float:
    """P(rate of the variant > rate of the control) under uniform Beta priors (seeded Monte Carlo)."""
    rng = np.random.default_rng(seed)
    return float(np.mean(beta_draws(x_t, n_t, draws, rng) > beta_draws(x_c, n_c, draws, rng)))


def prob_best(successes: Sequence[float], trials: Sequence[float], *, draws: int = 20_000,
              seed: int = 0) -> list[float]:
    """P(each arm has the highest rate) under Beta(1 + x, 1 + n - x) posteriors: Thompson sampling's weights."""
    rng = np.random.default_rng(seed)
    samples = np.stack([beta_draws(x, n, draws, rng) for x, n in zip(successes, trials, strict=True)])
    best = np.argmax(samples, axis=0)
    return [float(np.mean(best == i)) for i in range(len(successes))]


def sequential_rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """The mixture parameter that makes the confidence sequence tightest at ``tuning`` observations."""
    la = -2 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1)) / tuning)


def sequential_halfwidth(s2: np.ndarray | float, n: np.ndarray | float, alpha: float = 0.05,
                         tuning: float = DEFAULT_TUNING) -> np.ndarray | float:
    """Half-width of the (two-sided) asymptotic confidence sequence for an estimate whose variance is
    ``s2 / n`` after ``n`` observations (Howard et al. 2021, as in GrowthBook's sequential testing)."""
    rho2 = sequential_rho(alpha, tuning) ** 2
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.sqrt(np.asarray(s2, dtype=float)) * np.sqrt(
            2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))
    return width


def _diff_and_s2(x_t: float, n_t: float, x_c: float, n_c: float) -> tuple[float, float, float]:
    """Difference of rates, N = n_t + n_c, and s2 = N * Var(difference) (unpooled)."""
    pt, pc = x_t / n_t, x_c / n_c
    var = pt * (1 - pt) / n_t + pc * (1 - pc) / n_c
    n = n_t + n_c
    return pt - pc, n, var * n


def sequential_interval(diff: float, s2: float, n: float, alpha: float = 0.05,
                        tuning: float = DEFAULT_TUNING) -> tuple[float, float]:
    h = float(sequential_halfwidth(s2, n, alpha, tuning))
    return diff - h, diff + h


def always_valid_p(diff: float, s2: float, n: float, tuning: float = DEFAULT_TUNING) -> float:
    """The smallest alpha at which the confidence sequence excludes 0 (1 when none below 0.999 does)."""
    if s2 <= 0 or n <= 0:
        return 1.0 if diff == 0 else 0.0

    def gap(log_alpha: float) -> float:
        return abs(diff) - float(sequential_halfwidth(s2, n, math.exp(log_alpha), tuning))

    lo, hi = math.log(1e-300), math.log(0.999)
    if gap(hi) <= 0:
        return 1.0
    if gap(lo) > 0:
        return 0.0
    return math.exp(optimize.brentq(gap, lo, hi, xtol=1e-10))


def srm_test(observed: Sequence[float], shares: Sequence[float]) -> float:
    """Chi-square goodness-of-fit p-value of counts per arm against expected shares (arms with share 0 are
    left out; 1.0 when there is nothing to test)."""
    pairs = [(o, s) for o, s in zip(observed, shares, strict=True) if s > 0]
    total = sum(o for o, _ in pairs)
    if len(pairs) < 2 or total == 0:
        return 1.0
    share_sum = sum(s for _, s in pairs)
    expected = [total * s / share_sum for _, s in pairs]
    return float(stats.chisquare([o for o, _ in pairs], expected).pvalue)


@dataclass
class Comparison:
    """One variant arm against the control on one metric."""

    metric: str
    arm: str
    control: str
    value: float
    control_value: float
    ci: tuple[float, float]
    diff: float
    z: float
    p_value: float
    chance_to_beat: float
    seq_ci: tuple[float, float]
    seq_p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_rates(metric: str, arm: str, control: str, x_t: float, n_t: float, x_c: float, n_c: float, *,
                  alpha: float = 0.05, tuning: float = DEFAULT_TUNING, seed: int = 0) -> Comparison:
    value, cvalue = (x_t / n_t if n_t else 0.0), (x_c / n_c if n_c else 0.0)
    z, p = two_proportion_z(x_t, n_t, x_c, n_c)
    if n_t and n_c:
        diff, n, s2 = _diff_and_s2(x_t, n_t, x_c, n_c)
        seq = sequential_interval(diff, s2, n, alpha, tuning)
        seq_p = always_valid_p(diff, s2, n, tuning)
    else:
        diff, seq, seq_p = 0.0, (-1.0, 1.0), 1.0
    return Comparison(metric, arm, control, value, cvalue, wilson(x_t, n_t, alpha), diff, z, p,
                      chance_to_beat(x_t, n_t, x_c, n_c, seed=seed), seq, seq_p)


def compare_means(metric: str, arm: str, control: str, sum_t: float, sq_t: float, n_t: float, sum_c: float,
                  sq_c: float, n_c: float, *, alpha: float = 0.05, tuning: float = DEFAULT_TUNING) -> Comparison:
    """Revenue per user: Welch's z on the mean difference, normal posterior for the chance to beat, the same
    confidence sequence on the difference."""
    def mean_var(total: float, sq: float, n: float) -> tuple[float, float]:
        if n <= 0:
            return 0.0, 0.0
        mean = total / n
        return mean, max(sq / n - mean**2, 0.0) * n / max(n - 1, 1)

    mt, vt = mean_var(sum_t, sq_t, n_t)
    mc, vc = mean_var(sum_c, sq_c, n_c)
    diff = mt - mc
    se2 = (vt / n_t if n_t else 0.0) + (vc / n_c if n_c else 0.0)
    se = math.sqrt(se2)
    z = diff / se if se > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z))) if se > 0 else 1.0
    ci_t = (mt - stats.norm.ppf(1 - alpha / 2) * math.sqrt(vt / n_t), mt + stats.norm.ppf(1 - alpha / 2)
            * math.sqrt(vt / n_t)) if n_t else (0.0, 0.0)
    ctb = float(stats.norm.cdf(z)) if se > 0 else 0.5
    n = n_t + n_c
    if se > 0:
        seq = sequential_interval(diff, se2 * n, n, alpha, tuning)
        seq_p = always_valid_p(diff, se2 * n, n, tuning)
    else:
        seq, seq_p = (diff, diff), 1.0
    return Comparison(metric, arm, control, mt, mc, ci_t, diff, z, p, ctb, seq, seq_p)


def analyse(counts: dict[str, dict[str, float]], control: str, *, variants: Sequence[str] | None = None,
            alpha: float = 0.05, tuning: float = DEFAULT_TUNING, seed: int = 0) -> list[Comparison]:
    """Every variant arm against ``control`` on every metric, per assigned user (intent to treat: users whose
    copy was dropped or deferred stay in their arm's denominator). Open and click metrics need a control that
    receives pushes: against a holdout they compare with zero by construction, so for them the control is the
    first variant arm instead."""
    arms = list(variants or [a for a in counts if a != control])
    out: list[Comparison] = []
    first_variant = next((a for a in counts if a != "holdout"), control)
    for metric, event in RATE_METRICS.items():
        base = first_variant if control == "holdout" and event in ("opened", "clicked") else control
        for i, arm in enumerate(arms):
            if arm == base or (base != control and arm == "holdout"):
                continue
            c, t = counts[base], counts[arm]
            out.append(compare_rates(metric, arm, base, t[event], t["assigned"], c[event], c["assigned"],
                                     alpha=alpha, tuning=tuning, seed=seed + i))
    for arm in arms:
        if arm == control:
            continue
        c, t = counts[control], counts[arm]
        out.append(compare_means("revenue_per_user", arm, control, t["revenue"], t["revenue_sq"], t["assigned"],
                                 c["revenue"], c["revenue_sq"], c["assigned"], alpha=alpha, tuning=tuning))
    return out


def srm_stages(counts: dict[str, dict[str, float]], shares: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The sample-ratio check at each stage: ``assigned`` (every arm), ``sent`` and ``delivered`` (the arms
    that receive pushes, i.e. not the holdout, with the weights renormalised)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in ("assigned", "sent", "delivered"):
        names = [a for a in counts if stage == "assigned" or a != "holdout"]
        observed = [counts[a][stage] for a in names]
        p = srm_test(observed, [shares.get(a, 0.0) for a in names])
        out[stage] = {"arms": names, "observed": observed, "p_value": p, "alarm": p < SRM_ALPHA}
    return out


def aa_simulation(*, reps: int = 1000, looks: int = 30, users_per_look: int = 200, rate: float = 0.05,
                  alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """A/A simulation: two arms with the same true ``rate``; ``users_per_look`` new users per arm per daily look.
    At each look the fixed-horizon z-test and the confidence sequence are checked on the cumulative data; a
    replicate is a false positive if *any* look declares a difference. Returns the false-positive shares of
    both (and of the fixed-horizon test at its single planned final look)."""
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.binomial(users_per_look, rate, size=(reps, looks)), axis=1).astype(float)
    b = np.cumsum(rng.binomial(users_per_look, rate, size=(reps, looks)), axis=1).astype(float)
    n = users_per_look * np.arange(1, looks + 1, dtype=float)
    pa, pb = a / n, b / n
    pooled = (a + b) / (2 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (pa - pb) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    fixed_sig = np.nan_to_num(np.abs(z)) > stats.norm.ppf(1 - alpha / 2)
    var = pa * (1 - pa) / n + pb * (1 - pb) / n
    total = 2 * n
    half = sequential_halfwidth(var * total, total, alpha, tuning=float(total[-1]))
    seq_sig = np.abs(pa - pb) > np.nan_to_num(half, nan=np.inf)
    return {"reps": reps, "looks": looks, "users_per_look": users_per_look, "rate": rate, "alpha": alpha,
            "fixed_any_look": float(fixed_sig.any(axis=1).mean()),
            "fixed_final_look": float(fixed_sig[:, -1].mean()),
            "sequential_any_look": float(seq_sig.any(axis=1).mean())}
