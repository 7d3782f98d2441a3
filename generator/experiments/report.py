"""Experiment results: a summary (counts per stage, comparisons, sample-ratio checks, the winner rule) and a
report folder with PNG plots of the rates over time (matplotlib) and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from generator.db.store import Store
from generator.db.tables import utcnow
from generator.experiments import ab as ex
from generator.experiments import holdout, sendtime
from generator.experiments.stats import RATE_METRICS, analyse, compare_rates, prob_best, srm_stages

PRIMARY = "click_through"


def pick_winner(counts: dict[str, dict[str, float]], *, metric: str = PRIMARY, alpha: float = 0.05,
                tuning: float = 5000.0, srm_alarm: bool = False) -> dict[str, Any]:
    """The winner rule: the variant arm with the highest ``metric`` rate per assigned user wins when its
    always-valid (sequential) interval against *every* other variant arm lies above 0, and no stage raised a
    sample-ratio alarm. Safe to apply at every daily look."""
    event = RATE_METRICS[metric]
    variants = [a for a in counts if a != ex.HOLDOUT]
    if srm_alarm:
        return {"winner": None, "reason": "sample-ratio mismatch: the arms are not comparable"}
    if len(variants) < 2:
        return {"winner": None, "reason": "fewer than two variant arms"}
    rate = {a: counts[a][event] / counts[a]["assigned"] if counts[a]["assigned"] else 0.0 for a in variants}
    best = max(variants, key=lambda a: rate[a])
    worst_lower = min(
        compare_rates(metric, best, other, counts[best][event], counts[best]["assigned"], counts[other][event],
                      counts[other]["assigned"], alpha=alpha, tuning=tuning).seq_ci[0]
        for other in variants if other != best)
    if worst_lower > 0:
        return {"winner": best, "reason": f"{best} has the highest {metric} and its always-valid "
                                          f"{1 - alpha:.0%} interval against every other arm is above 0"}
    return {"winner": None, "reason": f"no arm is better than every other yet ({best} leads); keep collecting"}


def summary(store: Store, experiment_id: str, *, until: datetime | None = None, alpha: float = 0.05,
            tuning: float | None = None) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data."""
    exp = ex.get_experiment(store, experiment_id)
    arm_rows = ex.arms(store, experiment_id)
    counts = ex.arm_counts(store, experiment_id, until)
    names = [a.name for a in arm_rows]
    shares = dict(zip(names, ex.expected_shares(store, experiment_id, names), strict=True))
    if not any(shares.values()):
        shares = dict(exp.phases[-1]["weights"])
    srm = srm_stages(counts, shares)
    total = sum(c["assigned"] for c in counts.values())
    tuning = tuning or float(exp.params.get("tuning") or max(total, 1000))
    comparisons = analyse(counts, exp.control, alpha=alpha, tuning=tuning, seed=int(exp.params.get("seed", 0)))
    variants = [a for a in names if a != ex.HOLDOUT]
    best = prob_best([counts[a]["clicked"] for a in variants], [counts[a]["assigned"] for a in variants],
                     seed=int(exp.params.get("seed", 0))) if variants else []
    statuses: dict[str, dict[str, int]] = {}
    for s in ex.sends(store, experiment_id):
        statuses.setdefault(s.arm, {}).setdefault(s.status, 0)
        statuses[s.arm][s.status] += 1
    adapters: dict[str, list[str]] = {}
    for s in ex.sends(store, experiment_id):
        if s.adapter and s.adapter not in adapters.setdefault(s.arm, []):
            adapters[s.arm].append(s.adapter)
    return {
        "experiment": {"id": exp.id, "name": exp.name, "job_id": exp.job_id, "status": exp.status,
                       "allocation": exp.allocation, "control": exp.control, "winner": exp.winner,
                       "started_at": exp.started_at.isoformat() if exp.started_at else None,
                       "phases": exp.phases},
        "arms": [{"name": a.name, "variant": a.variant, "weight": shares[a.name],
                  "adapters": adapters.get(a.name, []), "send_status": statuses.get(a.name, {}),
                  **counts[a.name]} for a in arm_rows],
        "prob_best_click_through": dict(zip(variants, best, strict=True)),
        "comparisons": [c.to_dict() for c in comparisons],
        "srm": srm,
        "decision": pick_winner(counts, alpha=alpha, tuning=tuning,
                                srm_alarm=any(v["alarm"] for v in srm.values())),
        "alpha": alpha, "tuning": tuning,
        **_campaign_sections(store, experiment_id, alpha),
    }


def _campaign_sections(store: Store, experiment_id: str, alpha: float) -> dict[str, Any]:
    """The send-time arms (:mod:`generator.experiments.sendtime`) and the brand's global control
    (:mod:`generator.experiments.holdout`)."""
    return {"send_time": sendtime.report(store, experiment_id, alpha),
            "global_control": holdout.experiment_uplift(store, experiment_id, alpha)}


def daily_series(store: Store, experiment_id: str, *, days: int | None = None,
                 now: datetime | None = None) -> list[dict[str, Any]]:
    """Cumulative counts per arm at the end of each day since the experiment started (the daily looks)."""
    exp = ex.get_experiment(store, experiment_id)
    start = exp.started_at or exp.created_at
    now = now or utcnow()
    if start.tzinfo is None:
        start = start.replace(tzinfo=now.tzinfo)
    n_days = days or max(1, (now - start).days + 1)
    out = []
    for d in range(n_days):
        until = min(start + timedelta(days=d + 1), now)
        out.append({"day": d + 1, "until": until.isoformat(), "counts": ex.arm_counts(store, experiment_id, until)})
        if until >= now:
            break
    return out


def _plot(series: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    days = [s["day"] for s in series]
    arms = list(series[0]["counts"]) if series else []
    for ax, (metric, event) in zip(axes, RATE_METRICS.items(), strict=True):
        for arm in arms:
            rates = [s["counts"][arm][event] / s["counts"][arm]["assigned"] if s["counts"][arm]["assigned"] else 0
                     for s in series]
            ax.plot(days, [100 * r for r in rates], marker="o", label=arm)
        ax.set_title(f"{metric.replace('_', ' ')} (cumulative, % of assigned)")
        ax.set_xlabel("day")
        ax.grid(alpha=0.3)
    if arms:
        axes[0].legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_sequential(store: Store, experiment_id: str, series: list[dict[str, Any]], path: Path,
                     tuning: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
    arms = [a for a in (series[0]["counts"] if series else {}) if a != ex.HOLDOUT]
    if len(arms) >= 2:
        base = arms[0]
        for arm in arms[1:]:
            mids, lows, highs = [], [], []
            for s in series:
                c = s["counts"]
                comp = compare_rates(PRIMARY, arm, base, c[arm]["clicked"], c[arm]["assigned"], c[base]["clicked"],
                                     c[base]["assigned"], tuning=tuning)
                mids.append(100 * comp.diff)
                lows.append(100 * comp.seq_ci[0])
                highs.append(100 * comp.seq_ci[1])
            days = [s["day"] for s in series]
            ax.plot(days, mids, marker="o", label=f"{arm} - {base}")
            ax.fill_between(days, lows, highs, alpha=0.2)
        ax.axhline(0, color="black", lw=0.8)
    ax.set_title("click-through difference with the always-valid 95% interval (points)")
    ax.set_xlabel("day")
    ax.legend() if len(arms) >= 2 else None
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(store: Store, experiment_id: str, out: str | Path, *, now: datetime | None = None,
                 days: int | None = None) -> dict[str, Path]:
    """Write ``summary.json``, ``rates.png``, ``sequential.png`` and ``report.html`` (self-contained) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = summary(store, experiment_id)
    series = daily_series(store, experiment_id, days=days, now=now)
    files = {"summary": out / "summary.json", "rates": out / "rates.png", "sequential": out / "sequential.png",
             "html": out / "report.html"}
    files["summary"].write_text(json.dumps({**data, "daily": series}, indent=2, default=str))
    _plot(series, files["rates"])
    _plot_sequential(store, experiment_id, series, files["sequential"], data["tuning"])
    files["html"].write_text(render_html(data, files["rates"], files["sequential"]), encoding="utf-8")
    return files


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _per_arm(stage: dict[str, Any]) -> str:
    return ", ".join(f"{a}: {int(o)}" for a, o in zip(stage["arms"], stage["observed"], strict=True))


def render_html(data: dict[str, Any], rates_png: Path, seq_png: Path) -> str:
    e = html.escape
    exp = data["experiment"]
    rows = "".join(
        f"<tr><td>{e(a['name'])}</td><td>{'holdout' if a['variant'] is None else a['variant']}</td>"
        f"<td>{a['weight']:.3f}</td><td>{a['assigned']}</td><td>{a['sent']}</td><td>{a['delivered']}</td>"
        f"<td>{a['opened']}</td><td>{a['clicked']}</td><td>{a['converted']}</td><td>{a['revenue']:.2f}</td>"
        f"<td>{e(', '.join(a['adapters']) or '-')}</td>"
        f"<td>{e(', '.join(f'{k}: {v}' for k, v in sorted(a['send_status'].items())))}</td></tr>"
        for a in data["arms"])
    comps = "".join(
        f"<tr><td>{e(c['metric'])}</td><td>{e(c['arm'])} vs {e(c['control'])}</td><td>{c['value']:.4f}</td>"
        f"<td>{c['ci'][0]:.4f}–{c['ci'][1]:.4f}</td><td>{c['control_value']:.4f}</td><td>{c['diff']:+.4f}</td>"
        f"<td>{c['p_value']:.4f}</td><td>{c['chance_to_beat']:.3f}</td>"
        f"<td>{c['seq_ci'][0]:+.4f}–{c['seq_ci'][1]:+.4f}</td><td>{c['seq_p_value']:.4f}</td></tr>"
        for c in data["comparisons"])
    srm = "".join(
        f"<tr><td>{e(stage)}</td><td>{e(_per_arm(v))}</td>"
        f"<td>{v['p_value']:.4g}</td><td>{'ALARM' if v['alarm'] else 'ok'}</td></tr>"
        for stage, v in data["srm"].items())
    decision = data["decision"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {e(exp['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}img{{max-width:100%}}
.win{{font-size:1.2em;padding:.5em;background:#eef7ee;border:1px solid #9c9}}</style></head><body>
<h1>Experiment {e(exp['name'])}</h1>
<p>id {e(exp['id'])} · job {e(str(exp['job_id']))} · {e(exp['status'])} · allocation {e(exp['allocation'])} ·
control {e(exp['control'])} · started {e(str(exp['started_at']))}</p>
<p class="win">Decision: <b>{e(str(decision['winner'] or 'no winner yet'))}</b> — {e(decision['reason'])}</p>
<h2>Arms</h2><table><tr><th>arm</th><th>variant</th><th>weight</th><th>assigned</th><th>sent</th><th>delivered</th>
<th>opened</th><th>clicked</th><th>converted</th><th>revenue</th><th>adapter</th><th>send status</th></tr>{rows}</table>
<h2>Comparisons</h2><p>Rates per assigned user (intent to treat). Fixed-horizon p is valid for one planned look only;
the always-valid interval and p (confidence sequence, tuning {data['tuning']:.0f}) hold at every look.</p>
<table><tr><th>metric</th><th>arms</th><th>rate</th><th>Wilson 95%</th><th>control</th><th>diff</th><th>z-test p</th>
<th>chance to beat</th><th>always-valid 95%</th><th>always-valid p</th></tr>{comps}</table>
<h2>Sample-ratio checks</h2><p>Chi-square against the allocation weights; alarm at p &lt; 0.001.</p>
<table><tr><th>stage</th><th>users per arm</th><th>p</th><th>verdict</th></tr>{srm}</table>
<h2>Rates over time</h2>{_img(rates_png)}{_img(seq_png)}
{_campaign_html(data)}
</body></html>
"""


def _campaign_html(data: dict[str, Any]) -> str:
    """The send-time arms and the global control's uplift, when the experiment has them."""
    e, out = html.escape, []
    if data.get("send_time"):
        rows = "".join(f"<tr><td>{e(t)}</td><td>{a['planned']}</td><td>{a['sent']}</td><td>{a['opened']}</td>"
                       f"<td>{a['clicked']}</td></tr>" for t, a in data["send_time"]["arms"].items())
        comps = "".join(f"<tr><td>{e(c['metric'])}</td><td>{c['value']:.4f}</td><td>{c['control_value']:.4f}</td>"
                        f"<td>{c['diff']:+.4f}</td><td>{c['p_value']:.4f}</td></tr>"
                        for c in data["send_time"]["comparisons"])
        out.append("<h2>Send time</h2><p>Per planned user: each user's best hour against a random allowed hour."
                   "</p><table><tr><th>timing</th><th>planned</th><th>sent</th><th>opened</th><th>clicked</th></tr>"
                   f"{rows}</table><table><tr><th>metric</th><th>optimised</th><th>random hour</th><th>diff</th>"
                   f"<th>z-test p</th></tr>{comps}</table>")
    if data.get("global_control"):
        g = data["global_control"]
        rows = "".join(f"<tr><td>{e(m['metric'])}</td><td>{m['sent']:.4f}</td><td>{m['global_control']:.4f}</td>"
                       f"<td>{m['diff']:+.4f}</td><td>{m['diff_ci'][0]:+.4f}–{m['diff_ci'][1]:+.4f}</td>"
                       f"<td>{m['p_value']:.4f}</td></tr>" for m in g["metrics"])
        out.append(f"<h2>Global control</h2><p>Users who could get the push ({g['users']['sent']}) against the "
                   f"brand's global control group ({g['users']['global_control']}), per user.</p><table><tr>"
                   "<th>metric</th><th>sent</th><th>global control</th><th>diff</th><th>95% interval</th>"
                   f"<th>p</th></tr>{rows}</table>")
    return "".join(out)
