"""Push senders against local stand-in servers that speak the providers' protocols: FCM HTTP v1 (HTTP/1.1), APNs
(HTTP/2 over TLS, ES256 provider tokens) and a webhook; the documented error matrix, the payload limit, retries
with backoff and Retry-After, the token bucket, dead tokens, and sends that never happen twice."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from generator.core.payload import encoded_size
from generator.db.store import Store
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job
from workers.senders import (
    ApnsConfig,
    ApnsSender,
    DryRunSender,
    FcmConfig,
    FcmSender,
    RetryPolicy,
    TokenBucket,
    WebhookSender,
)
from workers.senders.base import parse_retry_after
from workers.senders.standins import ApnsStandIn, FcmStandIn, WebhookStandIn

PUSH = {"title": "Desk lamp is on sale", "body": "Now 19.99, 20% off.", "deep_link": "shop://item/I1",
        "idempotency_key": "key-1", "collapse_id": "exp-1", "data": {"arm": "A", "send_key": "key-1"}}
NOON_UTC = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fcm_server():  # type: ignore[no-untyped-def]
    with FcmStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def apns_server():  # type: ignore[no-untyped-def]
    with ApnsStandIn() as server:
        yield server


def fcm_sender(server: FcmStandIn, waits: list[float], **kw: Any) -> FcmSender:
    return FcmSender(FcmConfig(server.project_id, server.access_token, base_url=server.url), sleep=waits.append,
                     retry=RetryPolicy(max_attempts=4, base=0.5, seed=1), **kw)


def apns_sender(server: ApnsStandIn, waits: list[float], **kw: Any) -> ApnsSender:
    cfg = ApnsConfig(server.team_id, server.key_id, server.private_key, server.topic, base_url=server.url,
                     verify=server.ssl_context)
    return ApnsSender(cfg, sleep=waits.append, retry=RetryPolicy(max_attempts=4, base=0.5, seed=1), **kw)


# token prefix -> (FCM: status, attempts, codes) and (APNs: status, attempts, codes)
MATRIX = {
    "ok": (("sent", [200]), ("sent", [200])),
    "unregistered": (("invalid_token", [404]), ("invalid_token", [410])),
    "bad": (("failed", [400]), ("invalid_token", [400])),
    "auth": (("failed", [401]), ("failed", [403])),
    "quota": (("sent", [429, 200]), ("sent", [429, 200])),
    "flaky": (("sent", [503, 503, 200]), ("sent", [503, 503, 200])),
    "down": (("retry", [500, 500, 500, 500]), ("retry", [500, 500, 500, 500])),
}


@pytest.mark.parametrize("prefix", list(MATRIX))
def test_fcm_error_matrix(fcm_server: FcmStandIn, prefix: str) -> None:
    waits: list[float] = []
    status, codes = MATRIX[prefix][0]
    result = fcm_sender(fcm_server, waits).deliver(f"{prefix}-fcm-{random.random()}", PUSH)
    assert (result.status, result.history, result.attempts) == (status, codes, len(codes))
    assert len(waits) == len(codes) - (1 if status != "retry" else 1)  # a wait before each retry
    if prefix == "quota":
        assert waits[0] >= 1.0  # Retry-After: 1 is respected
    if status == "sent":
        assert result.provider_id.startswith(f"projects/{fcm_server.project_id}/messages/")


@pytest.mark.parametrize("prefix", list(MATRIX))
def test_apns_error_matrix_over_http2(apns_server: ApnsStandIn, prefix: str) -> None:
    waits: list[float] = []
    status, codes = MATRIX[prefix][1]
    n = len(apns_server.received)
    result = apns_sender(apns_server, waits).deliver(f"{prefix}-apns-{random.random()}", PUSH)
    assert (result.status, result.history) == (status, codes)
    assert {r["http_version"] for r in apns_server.received[n:]} == {"2"}
    if status == "sent":
        assert result.provider_id == apns_server.received[-1]["headers"]["apns-id"]


def test_fcm_request_has_the_http_v1_shape_and_bearer_token(fcm_server: FcmStandIn) -> None:
    fcm_sender(fcm_server, []).deliver("ok-shape", PUSH)
    req = fcm_server.received[-1]
    assert req["path"] == f"/v1/projects/{fcm_server.project_id}/messages:send"
    assert req["headers"]["authorization"] == f"Bearer {fcm_server.access_token}"
    msg = req["json"]["message"]
    assert msg["token"] == "ok-shape" and msg["notification"] == {"title": PUSH["title"], "body": PUSH["body"]}
    assert msg["data"] == {"arm": "A", "send_key": "key-1"} and msg["android"]["priority"] == "high"


def test_apns_request_carries_a_verified_es256_token_and_headers(apns_server: ApnsStandIn) -> None:
    import jwt

    sender = apns_sender(apns_server, [])
    assert sender.deliver("ok-headers", PUSH).status == "sent"
    req = apns_server.received[-1]
    h = req["headers"]
    token = h["authorization"].removeprefix("bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": apns_server.key_id, "typ": "JWT"}
    assert jwt.decode(token, apns_server.public_key, algorithms=["ES256"])["iss"] == apns_server.team_id
    assert h["apns-topic"] == apns_server.topic and h["apns-push-type"] == "alert" and h["apns-priority"] == "10"
    assert h["apns-collapse-id"] == "exp-1"
    assert req["json"]["aps"]["alert"] == {"title": PUSH["title"], "body": PUSH["body"]}


def test_apns_provider_token_is_reused_for_50_minutes_then_renewed(apns_server: ApnsStandIn) -> None:
    now = [1_000_000.0]
    cfg = ApnsConfig(apns_server.team_id, apns_server.key_id, apns_server.private_key, apns_server.topic)
    sender = ApnsSender(cfg, client=None, clock=lambda: now[0])
    first = sender.provider_token()
    now[0] += 49 * 60
    assert sender.provider_token() == first
    now[0] += 2 * 60
    assert sender.provider_token() != first and sender.jwt_refreshes == 2
    sender.close()


def test_payload_over_4096_bytes_after_json_encoding_is_refused_and_not_sent(fcm_server: FcmStandIn,
                                                                           apns_server: ApnsStandIn) -> None:
    big = {**PUSH, "body": "é" * 2100}  # 2,100 characters but 4,200 bytes in UTF-8
    assert len(big["body"]) < 4096 < encoded_size(big)
    n_fcm, n_apns = len(fcm_server.received), len(apns_server.received)
    for sender in (fcm_sender(fcm_server, []), apns_sender(apns_server, [])):
        result = sender.deliver("ok-big", big)
        assert result.status == "too_large" and "4096" in result.error and "bytes after JSON encoding" in result.error
    assert len(fcm_server.received) == n_fcm and len(apns_server.received) == n_apns


def test_webhook_signs_and_marks_gone_tokens() -> None:
    with WebhookStandIn(secret="s3cret") as hook:
        waits: list[float] = []
        sender = WebhookSender(hook.hook_url, secret="s3cret", sleep=waits.append, retry=RetryPolicy(seed=0))
        assert sender.deliver("ok-w", PUSH).status == "sent"
        assert sender.deliver("unregistered-w", PUSH).status == "invalid_token"
        assert sender.deliver("bad-w", PUSH).status == "failed"
        flaky = sender.deliver("flaky-w", {**PUSH, "idempotency_key": "key-2"})
        assert flaky.status == "sent" and flaky.history == [503, 503, 200] and min(waits) >= 2.0
        wrong = WebhookSender(hook.hook_url, secret="wrong", sleep=waits.append).deliver("ok-x", PUSH)
        assert wrong.status == "failed" and wrong.code == 401
        assert [r["json"]["token"] for r in hook.received] == ["ok-w", "flaky-w"]


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy, rng = RetryPolicy(base=0.5, cap=4.0), random.Random(0)
    for attempt in range(1, 8):
        draws = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert 0 <= min(draws) and max(draws) <= min(4.0, 0.5 * 2**attempt)
        assert max(draws) > 0.7 * min(4.0, 0.5 * 2**attempt)  # jitter spreads over the whole window
    assert policy.delay(1, 10.0, rng) == 10.0  # Retry-After wins when longer
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412480.0) == 0.0


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    clock, slept = [0.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    bucket = TokenBucket(rate=10, burst=5, clock=lambda: clock[0], sleep=sleep)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    for _ in range(10):
        bucket.acquire()
    assert clock[0] == pytest.approx(1.0, abs=0.11)  # ten more at 10/s after the burst
    clock[0] += 100
    assert sum(bucket.try_acquire() for _ in range(20)) == 5  # never more than the burst


def test_experiment_send_marks_dead_tokens_retries_transients_and_never_sends_twice(
        fcm_server: FcmStandIn) -> None:
    store = Store()
    users = ["ok1", "ok2", "gone", "flaky", "down"]
    job = seed_ab_job(store, users, token_prefix="")
    with store.session() as s:  # give each user a token whose prefix picks the stand-in's answer
        from generator.db.tables import DeviceToken

        for t in s.query(DeviceToken).all():
            t.token = {"gone": "unregistered-", "flaky": "flaky-", "down": "down-"}.get(t.user_id, "ok-") + \
                f"{t.user_id}-{job[:6]}"
    exp = ex.create_experiment(store, job, holdout=0, salt="snd", rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, users)
    waits: list[float] = []
    sender = fcm_sender(fcm_server, waits, rate_limit=50)
    before = len(fcm_server.received)
    counts = ex.send(store, exp.id, sender, timezones={}, now=NOON_UTC)
    assert counts == {"sent": 3, "dead_token": 1, "retry": 1}
    per_token = {}
    for r in fcm_server.received[before:]:
        per_token[r["json"]["message"]["token"].split("-")[0]] = per_token.get(
            r["json"]["message"]["token"].split("-")[0], 0) + 1
    assert per_token == {"ok": 2, "unregistered": 1, "flaky": 3, "down": 4}  # the dead token is tried once
    rows = {s.user_id: s for s in ex.sends(store, exp.id)}
    assert rows["gone"].status == "dead_token" and rows["gone"].device_token_id in ex.dead_tokens(store)
    assert rows["flaky"].attempts == 3 and rows["down"].status == "retry"
    # the task runs again (a redelivery): only the transient failure is tried again; nothing is sent twice
    again = ex.send(store, exp.id, sender, timezones={}, now=NOON_UTC)
    assert again == {"retry": 1}
    assert len(fcm_server.received) - before == 10 + 4
    # the dead token is never used again: a new experiment finds no live token for that user
    exp2 = ex.create_experiment(store, job, holdout=0, salt="snd2",
                                rules=ex.SendRules(quiet_start=0, quiet_end=0, frequency_cap=0))
    ex.assign(store, exp2.id, ["gone"])
    assert ex.send(store, exp2.id, sender, timezones={}, now=NOON_UTC) == {"no_token": 1}


def test_dry_run_sender_checks_the_size_and_sends_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sender = DryRunSender(platform="apns", out=tmp_path / "dry.jsonl")
    assert sender.deliver("t1", PUSH).status == "sent"
    assert sender.deliver("t2", {**PUSH, "body": "x" * 5000}).status == "too_large"
    assert len((tmp_path / "dry.jsonl").read_text().splitlines()) == 1
