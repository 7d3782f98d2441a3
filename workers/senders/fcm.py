"""Firebase Cloud Messaging, HTTP v1: ``POST {base}/v1/projects/{project}/messages:send`` with an OAuth 2 bearer
token (from the service account; supplied by configuration, or by a callable that returns a fresh one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from generator.core.payload import fcm_message, fit
from workers.senders.base import Attempt, Sender, parse_retry_after

FCM_URL = "https://fcm.googleapis.com"
INVALID_TOKEN_CODES = ("UNREGISTERED",)


@dataclass
class FcmConfig:
    """Where and as whom to send."""

    project_id: str
    """The Firebase project id."""
    access_token: str | Callable[[], str]
    """An OAuth 2 access token with the firebase.messaging scope, or a callable returning a current one."""
    base_url: str = FCM_URL
    """The API's origin (a stand-in server's in tests)."""
    timeout: float = 10.0


def build_message(token: str, push: dict[str, Any]) -> dict[str, Any]:
    """The HTTP v1 request body (:func:`generator.core.payload.fcm_message`, within 4,096 bytes by
    :func:`generator.core.payload.fit`: the image goes first, then the buttons) addressed to ``token``."""
    message, _ = fit(push, fcm_message)
    return {"message": {"token": token, **message}}


def error_code(body: Any) -> str | None:
    """The FCM error code of an error response (``details[].errorCode``, else ``error.status``)."""
    err = body.get("error", {}) if isinstance(body, dict) else {}
    for detail in err.get("details", []) or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return err.get("status")


class FcmSender(Sender):
    platform = "fcm"

    def __init__(self, config: FcmConfig, *, client: httpx.Client | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.client = client or httpx.Client(timeout=config.timeout)
        self.url = f"{config.base_url.rstrip('/')}/v1/projects/{config.project_id}/messages:send"

    def _token(self) -> str:
        t = self.config.access_token
        return t() if callable(t) else t

    def send_once(self, token: str, push: dict[str, Any]) -> Attempt:
        body = build_message(token, push)  # fitted without the token: addressing, not payload
        resp = self.client.post(self.url, json=body, headers={"Authorization": f"Bearer {self._token()}"})
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if resp.status_code == 200:
            return Attempt("sent", 200, provider_id=data.get("name"))
        code = error_code(data)
        reason = f"{resp.status_code} {code or ''}".strip()
        if resp.status_code == 404 or code in INVALID_TOKEN_CODES:
            return Attempt("invalid_token", resp.status_code, error=reason)
        if resp.status_code == 429 or resp.status_code >= 500:
            return Attempt("retry", resp.status_code, error=reason,
                           retry_after=parse_retry_after(resp.headers.get("retry-after")))
        return Attempt("failed", resp.status_code, error=reason)  # 400 INVALID_ARGUMENT, 401, 403: not retried

    def close(self) -> None:
        self.client.close()
