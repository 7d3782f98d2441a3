"""scripts/validate_experiments.py on a small Upworthy-shaped file (the real archive is not needed): flawed weeks
are set apart, and declared winners are compared with the editors' picks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = "test_id,test_week,headline,eyecatcher_id,impressions,clicks,winner\n"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("validate_experiments", REPO / "scripts" / "validate_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_validation_counts_declared_winners_and_agreement_and_sets_flawed_weeks_apart(tmp_path: Path) -> None:
    rows = [
        # a clear winner that the editors picked too
        ("t1", 201450, "A", 5000, 100, False), ("t1", 201450, "B", 5000, 300, True),
        # a clear winner the editors did not pick
        ("t2", 201450, "A", 5000, 400, False), ("t2", 201450, "B", 5000, 100, True),
        # a tie: nobody should declare a winner
        ("t3", 201451, "A", 3000, 90, False), ("t3", 201451, "B", 3000, 91, False),
        # a flawed week (randomisation problems): reported apart
        ("t4", 201330, "A", 5000, 100, False), ("t4", 201330, "B", 5000, 300, True),
    ]
    csv = tmp_path / "upworthy.csv"
    csv.write_text(HEADER + "".join(f"{t},{w},{h},e{h},{n},{c},{win}\n" for t, w, h, n, c, win in rows))
    out = tmp_path / "v.json"
    assert _script().main([str(csv), "--json", str(out), "--aa-reps", "200"]) == 0
    res = json.loads(out.read_text())
    clean, flawed = res["clean"], res["flawed_weeks"]
    assert clean["tests"] == 3 and flawed["tests"] == 1 and clean["tests_with_one_pick"] == 2
    for rule in ("fixed", "bayes", "sequential"):
        assert clean["rules"][rule]["declared"] == 2  # t1 and t2, never the tie
        assert clean["rules"][rule]["agree_with_editors"] == 1
        assert clean["rules"][rule]["agreement_when_declared"] == 0.5
    assert clean["rules"]["highest_rate"]["declared"] == 3
    assert res["aa"]["fixed_any_look"] > res["aa"]["sequential_any_look"]
