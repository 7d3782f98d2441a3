"""The ``pushgen`` command: a thin skin over the ``generator`` library."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import click
import typer
import typer._click.exceptions as _click_errors
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from generator.cli.inputs import quiet_libraries
from generator.core.config import get_settings
from generator.core.errors import PushgenError

app = typer.Typer(help="pushgen: personalised push notifications from a small fine-tuned LM.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])


def run() -> None:
    """Entry point: one error path. Any usage or data error is one line on stderr (``error: ...``) and a non-zero
    exit (2: usage or input, 1: anything else), never a traceback (``--verbose`` adds it for unexpected ones).
    Typer raises its own exception classes (``typer._click``), not click's: both are handled."""
    try:
        rc = app(standalone_mode=False)  # typer returns the code of a typer.Exit (--help, templates check)
    except (typer.Abort, click.Abort, KeyboardInterrupt):
        _fail("aborted", 130)
    except (_click_errors.NoArgsIsHelpError, click.exceptions.NoArgsIsHelpError) as exc:
        exc.show()  # the help text, as asked for by giving no arguments
        sys.exit(exc.exit_code)
    except (_click_errors.ClickException, click.ClickException) as exc:
        ctx = getattr(exc, "ctx", None)
        usage = isinstance(exc, _click_errors.UsageError | click.UsageError) and ctx is not None
        _fail(exc.format_message() + (f" (see '{ctx.command_path} --help')" if usage else ""), exc.exit_code or 2)
    except PushgenError as exc:
        _fail(str(exc), 2)
    except UnicodeError as exc:
        _fail(f"not valid UTF-8 text: {exc}", 2)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 2)
    except Exception as exc:  # noqa: BLE001 - the one place a bug is reported, in one line
        if "--verbose" in sys.argv or "-v" in sys.argv:
            logging.getLogger(__name__).exception("internal error")
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)", 1)
    sys.exit(rc if isinstance(rc, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    err_console.print("error: " + " ".join(str(message).split()), markup=False, highlight=False)
    sys.exit(code)


class RichProgress:
    """The campaign runner's ``progress(stage, done, total)`` hook as rich progress bars, one per stage."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.tasks: dict[str, object] = {}

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.advance(self.tasks[stage], done)  # type: ignore[arg-type]


# --- demo ---------------------------------------------------------------------------------------------------

def _run_and_report(campaign: object, *, shop_dir: Path | None, out: Path, model: str | None,
                    user_ids: list[str] | None, job_kind: str) -> None:
    """Load the shop and models, run the campaign, store it, write messages.csv and review.html, summarise."""
    from collections import Counter

    from generator.campaign.runner import CampaignRunner
    from generator.core.data import load_shop
    from generator.db.store import Store
    from generator.report import write_messages_csv, write_review_html
    from generator.write.generate import Generator

    quiet_libraries()
    t0 = time.perf_counter()
    shop_dir = shop_dir or get_settings().shop_dir
    data = load_shop(shop_dir)
    store = Store()
    console.print(f"shop [bold]{shop_dir}[/]: {len(data.items)} items, {len(data.users)} users; store {store.url}")
    t_load = time.perf_counter()
    generator = Generator(model)
    console.print(f"generator {generator.model_name} on {generator.device} loaded in "
                  f"{time.perf_counter() - t_load:.1f} s")
    # --model: that model writes every language; else the per-language settings (e.g. Gemma for Chinese)
    runner = CampaignRunner(generator=generator, store=store,
                            locale_models=None if model else get_settings().locale_models)
    with RichProgress() as progress:
        job_id, messages = runner.run(data, campaign, user_ids=user_ids, job_kind=job_kind,  # type: ignore[arg-type]
                                      progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    write_messages_csv(messages, out / "messages.csv")
    write_review_html(messages, out / "review.html", title=f"pushgen {job_kind} — {len(messages)} messages",
                      job_id=job_id)
    table = Table(title=f"pushgen {job_kind}")
    for col in ("campaign type", "messages", "model-written, passing", "template fallback", "flagged"):
        table.add_column(col)
    by_type: dict[str, Counter[str]] = {}
    for m in messages:
        by_type.setdefault(m.campaign_type, Counter())[m.status] += 1
    for ctype, c in sorted(by_type.items()) + [("all", sum(by_type.values(), Counter()))]:
        n = sum(c.values())
        table.add_row(ctype, str(n), f"{c['passed']} ({c['passed'] / n:.0%})",
                      f"{c['fallback']} ({c['fallback'] / n:.0%})", str(c["flagged"]))
    console.print(table)
    console.print(f"wall time {time.perf_counter() - t0:.1f} s\njob {job_id}\n"
                  f"wrote {out / 'messages.csv'} and {out / 'review.html'}")


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="How many (opted-in) users of the sample shop.", min=1)] = 20,
    out: Annotated[Path, typer.Option(help="Folder for messages.csv and review.html.")] = Path("out/demo"),
    shop: Annotated[Path | None, typer.Option(help="Shop folder (default: the bundled sample shop).")] = None,
    candidates: Annotated[int, typer.Option(help="Candidates generated per user.", min=1, max=16)] = 3,
    model: Annotated[str | None, typer.Option(help="Generator model: registry name, HF id or folder.")] = None,
    adapter: Annotated[str | None, typer.Option(
        help="LoRA adapter(s) from `pushgen adapter train`: NAME, or per language en=shop-en,zh=shop-zh "
             "(examples/shop/ADAPTER.md).")] = None,
) -> None:
    """Run the whole pipeline once on the sample shop, on the embedded default (SQLite, in process)."""
    from generator.campaign.spec import Audience, Campaign

    chosen: str | dict[str, str] | None = adapter
    if adapter and "=" in adapter:
        pairs = [p.partition("=") for p in adapter.split(",")]
        if any(not k.strip() or not v.strip() for k, _, v in pairs):
            raise typer.BadParameter("use NAME or en=NAME,zh=NAME", param_hint="--adapter")
        chosen = {k.strip(): v.strip() for k, _, v in pairs}
    campaign = Campaign(name="demo", candidates=candidates, audience=Audience(limit=users), adapter=chosen)
    _run_and_report(campaign, shop_dir=shop, out=out, model=model, user_ids=None, job_kind="demo")


@app.command()
def generate(
    campaign_file: Annotated[Path, typer.Option("--campaign", help="Campaign YAML: type, template, adapter, "
                                                "audience, variants, locale, facts, policy.")],
    out: Annotated[Path, typer.Option(help="Folder for messages.csv and review.html.")] = Path("out/campaign"),
    shop: Annotated[Path | None, typer.Option(help="Shop folder (default: the bundled sample shop).")] = None,
    model: Annotated[str | None, typer.Option(help="Generator model: registry name, HF id or folder.")] = None,
) -> None:
    """Run a campaign on the embedded default, with the same outputs as the demo."""
    from generator.campaign.spec import load_campaign

    campaign = load_campaign(campaign_file)
    _run_and_report(campaign, shop_dir=shop, out=out, model=model, user_ids=None, job_kind="campaign")


def _mount_subcommands() -> None:
    """Sub-commands, one module per command group."""
    from generator.cli.inputs import data_app, models_app, templates_app
    from generator.cli.service import job_app, serve, token_app, worker

    app.add_typer(models_app, name="models")
    app.add_typer(data_app, name="data")
    app.add_typer(templates_app, name="templates")
    app.command()(serve)
    app.command()(worker)
    app.add_typer(job_app, name="job")
    app.add_typer(token_app, name="token")
    from generator.cli.adapter import adapter_app
    from generator.cli.ctr import ctr_app
    from generator.cli.review import review_app
    from generator.cli.scorer import scorer_app

    app.add_typer(scorer_app, name="scorer")
    app.add_typer(adapter_app, name="adapter")
    app.add_typer(ctr_app, name="ctr")
    app.add_typer(review_app, name="review")
    from generator.cli.experiment import experiment_app, loop_cmd
    from generator.cli.privacy import privacy_app

    app.add_typer(privacy_app, name="privacy")

    app.add_typer(experiment_app, name="experiment")
    app.command("loop")(loop_cmd)
    from generator.cli.features import control_app, schedule_cmd

    experiment_app.command("schedule")(schedule_cmd)
    app.add_typer(control_app, name="control")


_mount_subcommands()
