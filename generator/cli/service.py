"""``pushgen serve|worker|token|job``: the HTTP API, Celery workers, API tokens, and jobs over the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from generator.core.config import get_settings
from generator.core.errors import PushgenError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

job_app = typer.Typer(help="Submit and follow generation jobs over the HTTP API.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (stored hashed).", no_args_is_help=True)
URL = Annotated[str, typer.Option(envvar="PUSHGEN_API_URL", help="API base URL.")]
TOKEN = Annotated[str, typer.Option(envvar="PUSHGEN_API_TOKEN", help="Bearer token.")]


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP API (jobs, messages, erasure, review pages) and, like every worker, the recovery pass every
    PUSHGEN_RECOVER_EVERY seconds (a job whose server was killed mid-generation is picked up again)."""
    import uvicorn

    uvicorn.run("workers.api:serve_app", factory=True, host=host, port=port)


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
    from generator.db.store import Store
    from generator.db.tokens import create_token

    console.print(create_token(Store(), name, role))


@token_app.command("list")
def token_list() -> None:
    """The stored tokens: id, name, role and when created (never the token: only its hash is stored)."""
    from generator.db.store import Store
    from generator.db.tokens import list_tokens

    table = Table("id", "name", "role", "created")
    for t in list_tokens(Store()):
        table.add_row(str(t.id), t.name, t.role, t.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@token_app.command("delete")
def token_delete(token_id: Annotated[int, typer.Argument(help="The token's id (pushgen token list).", min=1,
                                                         max=2**63 - 1)]) -> None:
    """Delete a token: requests with it are refused from now on and its review sessions end."""
    from generator.db.store import Store
    from generator.db.tokens import delete_token

    if not delete_token(Store(), token_id):
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

    from generator.db.store import Store
    from generator.jobs import recover
    from workers.tasks import enqueue

    console.print_json(json.dumps(recover(Store(), enqueue=enqueue, requeue_after=requeue_after)))
