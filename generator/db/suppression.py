"""The suppression list: erased users, kept only as keyed hashes of their ids (HMAC-SHA256 under a random key
of this installation, in ``app_secrets``), never messaged again until restored; and the erasure records. The
erasure itself is :mod:`generator.erasure`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from generator.db.tables import AppSecret, Erasure, Suppression

if TYPE_CHECKING:
    from generator.db.store import Store


ERASED = "erased:"


PLACEHOLDER = "[erased]"


KEY_NAME = "user_ref_key"


def installation_key(store: Store) -> bytes:
    """The random key of this installation (created on first use, shared by every process on the database)."""
    cached = getattr(store, "_user_ref_key", None)
    if cached is None:
        for _ in range(2):
            with store.session() as s:
                row = s.get(AppSecret, KEY_NAME)
                if row is not None:
                    cached = row.value.encode()
                    break
            try:
                with store.session() as s:
                    s.add(AppSecret(name=KEY_NAME, value=secrets.token_hex(32)))
            except IntegrityError:  # another process created it first: read theirs
                continue
        store._user_ref_key = cached  # type: ignore[attr-defined]
    return cached if cached is not None else installation_key(store)


def keyed(key: bytes, text: str) -> str:
    """HMAC-SHA256 of the SHA-256 of ``text``: a reference nobody without ``key`` can recompute. (Over the
    SHA-256, so the plain hashes older records kept can be re-keyed by the migration without the ids.)"""
    return hmac.new(key, hashlib.sha256(text.encode()).hexdigest().encode(), hashlib.sha256).hexdigest()


def user_ref(store: Store, user_id: str) -> str:
    return keyed(installation_key(store), user_id)


def suppressed(store: Store, user_ids: Iterable[str]) -> set[str]:
    """Those of ``user_ids`` that were erased and not restored."""
    with store.session() as s:
        if s.scalar(select(Suppression.user_ref).limit(1)) is None:  # nobody suppressed: no user's ref to key
            return set()
    key = installation_key(store)
    refs = {keyed(key, u): u for u in user_ids}
    found: set[str] = set()
    with store.session() as s:
        batch = list(refs)
        for i in range(0, len(batch), 500):
            found.update(s.scalars(select(Suppression.user_ref).where(Suppression.user_ref.in_(batch[i:i + 500]))))
    return {refs[r] for r in found}


def targetable(store: Store, user_ids: Sequence[str]) -> list[str]:
    """``user_ids`` without the erased ones, in order."""
    erased = suppressed(store, user_ids)
    return [u for u in user_ids if u not in erased]


def restore_user(store: Store, user_id: str) -> bool:
    """Lift a user's suppression (they signed up again and were imported anew); True if they were suppressed."""
    with store.session() as s:
        return bool(s.execute(delete(Suppression).where(Suppression.user_ref == user_ref(store, user_id))).rowcount)


def erasures(store: Store, user_id: str | None = None) -> list[Erasure]:
    """Erasure records, newest first (those of ``user_id`` only, matched by its keyed hash)."""
    with store.session() as s:
        q = select(Erasure).order_by(Erasure.created_at.desc(), Erasure.id.desc())
        if user_id is not None:
            q = q.where(Erasure.user_hash == user_ref(store, user_id))
        return list(s.scalars(q))
