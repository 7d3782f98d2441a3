"""``pushgen scorer train|eval``: thin commands over :mod:`generator.rank.train` and :mod:`generator.rank.evaluate`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from generator.core.errors import PushgenError

scorer_app = typer.Typer(help="Train and evaluate the item scorer (MiniLM + collaborative signal).",
                         no_args_is_help=True)
console = Console()


def _store_url(no_cache: bool) -> str | None:
    from generator.core.config import get_settings

    return None if no_cache else get_settings().database_url


@scorer_app.command("train")
def train(
    items: Path = typer.Option(..., help="Items file (CSV/JSONL/Parquet), e.g. the importer's items.csv."),
    events: Path = typer.Option(..., help="Events file; each user's last event is held out."),
    name: str = typer.Option("default", help="Save under scorers_dir/NAME ('default' is used by the demo)."),
    encoder: str = typer.Option("minilm", help="Sentence encoder the item texts are embedded with."),
    max_epochs: int = typer.Option(60, help="Upper bound on sequence-model epochs (early stopping decides)."),
    seed: int = typer.Option(0),
    device: str | None = typer.Option(None, help="cpu or cuda (default: CUDA when present)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the store's embedding cache."),
    finetune_encoder: bool = typer.Option(False, help="First fine-tune the bi-encoder contrastively on item "
                                                      "transitions (MultipleNegativesRankingLoss, hard negatives)."),
    finetune_pairs: int = typer.Option(12000, help="Cap on contrastive training pairs (most frequent first)."),
    fusion: str = typer.Option("ltr", help="ltr: a LightGBM LambdaMART re-ranker over the blend's top 100 (kept "
                                           "only if it beats the blend on held-out users); linear: the blend."),
    rerank_k: int = typer.Option(0, help="Also train a cross-encoder re-ranker for the top K (0: none)."),
) -> None:
    """Fit the trained scorer on interaction logs and save it with its metadata."""
    from generator.rank.train import FinetuneConfig, TrainOptions, train_scorer

    try:
        folder, meta = train_scorer(items, events, name=name, options=TrainOptions(
            encoder=encoder, max_epochs=max_epochs, seed=seed, device=device, store_url=_store_url(no_cache),
            finetune_encoder=finetune_encoder, finetune=FinetuneConfig(max_pairs=finetune_pairs, seed=seed),
            fusion=fusion, rerank_k=rerank_k))
    except PushgenError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"saved [bold]{folder}[/bold] in {meta['train_seconds']:.0f} s; blend {meta['blend']}")
    console.print(f"validation slice (each user's last training item): {meta['valid_metrics']}")
    if "ltr" in meta:
        ltr = meta["ltr"]
        console.print(f"learned fusion {'used' if ltr['used'] else 'not used'}: held-out NDCG@10 "
                      f"{ltr.get('held_out_ltr', {}).get('ndcg@10', '-')} vs linear "
                      f"{ltr.get('held_out_linear', {}).get('ndcg@10', '-')}")


@scorer_app.command("eval")
def eval_(
    items: Path = typer.Option(..., help="Items file (CSV/JSONL/Parquet)."),
    events: Path = typer.Option(..., help="Events file: each user's last event is the target."),
    model: str | None = typer.Option(None, help="Trained scorer name or folder (default: 'default' if any)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here."),
    no_baselines: bool = typer.Option(False, "--no-baselines", help="Only the trained model."),
    device: str | None = typer.Option(None),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the store's embedding cache."),
) -> None:
    """Leave-last-out evaluation, full ranking: baselines and the trained scorer side by side."""
    from generator.rank.evaluate import format_table, run_eval, write_json

    try:
        report = run_eval(items, events, model, device=device, store_url=_store_url(no_cache),
                          baselines=not no_baselines)
    except PushgenError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    rows = format_table(report)
    d = report["data"]
    table = Table(title=f"leave-last-out, full ranking: {d['users']} users x {d['items']} items")
    for n, col in enumerate(rows[0]):
        table.add_column(col, justify="left" if n == 0 else "right")
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
    console.print(f"{report['seconds']} s")
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")
