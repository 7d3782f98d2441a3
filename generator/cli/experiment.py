"""``pushgen experiment ...`` and ``pushgen loop``: thin over :mod:`generator.experiments.ab`,
:mod:`generator.experiments.report` and :mod:`generator.learning`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from generator.core.errors import PushgenError

experiment_app = typer.Typer(help="A/B push experiments: create, assign, send, ingest outcomes, report.",
                             no_args_is_help=True)
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 150)


def _store():  # type: ignore[no-untyped-def]
    from generator.db.store import Store

    return Store()


@experiment_app.command("create")
def create_cmd(
    job: Annotated[str, typer.Option(help="The job whose approved variants are tested.")],
    name: Annotated[str | None, typer.Option(help="A name for the experiment.")] = None,
    holdout: Annotated[float, typer.Option(help="Share of users in the holdout (no push); 0: none.")] = 0.1,
    weights: Annotated[str | None, typer.Option(help="Comma-separated weights, one per variant arm then the "
                                                     "holdout's (default: equal shares).")] = None,
    variants: Annotated[str | None, typer.Option(help="Comma-separated variant numbers (default: approved).")] = None,
    allocation: Annotated[str, typer.Option(help="fixed, or thompson (weights move by `rebalance`).")] = "fixed",
    frequency_cap: Annotated[int, typer.Option(help="Pushes per user per window, over all experiments.")] = 1,
    cap_hours: Annotated[float, typer.Option(help="The frequency cap's window in hours.")] = 24.0,
    quiet: Annotated[str, typer.Option(help="Quiet hours START-END in the user's time zone ('0-0': none).")] = "21-8",
    salt: Annotated[str | None, typer.Option(help="Assignment salt (default: random).")] = None,
) -> None:
    """Create an experiment over a job's variants (weights are fixed once the first user is assigned)."""
    from generator.experiments.ab import SendRules, arms, create_experiment

    start, end = (int(x) for x in quiet.split("-"))
    exp = create_experiment(
        _store(), job, name=name, holdout=holdout, salt=salt, allocation=allocation,
        weights=[float(w) for w in weights.split(",")] if weights else None,
        variants=[int(v) for v in variants.split(",")] if variants else None,
        rules=SendRules(frequency_cap=frequency_cap, cap_window_hours=cap_hours, quiet_start=start, quiet_end=end))
    console.print(f"experiment [bold]{exp.id}[/] ({exp.name}); arms: "
                  + ", ".join(f"{a.name}={a.weight:.3f}" for a in arms(_store(), exp.id)))
    console.print(exp.id, highlight=False)


@experiment_app.command("assign")
def assign_cmd(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    users: Annotated[str | None, typer.Option(help="Comma-separated user ids (default: the job's users).")] = None,
) -> None:
    """Assign users to arms (stored before anything is sent; a user keeps their arm)."""
    from collections import Counter

    from generator.db.messages import list_messages
    from generator.experiments.ab import assign, get_experiment

    store = _store()
    if users:
        ids = users.split(",")
    else:
        exp = get_experiment(store, experiment)
        ids = sorted({m.user_id for m in list_messages(store, exp.job_id)}) if exp.job_id else []
    got = assign(store, experiment, ids)
    console.print(f"{len(got)} users assigned: " + ", ".join(f"{a}: {n}" for a, n in sorted(Counter(
        got.values()).items())))


@experiment_app.command("send")
def send_cmd(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    provider: Annotated[str, typer.Option(help="fcm, apns, webhook or dry-run (settings: PUSHGEN_FCM_*, "
                                                "PUSHGEN_APNS_*, PUSHGEN_WEBHOOK_*)")] = "dry-run",
    rate: Annotated[float | None, typer.Option(help="Most sends per second (token bucket).")] = None,
    attempts: Annotated[int, typer.Option(help="Attempts per push on 429/5xx (backoff with jitter).")] = 5,
    dry_run_out: Annotated[Path | None, typer.Option(help="dry-run: append the pushes to this JSONL "
                                                     "(default: PUSHGEN_DRY_RUN_OUT).")] = None,
) -> None:
    """Send the experiment's pushes to assigned users without a final send (safe to run again)."""
    from generator.experiments.ab import send
    from workers.senders.registry import make_sender

    sender = make_sender(provider, rate_limit=rate, max_attempts=attempts, dry_run_out=dry_run_out)
    try:
        counts = send(_store(), experiment, sender)
    finally:
        sender.close()
    console.print("sends: " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none to do"))


@experiment_app.command("ingest")
def ingest_cmd(experiment: Annotated[str, typer.Argument(help="Experiment id (for events naming a user).")],
               events: Annotated[Path, typer.Option(help="JSONL of outcome events (the POST /v1/events shape).")],
               ) -> None:
    """Store outcome events from a file (idempotent by event id), like ``POST /v1/events``."""
    from generator.experiments.ab import record_events

    rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    for r in rows:
        r.setdefault("experiment_id", experiment)
    console.print(record_events(_store(), rows))


@experiment_app.command("report")
def report_cmd(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[Path, typer.Option(help="Folder for report.html, rates.png, sequential.png, summary.json.")]
    = Path("out/experiment"),
) -> None:
    """Per-arm rates with intervals, tests against control, chance to beat, always-valid intervals, SRM
    checks, plots over time, and the winner rule's decision."""
    from generator.experiments.report import write_report

    files = write_report(_store(), experiment, out)
    data = json.loads(files["summary"].read_text())
    print_summary(data)
    console.print(f"wrote {files['html']}, {files['rates']}, {files['sequential']}, {files['summary']}")


def print_summary(data: dict) -> None:  # type: ignore[type-arg]
    table = Table(title=f"experiment {data['experiment']['name']}")
    for col in ("arm", "weight", "assigned", "sent", "delivered", "opened", "clicked", "converted", "revenue"):
        table.add_column(col, justify="right")
    for a in data["arms"]:
        table.add_row(a["name"], f"{a['weight']:.3f}", *(str(a[k]) for k in ("assigned", "sent", "delivered",
                                                                             "opened", "clicked", "converted")),
                      f"{a['revenue']:.2f}")
    console.print(table)
    comp = Table(title="against control (rates per assigned user)")
    for col in ("metric", "arms", "rate", "Wilson 95%", "diff", "z-test p", "P(beat)", "always-valid 95%",
                "always-valid p"):
        comp.add_column(col, justify="right")
    for c in data["comparisons"]:
        comp.add_row(c["metric"], f"{c['arm']} vs {c['control']}", f"{c['value']:.4f}",
                     f"{c['ci'][0]:.4f}-{c['ci'][1]:.4f}", f"{c['diff']:+.4f}", f"{c['p_value']:.4f}",
                     f"{c['chance_to_beat']:.3f}", f"{c['seq_ci'][0]:+.4f}..{c['seq_ci'][1]:+.4f}",
                     f"{c['seq_p_value']:.4f}")
    console.print(comp)
    for stage, v in data["srm"].items():
        console.print(f"SRM {stage}: p = {v['p_value']:.4g} {'[bold red]ALARM[/]' if v['alarm'] else 'ok'}")
    d = data["decision"]
    console.print(f"decision: [bold]{d['winner'] or 'no winner yet'}[/] ({d['reason']})")


@experiment_app.command("stop")
def stop_cmd(experiment: Annotated[str, typer.Argument(help="Experiment id.")],
             winner: Annotated[str | None, typer.Option(help="Record this arm as the winner "
                                                             "(default: what the winner rule says).")] = None) -> None:
    """Stop an experiment and record its winner (the learning loop trains on the winner's copy)."""
    from generator.experiments.ab import stop
    from generator.experiments.report import summary

    store = _store()
    if winner is None:
        winner = summary(store, experiment)["decision"]["winner"]
    exp = stop(store, experiment, winner)
    console.print(f"stopped {exp.id}; winner: {exp.winner or 'none'}")


@experiment_app.command("rebalance")
def rebalance_cmd(experiment: Annotated[str, typer.Argument(help="Experiment id (allocation thompson).")],
                  metric: Annotated[str, typer.Option(help="opened, clicked or converted.")] = "clicked") -> None:
    """Thompson sampling: shift the weights of later assignments toward the arms likely to be best."""
    from generator.experiments.ab import rebalance

    console.print(rebalance(_store(), experiment, metric=metric))


@experiment_app.command("list")
def list_cmd() -> None:
    """Experiments, newest first."""
    from generator.experiments.ab import list_experiments

    table = Table("name", "job", "status", "allocation", "winner", "created")
    table.add_column("id", no_wrap=True, min_width=36)
    for e in list_experiments(_store()):
        table.add_row(e.name, (e.job_id or "")[:8], e.status, e.allocation, e.winner or "",
                      e.created_at.isoformat(timespec="seconds"), e.id)
    console.print(table)


def loop_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the gathered files.")] = Path("out/loop"),
    pushes: Annotated[Path | None, typer.Option(help="The brand's past pushes, added for the click-through "
                                                     "model.")] = None,
    items: Annotated[Path | None, typer.Option(help="Items table for the adapter's prompts.")] = None,
    adapter_base: Annotated[str, typer.Option(help="Adapter versions are <base>-v1, -v2, ...")] = "loop",
    base_model: Annotated[str | None, typer.Option(help="Base model of the adapter (default: the trainer's).")]
    = None,
    max_steps: Annotated[int, typer.Option(help="Cap on adapter optimizer steps (0: none).")] = 0,
    no_ctr: Annotated[bool, typer.Option("--no-ctr", help="Do not refresh the click-through model.")] = False,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Do not train an adapter.")] = False,
) -> None:
    """One pass of the learning loop: gather outcomes and reviewers' decisions, refresh the click-through model,
    train the next adapter version from the winners, and record the run."""
    from generator.learning import LoopConfig, run_loop
    from generator.tune.train import LoraTrainConfig

    adapter_cfg = LoraTrainConfig(**({"base": base_model} if base_model else {}), max_steps=max_steps)
    run = run_loop(_store(), LoopConfig(out_dir=out, base_pushes=pushes, items=items, adapter_base=adapter_base,
                                        train_ctr=not no_ctr, train_adapter=not no_adapter,
                                        adapter_config=adapter_cfg, report=console.print))
    console.print_json(json.dumps({"run": run.id, "status": run.status, "adapter": run.adapter,
                                   "ctr_model": run.ctr_model, "counts": run.counts, "error": run.error}))
    if run.status != "done":
        raise PushgenError(f"the learning loop failed: {run.error}")
