"""Completion-callback secrets over HTTP (:mod:`generator.callbacks`): each ``campaign_tool`` or ``admin`` token
reads (``POST /v1/callbacks/secret``) or rotates (``{"rotate": true}``) its own signing secret."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from generator import callbacks
from workers.auth import bearer, requires

router = APIRouter(tags=["callbacks"])


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rotate: StrictBool = Field(default=False, description="Replace the secret: events from now on use the new one.")


@router.post("/v1/callbacks/secret")
def callback_secret(body: SecretIn, request: Request, _: Annotated[str, Depends(requires("campaign_tool"))],
                    creds: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> dict[str, Any]:
    """This token's secret for verifying its jobs' completion callbacks (made on first use; ``rotate``: anew)."""
    return _secret_answer(callbacks.secret_for(request.app.state.store, creds.credentials, rotate=body.rotate))


def _secret_answer(secret: str) -> dict[str, Any]:
    return {"secret": secret, "algorithm": "HMAC-SHA256",
            "signed": "the X-Pushgen-Timestamp header's value, '.', then the raw body",
            "headers": {"signature": "X-Pushgen-Signature (v1=<hex>)", "timestamp": "X-Pushgen-Timestamp",
                        "event_id": "X-Pushgen-Event-Id (also Idempotency-Key and the body's id)"}}
