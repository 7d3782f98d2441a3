"""Completion callbacks: when a job submitted with a ``callback_url`` ends (``done``, ``failed`` or ``cancelled``),
pushgen POSTs one signed event to that URL, so the campaign tool need not poll ``GET /v1/jobs/{id}``.

* **Durable outbox.** Submitting the job stores a ``job_callbacks`` row (``waiting``) with the event's id. The
  drain (:func:`drain`: every worker's recovery pass, the Celery task ``workers.tasks_callbacks.deliver``, and
  the embedded API after a job) turns rows of finished jobs into ``pending`` events, claims those that are due
  under row locks that skip rows another drainer holds, and POSTs them. Nothing is lost if a process dies: the
  row stays ``pending`` and the next pass sends it.
* **At least once, with an idempotency id.** A 2xx answer marks the event ``delivered``; anything else (a
  refused connection, a timeout, 4xx, 5xx) schedules another try after an exponential backoff with jitter
  (``base * 2**(n-1)`` seconds, at most ``cap``), until ``max_attempts``, then ``failed``. A crash between the
  receiver's 2xx and the row's update sends the event again, so receivers deduplicate by the event id (the
  ``X-Pushgen-Event-Id`` and ``Idempotency-Key`` headers and the body's ``id``: the same on every try).
* **Signed.** Each API token has its own secret (``POST /v1/callbacks/secret``). Every try carries
  ``X-Pushgen-Timestamp`` (Unix seconds, the time of the try) and ``X-Pushgen-Signature: v1=<hex>``, the
  HMAC-SHA256 of ``"<timestamp>." + body`` under the secret. :func:`verify` is the receiver's check: the
  signature must match and the timestamp be within ``tolerance`` seconds, so a captured request cannot be
  replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from generator.core.errors import PushgenError
from generator.db.chunks import chunk_counts
from generator.db.messages import count_messages
from generator.db.store import Store
from generator.db.tables import ApiToken, CallbackSecret, Job, JobCallback, utcnow

log = logging.getLogger(__name__)
FINAL = ("done", "failed", "cancelled")
SIGNATURE_HEADER, TIMESTAMP_HEADER, EVENT_HEADER = "x-pushgen-signature", "x-pushgen-timestamp", "x-pushgen-event-id"


class CallbackError(PushgenError):
    """A callback cannot be registered, or a received callback fails verification."""






@dataclass(frozen=True)
class CallbackPolicy:
    """How callbacks are retried."""

    max_attempts: int = 10
    """Tries before an event is ``failed`` (with the defaults the last is about 4.5 hours after the first)."""
    base: float = 2.0
    """Seconds before the first retry; each further retry waits twice as long (with jitter) ..."""
    cap: float = 3600.0
    """... but never more than this."""
    timeout: float = 10.0
    """Seconds to wait for the receiver's answer."""
    lease: float = 120.0
    """A claimed event is not claimed again by another drainer for this long (it is being sent)."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Wait after failed attempt ``attempt`` (1-based): half fixed, half jitter."""
        full = min(self.cap, self.base * 2 ** (attempt - 1))
        return full / 2 + rng.uniform(0, full / 2)


# -- secrets and signatures -------------------------------------------------------------------------------------
def _token_row(s: Any, bearer: str) -> ApiToken | None:
    return s.scalar(select(ApiToken).where(ApiToken.token_hash == hashlib.sha256(bearer.encode()).hexdigest()))


def secret_for(store: Store, bearer: str, *, rotate: bool = False) -> str:
    """The callback signing secret of the API token ``bearer`` (made on first use; ``rotate``: a new one)."""
    with store.session() as s:
        token = _token_row(s, bearer)
        if token is None:
            raise CallbackError("invalid token")
        row = s.get(CallbackSecret, token.id)
        if row is None or rotate:
            if row is not None:
                s.delete(row)
                s.flush()
            row = CallbackSecret(token_id=token.id, secret="whsec_" + secrets.token_urlsafe(32))
            s.add(row)
        return row.secret


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, tolerance: float = 300.0,
           now: float | None = None) -> dict[str, Any]:
    """The receiver's check of one callback: the signature matches and the timestamp is at most ``tolerance``
    seconds away from ``now``. Returns the event; raises :class:`CallbackError` naming what is wrong."""
    low = {k.lower(): v for k, v in headers.items()}
    stamp = low.get(TIMESTAMP_HEADER, "")
    if not stamp.isdigit():
        raise CallbackError(f"{TIMESTAMP_HEADER}: missing or not a Unix time")
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        raise CallbackError(f"{TIMESTAMP_HEADER}: outside the {tolerance:g} s tolerance (a replay?)")
    if not hmac.compare_digest(low.get(SIGNATURE_HEADER, ""), sign(secret, int(stamp), body)):
        raise CallbackError(f"{SIGNATURE_HEADER}: does not match the body")
    return json.loads(body)


# -- the outbox -------------------------------------------------------------------------------------------------
def subscribe(store: Store, job_id: str, url: str, bearer: str) -> str:
    """Ask for ``job_id``'s completion event at ``url``, signed with ``bearer``'s secret; returns the event id.
    A job has one callback: subscribing again keeps the first. The token's secret is made now if it has none."""
    secret_for(store, bearer)
    with store.session() as s:
        row = s.get(JobCallback, job_id)
        if row is None:
            token = _token_row(s, bearer)
            row = JobCallback(job_id=job_id, url=url, token_id=token.id if token else None)
            s.add(row)
            s.flush()
        return row.event_id


def event_body(store: Store, job: Job, event_id: str) -> dict[str, Any]:
    """The event: its id (the idempotency id), type ``job.<status>``, and the job's status and counts."""
    return {"id": event_id, "type": f"job.{job.status}", "created_at": utcnow().isoformat(),
            "job": {"id": job.id, "status": job.status, "campaign_type": job.campaign_type,
                    "created_at": job.created_at.isoformat(),
                    "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                    "messages": count_messages(store, job.id), "expected_messages": job.total,
                    "chunks": chunk_counts(store, job.id)}}


def _promote(store: Store, now: datetime) -> int:
    """Rows still ``waiting`` whose job has ended become ``pending`` events with their body fixed."""
    with store.session() as s:
        rows = list(s.execute(select(JobCallback, Job).join(Job, Job.id == JobCallback.job_id)
                              .where(JobCallback.status == "waiting", Job.status.in_(FINAL))
                              .with_for_update(skip_locked=True, of=JobCallback)).all())
        for cb, job in rows:
            cb.body = json.dumps(event_body(store, job, cb.event_id), separators=(",", ":"))
            cb.status, cb.next_attempt_at = "pending", now
        return len(rows)


def _claim(store: Store, now: datetime, policy: CallbackPolicy, limit: int) -> list[tuple[str, str, str, str | None]]:
    """Due pending events, leased to this drainer: (job id, url, body, secret)."""
    with store.session() as s:
        rows = list(s.scalars(select(JobCallback).where(JobCallback.status == "pending",
                                                        JobCallback.next_attempt_at <= now)
                              .order_by(JobCallback.next_attempt_at).limit(limit)
                              .with_for_update(skip_locked=True)))
        out = []
        for cb in rows:
            cb.next_attempt_at = now + timedelta(seconds=policy.lease)
            secret = s.get(CallbackSecret, cb.token_id) if cb.token_id is not None else None
            out.append((cb.job_id, cb.url, cb.body or "", secret.secret if secret else None))
        return out


def _post(client: httpx.Client, url: str, body: str, secret: str, event_id: str) -> str | None:
    """One try; None when the receiver answered 2xx, else what went wrong."""
    raw = body.encode()
    stamp = int(time.time())
    headers = {"content-type": "application/json", EVENT_HEADER: event_id, "idempotency-key": event_id,
               TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(secret, stamp, raw),
               "user-agent": "pushgen-callbacks/1"}
    try:
        resp = client.post(url, content=raw, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}: {resp.text[:200]}"


def drain(store: Store, *, now: datetime | None = None, policy: CallbackPolicy | None = None,
          client: httpx.Client | None = None, limit: int = 100, seed: int | None = None) -> Counter[str]:
    """One pass over the outbox: events of jobs that ended are queued, due ones are sent. Returns how many were
    ``delivered``, ``retry`` (another try is scheduled) and ``failed`` in this pass."""
    policy, now = policy or CallbackPolicy(), now or utcnow()
    rng = random.Random(seed)
    _promote(store, now)
    claimed = _claim(store, now, policy, limit)
    counts: Counter[str] = Counter()
    if not claimed:
        return counts
    own = client is None
    client = client or httpx.Client(timeout=policy.timeout, follow_redirects=False)
    try:
        for job_id, url, body, secret in claimed:
            event_id = json.loads(body)["id"]
            error = "the API token that asked for it was deleted" if secret is None else \
                _post(client, url, body, secret, event_id)
            counts[_settle(store, job_id, error, now, policy, rng, final=secret is None)] += 1
    finally:
        if own:
            client.close()
    return counts


def _settle(store: Store, job_id: str, error: str | None, now: datetime, policy: CallbackPolicy,
            rng: random.Random, final: bool = False) -> str:
    with store.session() as s:
        cb = s.get(JobCallback, job_id, with_for_update=True)
        cb.attempts += 1
        if error is None:
            cb.status, cb.delivered_at, cb.last_error, cb.next_attempt_at = "delivered", utcnow(), None, None
            return "delivered"
        cb.last_error = error
        if final or cb.attempts >= policy.max_attempts:
            cb.status, cb.next_attempt_at = "failed", None
            log.warning("callback of job %s failed for good after %d attempts: %s", job_id, cb.attempts, error)
            return "failed"
        cb.next_attempt_at = now + timedelta(seconds=policy.delay(cb.attempts, rng))
        return "retry"


def callback_state(store: Store, job_id: str) -> dict[str, Any] | None:
    """The job's callback as ``GET /v1/jobs/{id}`` may show it (None: the job asked for none)."""
    with store.session() as s:
        cb = s.get(JobCallback, job_id)
        if cb is None:
            return None
        return {"event_id": cb.event_id, "url": cb.url, "status": cb.status, "attempts": cb.attempts,
                "next_attempt_at": cb.next_attempt_at.isoformat() if cb.next_attempt_at else None,
                "last_error": cb.last_error}
