"""Apple Push Notification service over HTTP/2 with token (JWT, ES256) authentication:
``POST {base}/3/device/{token}`` with ``authorization: bearer <JWT>``, ``apns-topic``, ``apns-push-type``,
``apns-priority``, ``apns-id``, ``apns-collapse-id`` and ``apns-expiration``. The JWT (``iss`` = team id,
``iat``; header ``kid`` = key id) is reused for 50 minutes (Apple refuses one older than an hour and throttles
one refreshed more than every 20 minutes) and refreshed at once after ``ExpiredProviderToken``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from generator.core.payload import apns_payload, fit
from workers.senders.base import Attempt, Sender, check_size, parse_retry_after

APNS_URL = "https://api.push.apple.com"
INVALID_TOKEN_REASONS = ("BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic")
JWT_LIFETIME = 50 * 60


@dataclass
class ApnsConfig:
    """Token-based connection to APNs."""

    team_id: str
    """The Apple developer team id (the JWT's ``iss``)."""
    key_id: str
    """The id of the .p8 signing key (the JWT header's ``kid``)."""
    private_key: str
    """The .p8 key's PEM text (an EC P-256 private key)."""
    topic: str
    """The app's bundle id (``apns-topic``)."""
    base_url: str = APNS_URL
    """``https://api.sandbox.push.apple.com`` for development builds; a stand-in's URL in tests."""
    verify: Any = True
    """TLS verification for httpx (True, or an ``ssl.SSLContext`` trusting a stand-in's certificate)."""
    expiration_s: int = 24 * 3600
    """How long APNs keeps trying an offline device (``apns-expiration``)."""
    timeout: float = 10.0


def build_payload(push: dict[str, Any]) -> dict[str, Any]:
    """The APNs JSON (:func:`generator.core.payload.apns_payload`), within 4,096 bytes by
    :func:`generator.core.payload.fit`:
    the image goes first, then the buttons."""
    return fit(push, apns_payload)[0]


def apns_id(idempotency_key: str | None) -> str:
    """A stable UUID per send (APNs echoes it back), derived from the send's idempotency key."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pushgen:{idempotency_key}")) if idempotency_key else str(uuid.uuid4())


class ApnsSender(Sender):
    platform = "apns"

    def __init__(self, config: ApnsConfig, *, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time, **kwargs: Any):
        super().__init__(**kwargs)
        self.config, self._clock = config, clock
        plain = config.base_url.startswith("http://")  # h2c with prior knowledge (stand-ins only)
        self.client = client or httpx.Client(http2=True, http1=not plain, verify=config.verify,
                                             timeout=config.timeout)
        self._jwt: tuple[str, float] | None = None
        self.jwt_refreshes = 0

    def provider_token(self) -> str:
        import jwt

        now = self._clock()
        if self._jwt is None or now - self._jwt[1] >= JWT_LIFETIME:
            token = jwt.encode({"iss": self.config.team_id, "iat": int(now)}, self.config.private_key,
                               algorithm="ES256", headers={"kid": self.config.key_id})
            self._jwt = (token, now)
            self.jwt_refreshes += 1
        return self._jwt[0]

    def send_once(self, token: str, push: dict[str, Any]) -> Attempt:
        body = check_size(build_payload(push))
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": self.config.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-id": apns_id(push.get("idempotency_key")),
            "apns-expiration": str(int(self._clock()) + self.config.expiration_s),
            "content-type": "application/json",
        }
        if push.get("collapse_id"):
            headers["apns-collapse-id"] = str(push["collapse_id"])[:64]
        resp = self.client.post(f"{self.config.base_url.rstrip('/')}/3/device/{token}", content=body,
                                headers=headers)
        if resp.status_code == 200:
            return Attempt("sent", 200, provider_id=resp.headers.get("apns-id"))
        try:
            reason = resp.json().get("reason", "")
        except ValueError:
            reason = ""
        error = f"{resp.status_code} {reason}".strip()
        if resp.status_code == 410 or reason in INVALID_TOKEN_REASONS:
            return Attempt("invalid_token", resp.status_code, error=error)
        if reason == "ExpiredProviderToken":
            self._jwt = None  # sign a new one and try again
            return Attempt("retry", resp.status_code, error=error, retry_after=0.0)
        if resp.status_code == 413:
            return Attempt("too_large", resp.status_code, error=error)
        if resp.status_code == 429 or resp.status_code >= 500:
            return Attempt("retry", resp.status_code, error=error,
                           retry_after=parse_retry_after(resp.headers.get("retry-after")))
        return Attempt("failed", resp.status_code, error=error)

    def close(self) -> None:
        self.client.close()
