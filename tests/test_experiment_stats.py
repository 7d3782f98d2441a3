"""The statistics engine: Wilson intervals, two-proportion z-tests, Bayesian chance to beat control, the
always-valid confidence sequence (an A/A simulation with 30 daily looks), the sample-ratio check, revenue."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from generator.experiments import stats as st


def test_wilson_interval_matches_the_formula() -> None:
    x, n, z = 12, 100, stats.norm.ppf(0.975)
    p = x / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert st.wilson(x, n) == pytest.approx((centre - half, centre + half), rel=1e-9)
    assert st.wilson(0, 0) == (0.0, 0.0)


def test_two_proportion_z_matches_the_pooled_hand_computation() -> None:
    pooled = (120 + 90) / 2000
    z = (0.12 - 0.09) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    got_z, got_p = st.two_proportion_z(120, 1000, 90, 1000)
    assert got_z == pytest.approx(z) and got_p == pytest.approx(2 * stats.norm.sf(z))
    assert st.two_proportion_z(0, 100, 0, 100) == (0.0, 1.0)


def test_chance_to_beat_matches_numerical_integration_of_the_beta_posteriors() -> None:
    a, b = stats.beta(1 + 30, 1 + 170), stats.beta(1 + 20, 1 + 180)
    exact = integrate.quad(lambda x: a.pdf(x) * b.cdf(x), 0, 1)[0]
    assert st.chance_to_beat(30, 200, 20, 200, draws=200_000, seed=3) == pytest.approx(exact, abs=0.005)
    assert st.chance_to_beat(30, 200, 20, 200, seed=1) == st.chance_to_beat(30, 200, 20, 200, seed=1)
    best = st.prob_best([30, 20, 10], [200, 200, 200], seed=0)
    assert sum(best) == pytest.approx(1.0) and best[0] > 0.85 and best[2] < 0.01


def test_aa_simulation_fixed_horizon_peeking_inflates_false_positives_but_sequential_holds() -> None:
    sim = st.aa_simulation(reps=600, looks=30, users_per_look=200, rate=0.05, seed=7)
    assert sim["fixed_any_look"] > 0.15  # peeking 30 times at a fixed-horizon test: far above 5%
    assert sim["fixed_final_look"] < 0.08  # one planned look is fine
    assert sim["sequential_any_look"] <= 0.05


def test_the_confidence_sequence_detects_a_real_difference() -> None:
    rng = np.random.default_rng(1)
    n = 200 * np.arange(1, 31)
    a = np.cumsum(rng.binomial(200, 0.05, 30))
    b = np.cumsum(rng.binomial(200, 0.08, 30))
    diff, total, s2 = st._diff_and_s2(float(b[-1]), float(n[-1]), float(a[-1]), float(n[-1]))
    low, high = st.sequential_interval(diff, s2, total, tuning=float(2 * n[-1]))
    assert low > 0 and high > low
    p = st.always_valid_p(diff, s2, total, tuning=float(2 * n[-1]))
    assert p < 0.05
    # the always-valid p is exactly where the interval starts to exclude 0
    assert st.sequential_halfwidth(s2, total, p * 1.01, float(2 * n[-1])) < abs(diff)
    assert st.sequential_halfwidth(s2, total, p * 0.99, float(2 * n[-1])) > abs(diff)
    # and it is wider than the fixed-horizon interval at the same alpha
    assert high - low > 2 * 1.96 * math.sqrt(s2 / total)


def test_srm_chi_square_against_the_weights() -> None:
    assert st.srm_test([5000, 5000], [0.5, 0.5]) == pytest.approx(1.0)
    assert st.srm_test([5000, 4600], [0.5, 0.5]) < 0.001 < st.srm_test([5000, 4800], [0.5, 0.5])
    assert st.srm_test([900, 100], [0.9, 0.1]) == pytest.approx(1.0)
    assert st.srm_test([100, 0], [1.0, 0.0]) == 1.0  # one arm with weight: nothing to compare
    counts = {"A": {"assigned": 1000, "sent": 1000, "delivered": 990},
              "B": {"assigned": 1005, "sent": 850, "delivered": 840},
              "holdout": {"assigned": 220, "sent": 0, "delivered": 0}}
    out = st.srm_stages(counts, {"A": 0.45, "B": 0.45, "holdout": 0.1})
    assert not out["assigned"]["alarm"] and out["sent"]["alarm"] and out["delivered"]["alarm"]
    assert out["sent"]["arms"] == ["A", "B"]  # the holdout receives nothing by design


def test_revenue_per_user_compares_means_with_welch_and_the_sequence() -> None:
    rng = np.random.default_rng(0)
    t = rng.exponential(5.0, 3000) * (rng.random(3000) < 0.1)
    c = rng.exponential(5.0, 3000) * (rng.random(3000) < 0.05)
    comp = st.compare_means("revenue_per_user", "A", "holdout", t.sum(), (t**2).sum(), 3000, c.sum(),
                            (c**2).sum(), 3000, tuning=6000)
    welch = stats.ttest_ind(t, c, equal_var=False)
    assert comp.diff == pytest.approx(t.mean() - c.mean())
    assert comp.z == pytest.approx(welch.statistic, rel=1e-9) and comp.p_value < 1e-5
    assert comp.chance_to_beat > 0.99 and comp.seq_ci[0] > 0


def test_analyse_compares_clicks_with_the_first_variant_and_conversions_with_the_holdout() -> None:
    base = {"sent": 0, "delivered": 0, "revenue": 0.0, "revenue_sq": 0.0}
    counts = {"A": {**base, "assigned": 1000, "opened": 200, "clicked": 50, "converted": 20},
              "B": {**base, "assigned": 1000, "opened": 210, "clicked": 80, "converted": 25},
              "holdout": {**base, "assigned": 250, "opened": 0, "clicked": 0, "converted": 3}}
    rows = {(c.metric, c.arm, c.control) for c in st.analyse(counts, "holdout")}
    assert ("click_through", "B", "A") in rows and ("open_rate", "B", "A") in rows
    assert ("conversion", "A", "holdout") in rows and ("conversion", "B", "holdout") in rows
    assert ("revenue_per_user", "B", "holdout") in rows
    assert not any(c == "holdout" and m in ("click_through", "open_rate") for m, _, c in rows)
