"""Completion callbacks against a loopback receiver (a real HTTP server on 127.0.0.1 that verifies each request
and fails the first tries), on SQLite and PostgreSQL: signed events for done, failed and cancelled jobs,
retries with backoff, at-least-once delivery with one idempotency id, replay protection, bad callback URLs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from generator import callbacks, jobs
from generator.callbacks import CallbackError, CallbackPolicy
from generator.campaign.spec import Audience, Campaign
from generator.db.chunks import chunk_counts
from generator.db.store import Store
from generator.db.tables import Job, JobCallback, utcnow
from generator.db.tokens import create_token

LATER = "2099-01-01T00:00:00Z"
CAMPAIGN = {"name": "t", "type": "price_drop", "audience": {"limit": 2}}


class Receiver:
    """The campaign tool's endpoint: answers 503 to the first ``fail_first`` requests, then checks the
    signature and timestamp with the token's secret and keeps each event once (by its id)."""

    def __init__(self, fail_first: int = 0):
        import uvicorn

        self.fail_first, self.secret = fail_first, ""
        self.requests: list[dict[str, Any]] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.rejected: list[str] = []
        app = Starlette(routes=[Route("/hooks/pushgen", self.hook, methods=["POST"])])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks/pushgen"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    async def hook(self, request: Request) -> Response:
        raw = await request.body()
        self.requests.append({"headers": dict(request.headers), "body": raw})
        if len(self.requests) <= self.fail_first:
            return JSONResponse({"error": "busy"}, status_code=503)
        try:
            event = callbacks.verify(self.secret, raw, request.headers)
        except CallbackError as exc:
            self.rejected.append(str(exc))
            return JSONResponse({"error": str(exc)}, status_code=401)
        self.events.setdefault(event["id"], event)
        return JSONResponse({"ok": True})

    def __enter__(self) -> Receiver:
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return self
            time.sleep(0.025)
        raise RuntimeError("receiver did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Store, str]]:
    from workers.api import create_app

    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = Store(url)
    token = create_token(store, "shop", "campaign_tool")
    yield TestClient(create_app(store)), store, token
    store.engine.dispose()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _submit(client: TestClient, token: str, url: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "schedule": LATER, "callback_url": url, **extra},
                    headers=_auth(token))
    assert r.status_code == 202, r.text
    return r.json()


def test_a_cancelled_job_posts_one_signed_event_after_the_receivers_first_failures(api) -> None:  # type: ignore[no-untyped-def]
    client, store, token = api
    secret = client.post("/v1/callbacks/secret", json={}, headers=_auth(token)).json()["secret"]
    with Receiver(fail_first=2) as rx:
        rx.secret = secret
        job = _submit(client, token, rx.url)  # scheduled for later: no model runs
        assert job["callback"]["status"] == "waiting"
        assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=_auth(token)).status_code == 200
        # the API's background drain made the first try: 503
        state = client.get(f"/v1/jobs/{job['id']}", headers=_auth(token)).json()["callback"]
        assert state["status"] == "pending" and state["attempts"] == 1 and "503" in state["last_error"]
        first_retry = callbacks.drain(store)  # not due yet: the backoff holds it
        assert first_retry == {} and len(rx.requests) == 1
        t = utcnow()
        for expected in ("retry", "delivered"):
            t += timedelta(hours=2)
            assert callbacks.drain(store, now=t) == {expected: 1}
        assert callbacks.drain(store, now=t + timedelta(days=1)) == {}  # delivered: never sent again
    assert len(rx.requests) == 3 and rx.rejected == []
    ids = {r["headers"]["x-pushgen-event-id"] for r in rx.requests}
    assert len(ids) == 1 and {r["headers"]["idempotency-key"] for r in rx.requests} == ids
    assert len({r["body"] for r in rx.requests}) == 1  # the same event each time
    [event] = rx.events.values()
    assert event["id"] in ids and event["type"] == "job.cancelled" and event["job"]["id"] == job["id"]
    assert event["job"]["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job['id']}", headers=_auth(token)).json()["callback"]["status"] == "delivered"


def test_done_and_failed_jobs_send_their_events_and_waiting_ones_do_not(api) -> None:  # type: ignore[no-untyped-def]
    client, store, token = api
    secret = callbacks.secret_for(store, token)
    with Receiver() as rx:
        rx.secret = secret
        done, failed, running = (_submit(client, token, rx.url)["id"] for _ in range(3))
        for job_id, outcome in ((done, "done"), (failed, "failed")):
            for index in range(sum(chunk_counts(store, job_id).values())):
                jobs._settle(store, job_id, index, outcome, None if outcome == "done" else "boom")
        assert callbacks.drain(store) == {"delivered": 2}
    kinds = {e["job"]["id"]: e["type"] for e in rx.events.values()}
    assert kinds == {done: "job.done", failed: "job.failed"} and running not in kinds


def test_every_try_is_signed_afresh_and_a_replay_or_a_forgery_is_refused() -> None:
    store = Store()
    token = create_token(store, "shop", "campaign_tool")
    secret = callbacks.secret_for(store, token)
    assert callbacks.secret_for(store, token) == secret  # one secret per token, until rotated
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=1)),
                                                    schedule=LATER))
    with Receiver() as rx:
        rx.secret = secret
        callbacks.subscribe(store, job.id, rx.url, token)
        jobs.cancel_job(store, job.id)
        assert callbacks.drain(store) == {"delivered": 1}
    sent = rx.requests[-1]
    stamp = int(sent["headers"]["x-pushgen-timestamp"])
    assert abs(stamp - time.time()) < 60
    assert callbacks.verify(secret, sent["body"], sent["headers"])["id"]
    with pytest.raises(CallbackError, match="tolerance"):  # the same request replayed ten minutes later
        callbacks.verify(secret, sent["body"], sent["headers"], now=stamp + 600)
    with pytest.raises(CallbackError, match="signature"):
        callbacks.verify(secret, sent["body"].replace(b"cancelled", b"done"), sent["headers"])
    with pytest.raises(CallbackError, match="signature"):
        callbacks.verify("whsec_other", sent["body"], sent["headers"])
    forged = {**sent["headers"], "x-pushgen-timestamp": str(stamp + 1)}  # a fresh stamp, the old signature
    with pytest.raises(CallbackError, match="signature"):
        callbacks.verify(secret, sent["body"], forged)
    assert callbacks.secret_for(store, token, rotate=True) != secret


def test_delivery_is_at_least_once_with_the_same_idempotency_id() -> None:
    store = Store()
    token = create_token(store, "shop", "campaign_tool")
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=1)),
                                                    schedule=LATER))
    with Receiver() as rx:
        rx.secret = callbacks.secret_for(store, token)
        callbacks.subscribe(store, job.id, rx.url, token)
        jobs.cancel_job(store, job.id)
        assert callbacks.drain(store) == {"delivered": 1}
        with store.session() as s:  # the receiver said 200, then the drainer died before recording it
            row = s.get(JobCallback, job.id)
            row.status, row.next_attempt_at = "pending", utcnow()
        assert callbacks.drain(store) == {"delivered": 1}
    assert len(rx.requests) == 2 and len(rx.events) == 1  # sent twice, kept once by its id


def test_an_event_claimed_by_one_drainer_is_not_sent_by_another(pg_url: str) -> None:
    store = Store(pg_url)
    token = create_token(store, "shop", "campaign_tool")
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=1)),
                                                    schedule=LATER))
    with Receiver() as rx:
        rx.secret = callbacks.secret_for(store, token)
        callbacks.subscribe(store, job.id, rx.url, token)
        jobs.cancel_job(store, job.id)
        now = utcnow()
        callbacks._promote(store, now)
        claimed = callbacks._claim(store, now, CallbackPolicy(), 10)  # another drainer holds it (sending)
        assert len(claimed) == 1 and callbacks.drain(store, now=now) == {}
        assert callbacks.drain(store, now=now + timedelta(minutes=5)) == {"delivered": 1}  # its lease ran out
    assert len(rx.requests) == 1
    store.engine.dispose()


def test_a_receiver_that_never_answers_fails_after_the_last_attempt() -> None:
    store = Store()
    token = create_token(store, "shop", "campaign_tool")
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=1)),
                                                    schedule=LATER))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    callbacks.subscribe(store, job.id, dead, token)
    jobs.cancel_job(store, job.id)
    policy = CallbackPolicy(max_attempts=3, base=1.0, timeout=2.0)
    t, seen = utcnow(), []
    for _ in range(5):
        seen.append(dict(callbacks.drain(store, now=t, policy=policy, seed=1)))
        t += timedelta(seconds=policy.cap)
    assert seen == [{"retry": 1}, {"retry": 1}, {"failed": 1}, {}, {}]
    state = callbacks.callback_state(store, job.id)
    assert state["status"] == "failed" and state["attempts"] == 3 and "Connect" in state["last_error"]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    import random

    policy, rng = CallbackPolicy(base=2.0, cap=60.0), random.Random(0)
    waits = [policy.delay(n, rng) for n in range(1, 9)]
    for n, w in enumerate(waits, start=1):
        full = min(60.0, 2.0 * 2 ** (n - 1))
        assert full / 2 <= w <= full
    assert waits[-1] <= 60.0 and waits[3] > waits[0]


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "not a url", "http://" + "x" * 2100 + ".com/",
                                 "javascript:alert(1)", 42])
def test_bad_callback_urls_are_4xx_naming_the_field_and_store_nothing(url) -> None:  # type: ignore[no-untyped-def]
    from workers.api import create_app

    store = Store()
    token = create_token(store, "shop", "campaign_tool")
    client = TestClient(create_app(store))
    r = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "callback_url": url}, headers=_auth(token))
    assert r.status_code == 422 and "callback_url" in json.dumps(r.json()["detail"])
    with store.session() as s:
        assert s.query(Job).count() == 0 and s.query(JobCallback).count() == 0


def test_callback_secrets_need_a_submitting_role() -> None:
    from workers.api import create_app

    store = Store()
    client = TestClient(create_app(store))
    assert client.post("/v1/callbacks/secret", json={}).status_code == 401
    reviewer = create_token(store, "r", "reviewer")
    assert client.post("/v1/callbacks/secret", json={}, headers=_auth(reviewer)).status_code == 403
    a, b = (create_token(store, n, "campaign_tool") for n in ("a", "b"))
    sa, sb = (client.post("/v1/callbacks/secret", json={}, headers=_auth(t)).json()["secret"] for t in (a, b))
    assert sa != sb  # per token
    assert client.post("/v1/callbacks/secret", json={}, headers=_auth(a)).json()["secret"] == sa
    rotated = client.post("/v1/callbacks/secret", json={"rotate": True}, headers=_auth(a)).json()["secret"]
    assert rotated != sa and client.post("/v1/callbacks/secret", json={}, headers=_auth(a)).json()["secret"] == rotated
    bad = client.post("/v1/callbacks/secret", json={"rotate": "yes", "colour": 1}, headers=_auth(a))
    assert bad.status_code == 422 and "rotate" in bad.text and "colour" in bad.text


def test_the_celery_task_is_acknowledged_late_and_drains() -> None:
    from workers.tasks_callbacks import deliver

    assert deliver.acks_late is True and deliver.reject_on_worker_lost is True
    store = Store()
    token = create_token(store, "shop", "campaign_tool")
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=1)),
                                                    schedule=LATER))
    with Receiver() as rx:
        rx.secret = callbacks.secret_for(store, token)
        callbacks.subscribe(store, job.id, rx.url, token)
        jobs.cancel_job(store, job.id)
        assert deliver.delay().get() == {"delivered": 1}  # eager: no broker configured
    assert len(rx.events) == 1
