"""``pushgen review ...``: the learning signal from reviewers, and the auto-approve rule (thin skin over
:mod:`generator.review`; the review pages themselves are served by ``pushgen serve`` under ``/review``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

review_app = typer.Typer(help="Human review: export preference pairs, set auto-approve rules.", no_args_is_help=True)
console = Console(soft_wrap=True)


@review_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="JSONL (or .csv/.parquet) file to write.")],
    job: Annotated[str | None, typer.Option(help="Only this job's decisions (default: every job).")] = None,
) -> None:
    """Write reviewers' edits and rejections as preference pairs: {prompt, chosen, rejected, kind, reason, ...}
    plus the past-push fields, so the file also trains an adapter (pushgen adapter train --pushes FILE)."""
    from generator.db.store import Store
    from generator.learning import export_pairs

    n, unpaired = export_pairs(Store(), out, job_id=job)
    console.print(f"wrote {n} preference pairs to {out}"
                  + (f"; {unpaired} rejections had no approved copy for the same prompt" if unpaired else ""))


@review_app.command("rule")
def rule_cmd(
    job: Annotated[str, typer.Argument(help="Job id.")],
    min_ctr: Annotated[float | None, typer.Option(help="Auto-approve passing copy with predicted CTR >= this.")]
    = None,
    remove: Annotated[bool, typer.Option(help="Remove the job's rule.")] = False,
    by: Annotated[str, typer.Option(help="Who sets the rule (recorded with every approval it makes).")] = "cli",
) -> None:
    """Set (and apply now) or remove a job's auto-approve rule; its approvals are recorded as 'auto-rule'."""
    from generator.core.errors import PushgenError
    from generator.db.store import Store
    from generator.review import Reviewer, clear_rule, set_rule

    store = Store()
    if remove:
        clear_rule(store, job)
        console.print(f"removed the auto-approve rule of job {job}")
        return
    if min_ctr is None:
        raise PushgenError("give --min-ctr X (0..1) or --remove")
    n = set_rule(store, job, min_ctr, Reviewer(by, "admin"))
    console.print(f"job {job}: auto-approve passing copy with predicted CTR >= {min_ctr:g}; approved {n} now")
