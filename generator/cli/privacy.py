"""``pushgen privacy ...``: erase a user (as ``DELETE /v1/users/{id}`` does) and lift an erased user's suppression
(thin skin over :mod:`generator.privacy` and :mod:`generator.erasure`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

privacy_app = typer.Typer(help="Erasure of a user's personal data, and the suppression list.", no_args_is_help=True)
console = Console(soft_wrap=True)
UserId = Annotated[str, typer.Argument(help="The user's id, as in the shop's users table.", min=1)]


@privacy_app.command("erase")
def erase_cmd(user_id: UserId, by: Annotated[str, typer.Option(help="Who asked (recorded).")] = "cli") -> None:
    """Erase the user everywhere (shop files under PUSHGEN_SHOP_DIR, database) and put them on the suppression
    list; prints the erasure record (which holds no personal data)."""
    from generator.db.store import Store
    from generator.privacy import erase_user

    console.print_json(json.dumps(erase_user(Store(), user_id, requested_by=by)))


@privacy_app.command("restore")
def restore_cmd(user_id: UserId) -> None:
    """Lift an erased user's suppression: they signed up again and may be messaged (once their data is imported
    anew). Their erased data stays erased."""
    from generator.core.errors import PushgenError
    from generator.db.store import Store
    from generator.db.suppression import restore_user

    if not restore_user(Store(), user_id):
        raise PushgenError(f"{user_id!r} is not on the suppression list")
    console.print(f"{user_id} may be messaged again")
