"""What every sender shares: the result type, the payload limit, the token bucket, and retries with backoff."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from generator.core.payload import MAX_PAYLOAD_BYTES, PayloadTooLarge

_EPS = 1e-9  # float round-off in the refill must not leave a caller sleeping 0-second naps


def check_size(payload: Any, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The encoded payload, or :class:`PayloadTooLarge` naming the size and the limit."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > limit:
        raise PayloadTooLarge(f"payload is {len(body)} bytes after JSON encoding; the limit is {limit}")
    return body


@dataclass
class Attempt:
    """One provider answer, classified."""

    status: str  # sent / invalid_token / too_large / failed / retry
    code: int | None = None
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None


@dataclass
class DeliveryResult:
    """The outcome of :meth:`Sender.deliver`: the last attempt's verdict and how many attempts it took."""

    status: str
    attempts: int
    code: int | None = None
    provider_id: str | None = None
    error: str | None = None
    history: list[int | None] = field(default_factory=list)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, at.timestamp() - now())


class TokenBucket:
    """A token bucket: up to ``rate`` sends per second on average, bursts of ``burst``. Thread-safe; the clock
    and sleep are injectable for tests."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.capacity = float(rate), float(burst if burst is not None else max(rate, 1.0))
        self.tokens, self._clock, self._sleep = self.capacity, clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> bool:
        with self._lock:
            self._refill()
            if self.tokens >= 1 - _EPS:
                self.tokens = max(self.tokens - 1, 0.0)
                return True
            return False

    def acquire(self) -> float:
        """Take one token, sleeping until there is one; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self.tokens >= 1 - _EPS:
                    self.tokens = max(self.tokens - 1, 0.0)
                    return waited
                wait = (1 - self.tokens) / self.rate
            self._sleep(wait)
            waited += wait


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: before retry k (1-based) wait ``uniform(0, min(cap, base * 2**k))``,
    but at least the provider's ``Retry-After``."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    seed: int | None = None

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = rng.uniform(0, min(self.cap, self.base * 2**attempt))
        return max(backoff, retry_after or 0.0)


class Sender:
    """Base of the senders: :meth:`send_once` is the provider call; :meth:`deliver` adds the rate limit and
    retries. ``sleep`` is injectable so tests can see the waits without waiting."""

    platform = "any"

    def __init__(self, *, rate_limit: float | None = None, burst: float | None = None,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep):
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.bucket = TokenBucket(rate_limit, burst, sleep=sleep) if rate_limit else None
        self._rng = random.Random(self.retry.seed)
        self.waits: list[float] = []

    def send_once(self, token: str, push: dict[str, Any]) -> Attempt:
        raise NotImplementedError

    def deliver(self, token: str, push: dict[str, Any]) -> DeliveryResult:
        history: list[int | None] = []
        attempt = Attempt("failed", error="not attempted")
        for n in range(1, self.retry.max_attempts + 1):
            if self.bucket is not None:
                self.bucket.acquire()
            try:
                attempt = self.send_once(token, push)
            except PayloadTooLarge as exc:
                return DeliveryResult("too_large", n, None, None, str(exc), history)
            except OSError as exc:  # connection refused / reset: transient
                attempt = Attempt("retry", error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # noqa: BLE001 - httpx transport errors and the like: transient
                import httpx

                if not isinstance(exc, httpx.TransportError):
                    raise
                attempt = Attempt("retry", error=f"{type(exc).__name__}: {exc}")
            history.append(attempt.code)
            if attempt.status != "retry":
                break
            if n < self.retry.max_attempts:
                wait = self.retry.delay(n, attempt.retry_after, self._rng)
                self.waits.append(wait)
                self.sleep(wait)
        return DeliveryResult(attempt.status, len(history), attempt.code, attempt.provider_id, attempt.error,
                              history)

    def close(self) -> None:
        """Release connections (senders over HTTP override this)."""


def now_utc() -> datetime:
    return datetime.now(UTC)
