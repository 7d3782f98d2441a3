"""A webhook sender: the push as JSON to a URL of your own (an in-house gateway, a CRM), with an
``Idempotency-Key`` header and an HMAC-SHA256 signature of the body (``X-Pushgen-Signature: sha256=<hex>``)
when a secret is set. 2xx is sent; 410 marks the token dead; 429 and 5xx are retried."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx

from workers.senders.base import Attempt, Sender, check_size, parse_retry_after


class WebhookSender(Sender):
    platform = "any"

    def __init__(self, url: str, *, secret: str | None = None, client: httpx.Client | None = None,
                 timeout: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.url, self.secret = url, secret
        self.client = client or httpx.Client(timeout=timeout)

    def send_once(self, token: str, push: dict[str, Any]) -> Attempt:
        body = check_size({"token": token, "title": push["title"], "body": push["body"],
                           "deep_link": push.get("deep_link", ""), "data": push.get("data") or {},
                           "idempotency_key": push.get("idempotency_key")})
        headers = {"content-type": "application/json", "idempotency-key": str(push.get("idempotency_key") or "")}
        if self.secret:
            headers["x-pushgen-signature"] = "sha256=" + hmac.new(self.secret.encode(), body,
                                                                   hashlib.sha256).hexdigest()
        resp = self.client.post(self.url, content=body, headers=headers)
        if 200 <= resp.status_code < 300:
            return Attempt("sent", resp.status_code, provider_id=resp.headers.get("x-request-id"))
        error = f"{resp.status_code} {resp.text[:200]}".strip()
        if resp.status_code == 410:
            return Attempt("invalid_token", resp.status_code, error=error)
        if resp.status_code == 429 or resp.status_code >= 500:
            return Attempt("retry", resp.status_code, error=error,
                           retry_after=parse_retry_after(resp.headers.get("retry-after")))
        return Attempt("failed", resp.status_code, error=error)

    def close(self) -> None:
        self.client.close()
