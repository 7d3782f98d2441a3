"""Bearer-token auth of the HTTP API: the one role check. Roles are :data:`generator.db.tokens.ROLES`; tokens are stored
hashed (``pushgen token create``) and ``admin`` may do everything."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from generator.db.tokens import may, role_of

bearer = HTTPBearer(auto_error=False)


def requires(*allowed: str):  # type: ignore[no-untyped-def]
    """A dependency admitting bearer tokens of ``allowed`` roles (admin always; none given: admin only). Returns the
    role; 401 without a known token, 403 for a role that may not."""
    def check(request: Request,
              creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if creds is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        role = role_of(request.app.state.store, creds.credentials)
        if role is None:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
        if not may(role, *allowed):
            raise HTTPException(403, f"role {role!r} may not do this")
        return role
    return check
