"""``pushgen experiment schedule`` (per-user send times, :mod:`generator.experiments.sendtime`) and
``pushgen control ...``
(per-brand global control groups and their uplift, :mod:`generator.experiments.holdout`). Thin over those modules."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from generator.core.errors import PushgenError

control_app = typer.Typer(help="Global control groups: brand users who get no campaign push; their uplift.",
                          no_args_is_help=True)
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 150)


def _store():  # type: ignore[no-untyped-def]
    from generator.db.store import Store

    return Store()


def _hours(text: str, name: str) -> tuple[int, int]:
    try:
        start, end = (int(x) for x in text.split("-"))
    except ValueError:
        raise PushgenError(f"{name}: {text!r} is not START-END in hours, e.g. 9-21") from None
    return start, end


def schedule_cmd(
    experiment: Annotated[str, typer.Argument(help="Experiment id.")],
    window: Annotated[str, typer.Option(help="Allowed local hours START-END (END excluded); quiet hours still "
                                             "apply.")] = "9-21",
    fallback_hour: Annotated[int | None, typer.Option(help="Hour for users with little history (default: the "
                                                           "population's best allowed hour).")] = None,
    control: Annotated[float, typer.Option(help="Share of users in the random-hour control arm.")] = 0.2,
    half_life: Annotated[float, typer.Option(help="Days after which an open counts half.")] = 14.0,
    min_events: Annotated[float, typer.Option(help="Recency-weighted opens needed for a personal hour.")] = 0.5,
) -> None:
    """Give each assigned user their send time: the best local hour from their opens and clicks, the fallback
    hour, or (the control arm) a random allowed hour. Sends then wait for it (`pushgen experiment send`)."""
    from generator.experiments.schedule import plan
    from generator.experiments.sendtime import SendTimeConfig

    start, end = _hours(window, "window")
    cfg = SendTimeConfig(window_start=start, window_end=end, fallback_hour=fallback_hour, control_share=control,
                         half_life_days=half_life, min_events=min_events)
    counts = plan(_store(), experiment, cfg)
    console.print("send times planned: " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
                                            or "none (every assigned user has one)"))


@control_app.command("set")
def set_cmd(brand: Annotated[str, typer.Option(help="The campaigns' brand (the campaign's `brand`).")],
            share: Annotated[float, typer.Option(help="Share of the brand's users held back (0 to 0.5).")],
            new_salt: Annotated[bool, typer.Option(help="Draw new members (a new period).")] = False) -> None:
    """Create or change a brand's global control group (same salt: membership stays monotone in the share)."""
    from generator.experiments.holdout import set_control

    c = set_control(_store(), brand, share, new_salt=new_salt)
    console.print(f"{c.brand}: share {c.share:g}, salt {c.salt}", highlight=False)


@control_app.command("show")
def show_cmd() -> None:
    """Every brand's control group with its history of changes."""
    from generator.experiments.holdout import controls

    for c in controls(_store()):
        console.print(f"[bold]{c.brand}[/]: share {c.share:g}, salt {c.salt}", highlight=False)
        for h in c.history:
            console.print(f"  {h['at']}: share {h['share']:g} ({h['reason']})", highlight=False)


@control_app.command("report")
def report_cmd(brand: Annotated[str, typer.Option(help="The campaigns' brand.")],
               since: Annotated[datetime | None, typer.Option(help="Experiments started from (ISO date).")] = None,
               until: Annotated[datetime | None, typer.Option(help="... until before (ISO date).")] = None,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False
               ) -> None:
    """Uplift of the brand's campaigns: users who could get them vs the global control, on opens, clicks,
    conversions and revenue per user, with 95% intervals."""
    from generator.experiments.holdout import brand_uplift

    rep = brand_uplift(_store(), brand, since=_aware(since), until=_aware(until))
    if as_json:
        console.print_json(json.dumps(rep, default=str))
        return
    print_uplift(rep, f"{brand}: {rep['experiments']} experiments, control share {rep['share']:g}")


def _aware(t: datetime | None) -> datetime | None:
    from datetime import UTC

    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def print_uplift(rep: dict[str, Any], title: str) -> None:
    users = rep["users"]
    table = Table(title=f"{title}; users: sent {users['sent']}, global control {users['global_control']}"
                        + (f", left out (in and out of the control) {users['mixed']}" if users["mixed"] else ""))
    for col in ("metric", "sent", "global control", "difference", "95% interval", "relative lift", "p"):
        table.add_column(col, justify="right")
    for m in rep["metrics"]:
        money = m["metric"] == "revenue_per_user"
        fmt = "{:.2f}" if money else "{:.2%}"
        diff = ("{:+.2f}" if money else "{:+.2%}").format(m["diff"])
        ci = " to ".join(("{:+.2f}" if money else "{:+.2%}").format(v) for v in m["diff_ci"])
        lift = f"{m['relative_lift']:+.1%}" if m["relative_lift"] is not None else "-"
        table.add_row(m["metric"], fmt.format(m["sent"]), fmt.format(m["global_control"]), diff, ci, lift,
                      f"{m['p_value']:.2g}")
    console.print(table)
