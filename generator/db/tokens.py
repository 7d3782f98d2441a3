"""API tokens and their roles: create (returned once, stored as a hash), list, delete, look up.
The one role check of the HTTP API is :mod:`workers.auth`."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from generator.core.errors import PushgenError
from generator.db.store import Store
from generator.db.tables import ApiToken

ROLES = ("campaign_tool", "reviewer", "admin")
"""What an API token may do: submit and read jobs; read jobs and review copy; everything (erasure included)."""


def may(role: str, *allowed: str) -> bool:
    """Whether a token of ``role`` may do what ``allowed`` roles may (``admin`` may do everything)."""
    return role == "admin" or role in allowed


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, name: str, role: str) -> str:
    """A new random token for ``role`` (one of :data:`ROLES`); returned once, stored only as its hash."""
    if role not in ROLES:
        raise PushgenError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    token = "pg_" + secrets.token_urlsafe(32)
    with store.session() as s:
        s.add(ApiToken(name=name, role=role, token_hash=_hash(token)))
    return token


def list_tokens(store: Store) -> list[ApiToken]:
    with store.session() as s:
        return list(s.scalars(select(ApiToken).order_by(ApiToken.id)))


def delete_token(store: Store, token_id: int) -> bool:
    """Delete a token (its review sessions go with it); False when there is none with that id."""
    with store.session() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            return False
        s.delete(row)
        return True


def _find(store: Store, token: str) -> ApiToken | None:
    with store.session() as s:
        return s.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))


def role_of(store: Store, token: str) -> str | None:
    row = _find(store, token)
    return row.role if row else None


def token_name(store: Store, token: str) -> str | None:
    """``name (role)`` of a token, for records of who did what."""
    row = _find(store, token)
    return f"{row.name} ({row.role})" if row else None
