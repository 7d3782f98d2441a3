"""``pushgen adapter ...``: train, list, show, delete and evaluate LoRA brand adapters (thin skin)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from generator.tune.train import LoraTrainConfig

adapter_app = typer.Typer(
    help="LoRA brand adapters: train, list, show, delete, evaluate.", no_args_is_help=True
)
console = Console(soft_wrap=True)


def _wide() -> Console:
    """Tables stay readable when piped (rich would squeeze them to 80 columns)."""
    return console if console.is_terminal else Console(width=160)


@adapter_app.command("train")
def train_cmd(
    pushes: Annotated[Path, typer.Option("--pushes", help="Past pushes (CSV/JSONL/Parquet).")],
    name: Annotated[str, typer.Option("--name", help="Registry name, e.g. acme-en (brand x locale).")],
    base: Annotated[str, typer.Option(help="Base model: registry name, hub id or folder.")] = "smollm2-135m",
    brand: Annotated[str, typer.Option(help="Brand name in the prompts (default: the adapter name).")] = "",
    items: Annotated[
        Path | None, typer.Option(help="Items table (default: items.* next to the pushes).")
    ] = None,
    locale: Annotated[str, typer.Option(help="Only pushes of this language (en, zh); empty: all.")] = "",
    scheme: Annotated[
        str, typer.Option(help="Engagement scheme: ctr (CTR-weighted loss), best, all.")
    ] = "ctr",
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = LoraTrainConfig.rank,
    alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = LoraTrainConfig.alpha,
    dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.0,
    target_modules: Annotated[str, typer.Option(help="Comma-separated module names.")] = (
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    ),
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    ema: Annotated[
        float, typer.Option(help="Moving average of the LoRA weights, decay per step (0: off).")
    ] = LoraTrainConfig.ema,
    epochs: Annotated[int, typer.Option(help="Passes over the training texts.")] = 1,
    max_steps: Annotated[int, typer.Option(help="Cap on optimizer steps (0: none).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Texts per micro-batch.")] = 16,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    max_texts: Annotated[int, typer.Option(help="Cap on training texts, whole groups (0: all).")] = 0,
    valid_fraction: Annotated[float, typer.Option(help="Share of groups for validation.")] = 0.1,
    max_valid: Annotated[int, typer.Option(help="Cap on validation texts.")] = 96,
    eval_every: Annotated[int, typer.Option(help="Validate every N optimizer steps.")] = 25,
    patience: Annotated[int, typer.Option(help="Early stop after N validations without improvement.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of split, batch order and init.")] = 0,
    quantize: Annotated[bool, typer.Option(help="QLoRA 4-bit NF4 base when CUDA is present.")] = True,
    device: Annotated[str | None, typer.Option(help="cuda or cpu (default: CUDA when present).")] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 on CUDA and on CPUs with native bf16), bf16 or fp32.")
    ] = "auto",
    resume: Annotated[bool, typer.Option(help="Resume from this adapter's last checkpoint.")] = False,
) -> None:
    """Fine-tune a LoRA adapter on past pushes and register it."""
    from generator.tune.train import train_adapter

    if scheme not in ("ctr", "best", "all"):
        raise typer.BadParameter(f"unknown scheme {scheme!r}; use ctr, best or all", param_hint="--scheme")
    if precision not in ("auto", "bf16", "fp32"):
        raise typer.BadParameter(f"unknown precision {precision!r}; use auto, bf16 or fp32",
                                 param_hint="--precision")
    cfg = LoraTrainConfig(
        base=base,
        brand=brand,
        locale=locale,
        scheme=scheme,
        rank=rank,
        alpha=alpha,  # type: ignore[arg-type]
        dropout=dropout,
        target_modules=tuple(m.strip() for m in target_modules.split(",")),
        lr=lr,
        ema=ema,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_texts=max_texts,
        valid_fraction=valid_fraction,
        max_valid=max_valid,
        eval_every=eval_every,
        patience=patience,
        save_every=eval_every,
        seed=seed,
        quantize=quantize,
        device=device,
        precision=precision,
    )
    train_adapter(pushes, name, cfg, items_path=items, resume=resume, report=console.print)


@adapter_app.command("list")
def list_cmd(
    base: Annotated[str | None, typer.Option(help="Only adapters of this base model.")] = None,
) -> None:
    """Registered adapters."""
    from generator.write.adapters import list_adapters

    table = Table("name", "base", "brand", "scheme", "texts", "valid ppl", "tokens/s", "created")
    for a in list_adapters(base):
        m = a.metrics
        table.add_row(
            a.name,
            a.base,
            a.brand,
            a.scheme,
            str(m.get("train_texts", "")),
            str(m.get("valid_ppl", "")),
            str(m.get("tokens_per_s", "")),
            a.created_at,
        )
    _wide().print(table)


@adapter_app.command("show")
def show_cmd(name: Annotated[str, typer.Argument(help="Adapter name.")]) -> None:
    """An adapter's metadata as JSON."""
    from generator.write.adapters import get_adapter

    info = get_adapter(name)
    console.print_json(json.dumps({**asdict(info), "path": str(info.path)}, ensure_ascii=False))


@adapter_app.command("delete")
def delete_cmd(
    name: Annotated[str, typer.Argument(help="Adapter name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove an adapter from the registry."""
    from generator.write.adapters import delete_adapter, get_adapter

    get_adapter(name)
    if not yes and not typer.confirm(f"delete adapter {name!r}?"):
        raise typer.Abort()
    delete_adapter(name)
    console.print(f"deleted {name}")


@adapter_app.command("eval")
def eval_cmd(
    pushes: Annotated[Path, typer.Option("--pushes", help="Held-out pushes (groups not trained on).")],
    name: Annotated[str, typer.Option("--name", help="Adapter to evaluate.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures as JSON here.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Cap on held-out texts (whole groups; 0: all).")] = 300,
    generate: Annotated[int, typer.Option(help="Prompts to generate for the style figures (0: none).")] = 64,
    batch_size: Annotated[int, typer.Option(help="Rows per forward pass.")] = 16,
    device: Annotated[str | None, typer.Option(help="cuda or cpu.")] = None,
) -> None:
    """Held-out perplexity under zero-shot base, few-shot base and the adapter, plus style figures."""
    from generator.tune.evaluate import evaluate_adapter, report_table

    report = evaluate_adapter(
        pushes,
        name,
        limit=limit,
        n_generate=generate,
        batch_size=batch_size,
        device=device,
        report=console.print,
    )
    _wide().print(report_table(report))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


if __name__ == "__main__":
    adapter_app()
