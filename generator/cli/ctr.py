"""``pushgen ctr ...``: train and evaluate the click-through model (thin over :mod:`generator.check.ctr`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from generator.check.ctr import DEFAULT_NAME, CtrEval, format_accuracy

ctr_app = typer.Typer(help="Click-through model: train on past pushes, evaluate pairwise.", no_args_is_help=True)
console = Console(soft_wrap=True)

_LABELS = {"chance": "chance", "longer-text-wins": "longer text wins", "tfidf-lr": "TF-IDF (1-2-gram) + LR",
           "bert": "BERT (MiniLM) pairwise model"}


def _print_eval(ev: CtrEval) -> None:
    table = Table(title=f"pairwise accuracy, {ev.scope} groups of {ev.pushes}")
    table.add_column("method")
    table.add_column("accuracy", justify="right")
    table.add_column("95% CI", justify="right")
    for method, acc in ev.accuracy.items():
        low_high = ev.ci95.get(method)
        table.add_row(_LABELS.get(method, method), format_accuracy(acc),
                      f"{low_high[0]:.3f}-{low_high[1]:.3f}" if low_high else "")
    console.print(table)
    console.print(f"{ev.significant_pairs} significant pairs (two-proportion p < {ev.alpha}) of {ev.pairs} pairs "
                  f"in {ev.groups} groups")


@ctr_app.command("train")
def train_cmd(
    pushes: Annotated[Path, typer.Option(
        "--pushes", help="Past pushes with group_id, sends, clicks (CSV/JSONL/Parquet).")],
    name: Annotated[str, typer.Option(help="Registry name of the model.")] = DEFAULT_NAME,
    holdout: Annotated[float, typer.Option(help="Share of groups held out for evaluation (0: train on all).")] = 0.2,
    encoder: Annotated[str, typer.Option(help="Frozen sentence encoder: registry name, hub id or folder.")] = "minilm",
    alpha: Annotated[float, typer.Option(help="Significance level of evaluation pairs.")] = 0.05,
    device: Annotated[str | None, typer.Option(help="cuda or cpu (default: CUDA when present).")] = None,
) -> None:
    """Train the click-through model, evaluate it on held-out groups and save it."""
    from generator.check.ctr import CtrConfig, train_ctr

    if not 0 <= holdout < 1:
        raise typer.BadParameter("must be in [0, 1)", param_hint="--holdout")
    cfg = CtrConfig(encoder=encoder, holdout_fraction=holdout, alpha=alpha, device=device)
    _, evaluation = train_ctr(pushes, name, cfg, report=console.print)
    if evaluation is not None:
        _print_eval(evaluation)


@ctr_app.command("eval")
def eval_cmd(
    pushes: Annotated[Path, typer.Option("--pushes", help="Past pushes to evaluate on (held-out groups when it "
                                         "is the training file, every group otherwise).")],
    name: Annotated[str, typer.Option(help="Registry name of the model.")] = DEFAULT_NAME,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    device: Annotated[str | None, typer.Option(help="cuda or cpu (default: CUDA when present).")] = None,
) -> None:
    """Pairwise accuracy of the model against chance, longer-text-wins and TF-IDF + LR on significant pairs."""
    from generator.check.ctr import evaluate_ctr

    ev = evaluate_ctr(pushes, name, device=device)
    _print_eval(ev)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(ev.to_dict(), indent=2))
        console.print(f"wrote {json_out}")
