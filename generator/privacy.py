"""Erasure of a user's personal data (``DELETE /v1/users/{id}``): their rows in the shop's files (events, reviews,
users), their device tokens, and the personal parts of their stored messages, jobs and experiments (see
:mod:`generator.erasure`), with a record of the erasure (when, by whom, how many rows of each kind; the user only
as a keyed hash) and a place on the suppression list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from generator.core.config import get_settings
from generator.core.data import erase_user_rows
from generator.db.store import Store
from generator.erasure import erase


def configured_shop_dir() -> Path | None:
    """The shop folder named by ``PUSHGEN_SHOP_DIR``; None when only the bundled sample shop is in use (a
    packaged example, never rewritten)."""
    settings = get_settings()
    return settings.shop_dir if "shop_dir" in settings.model_fields_set else None


def erase_user(store: Store, user_id: str, *, requested_by: str, shop_dir: Path | None = None) -> dict[str, Any]:
    """Erase everything personal about ``user_id``; returns the erasure record as a dict. The shop's files go
    first (each rewritten atomically), so a failure there leaves the database and its record untouched and the
    erasure can simply be asked for again."""
    shop_dir = shop_dir or configured_shop_dir()
    kinds = ("events", "reviews", "users")  # the users row too: re-importing the user lifts nothing (suppressed)
    counts = erase_user_rows(shop_dir, user_id, kinds) if shop_dir is not None else dict.fromkeys(kinds, 0)
    record = erase(store, user_id, requested_by=requested_by, counts=counts)
    return {"erasure_id": record.id, "erased_at": record.created_at.isoformat(), "requested_by": record.requested_by,
            **{f"{kind}_erased": n for kind, n in record.counts.items()}}
