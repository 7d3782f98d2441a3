"""Validate the experiment statistics on real A/B tests (the Upworthy Research Archive) and on simulated A/A tests.

    .venv/bin/python scripts/validate_experiments.py ../shared/data/upworthy/upworthy_dev.csv --json out/validate.json

Upworthy: every ``test_id`` is one randomised test; each package (row) is an arm with its impressions and clicks.
Tests from the weeks with randomisation problems (``test_week`` 201326-201402, per the data's README) are left
out of the main figures and reported apart. Three decision rules are applied to each test's final counts:

* ``fixed``: the arm with the highest click rate wins when a two-proportion z-test against every other arm
  gives p < 0.05 after Holm's correction (a fixed-horizon test at its one planned look);
* ``bayes``: the arm with the highest posterior probability of being best wins when that is > 0.95;
* ``sequential``: the rule of ``pushgen experiment report`` (always-valid 95% interval against every other arm
  above 0; tuning = the test's impressions), safe to apply at every daily look.

For each rule: how often it declares a winner, and how often that winner is the editors' pick (``winner``
column; tests with exactly one pick). Baselines: the highest observed click rate regardless of significance,
and chance (1 / arms).

A/A: :func:`generator.experiments.stats.aa_simulation` with 30 daily looks: the share of A/A tests that the
fixed-horizon
test (checked at every look) and the confidence sequence declare different at some look.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.experiments.report import pick_winner  # noqa: E402
from generator.experiments.stats import aa_simulation, prob_best, two_proportion_z  # noqa: E402

FLAWED_WEEKS = (201326, 201402)
console = Console()


def load_tests(path: Path) -> dict[str, list[dict]]:
    tests: dict[str, list[dict]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tests[row["test_id"]].append({"week": int(row["test_week"]), "impressions": int(row["impressions"]),
                                          "clicks": int(row["clicks"]), "winner": row["winner"] == "True"})
    return tests


def holm_fixed_winner(arms: list[dict], alpha: float = 0.05) -> int | None:
    rates = [a["clicks"] / a["impressions"] for a in arms]
    best = max(range(len(arms)), key=lambda i: rates[i])
    ps = sorted(two_proportion_z(arms[best]["clicks"], arms[best]["impressions"], a["clicks"], a["impressions"])[1]
                for i, a in enumerate(arms) if i != best)
    m = len(ps)
    if all(p < alpha / (m - k) for k, p in enumerate(ps)):
        return best
    return None


def evaluate(tests: dict[str, list[dict]], seed: int = 0) -> dict:
    rules = ("fixed", "bayes", "sequential", "highest_rate")
    declared = dict.fromkeys(rules, 0)
    declared_with_pick = dict.fromkeys(rules, 0)
    agree = dict.fromkeys(rules, 0)
    with_pick = 0
    chance = 0.0
    for n, (_, arms) in enumerate(sorted(tests.items())):
        arms = [a for a in arms if a["impressions"] > 0]
        if len(arms) < 2:
            continue
        picks = [i for i, a in enumerate(arms) if a["winner"]]
        pick = picks[0] if len(picks) == 1 else None
        with_pick += pick is not None
        chance += 1 / len(arms) if pick is not None else 0
        names = [f"arm{i}" for i in range(len(arms))]
        counts = {nm: {"assigned": a["impressions"], "clicked": a["clicks"]} for nm, a in zip(names, arms, strict=True)}
        total = sum(a["impressions"] for a in arms)
        seq = pick_winner(counts, tuning=float(total))["winner"]
        pb = prob_best([a["clicks"] for a in arms], [a["impressions"] for a in arms], draws=20_000, seed=seed + n)
        verdicts = {
            "fixed": holm_fixed_winner(arms),
            "bayes": max(range(len(arms)), key=lambda i: pb[i]) if max(pb) > 0.95 else None,
            "sequential": names.index(seq) if seq else None,
            "highest_rate": max(range(len(arms)), key=lambda i: arms[i]["clicks"] / arms[i]["impressions"]),
        }
        for rule, v in verdicts.items():
            if v is None:
                continue
            declared[rule] += 1
            if pick is not None:
                declared_with_pick[rule] += 1
                agree[rule] += v == pick
    n_tests = sum(1 for arms in tests.values() if len([a for a in arms if a["impressions"] > 0]) >= 2)
    out = {"tests": n_tests, "tests_with_one_pick": with_pick,
           "chance_agreement": round(chance / with_pick, 4) if with_pick else None, "rules": {}}
    for rule in rules:
        out["rules"][rule] = {
            "declared": declared[rule], "declared_share": round(declared[rule] / n_tests, 4) if n_tests else 0,
            "declared_in_tests_with_pick": declared_with_pick[rule], "agree_with_editors": agree[rule],
            "agreement_when_declared": round(agree[rule] / declared_with_pick[rule], 4)
            if declared_with_pick[rule] else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", type=Path, help="upworthy_dev.csv (test_id, test_week, headline, eyecatcher_id, "
                                           "impressions, clicks, winner)")
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    ap.add_argument("--aa-reps", type=int, default=2000)
    args = ap.parse_args(argv)
    tests = load_tests(args.csv)
    clean = {t: a for t, a in tests.items() if not FLAWED_WEEKS[0] <= a[0]["week"] <= FLAWED_WEEKS[1]}
    flawed = {t: a for t, a in tests.items() if t not in clean}
    results = {"data": str(args.csv), "clean": evaluate(clean), "flawed_weeks": evaluate(flawed),
               "excluded_weeks": list(FLAWED_WEEKS)}
    results["aa"] = aa_simulation(reps=args.aa_reps, looks=30, users_per_look=200, rate=0.05, seed=0)

    for part in ("clean", "flawed_weeks"):
        r = results[part]
        table = Table(title=f"Upworthy {part.replace('_', ' ')}: {r['tests']} tests, {r['tests_with_one_pick']} "
                            f"with one editors' pick (chance agreement {r['chance_agreement']})")
        for col in ("rule", "winner declared", "share", "declared where editors picked one", "= editors' pick",
                    "agreement"):
            table.add_column(col, justify="right")
        for rule, v in r["rules"].items():
            table.add_row(rule, str(v["declared"]), f"{v['declared_share']:.1%}",
                          str(v["declared_in_tests_with_pick"]), str(v["agree_with_editors"]),
                          "n/a" if v["agreement_when_declared"] is None else f"{v['agreement_when_declared']:.1%}")
        console.print(table)
    aa = results["aa"]
    console.print(f"A/A, {aa['reps']} simulated tests, 30 daily looks of {aa['users_per_look']} users per arm, "
                  f"rate {aa['rate']}: false positives fixed-horizon at any look {aa['fixed_any_look']:.1%}, "
                  f"fixed-horizon at the final look only {aa['fixed_final_look']:.1%}, sequential at any look "
                  f"{aa['sequential_any_look']:.1%}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
