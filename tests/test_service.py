"""The jobs library and HTTP API on the embedded default (no broker), with a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from generator import jobs
from generator.campaign.spec import Audience, Campaign
from generator.core.config import get_settings
from generator.db.chunks import add_chunks
from generator.db.messages import count_messages
from generator.db.store import Store
from generator.db.tokens import create_token


@pytest.fixture
def service(tiny_llama: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PUSHGEN_GENERATOR_MODEL", str(tiny_llama))
    monkeypatch.setenv("PUSHGEN_LOCALE_MODELS", "{}")
    monkeypatch.setenv("PUSHGEN_CHUNK_SIZE", "2")
    get_settings.cache_clear()
    jobs._RUNNERS.clear()
    from workers.api import create_app

    store = Store()
    client = TestClient(create_app(store))
    tokens = {r: create_token(store, r, r) for r in ("campaign_tool", "reviewer", "admin")}
    yield client, store, tokens
    jobs._RUNNERS.clear()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CAMPAIGN = {"name": "t", "type": "price_drop", "candidates": 1, "retries": 0, "audience": {"limit": 5}}


def test_job_over_http_completes_with_one_message_per_user(service) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = service
    r = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "idempotency_key": "k1"},
                    headers=_auth(tokens["campaign_tool"]))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    status = client.get(f"/v1/jobs/{job_id}", headers=_auth(tokens["reviewer"])).json()
    assert status["status"] == "done" and status["progress"] == 1.0 and status["chunks"] == {"done": 3}
    page = client.get(f"/v1/jobs/{job_id}/messages?limit=3", headers=_auth(tokens["reviewer"])).json()
    assert page["total"] == 5 and len(page["messages"]) == 3
    rest = client.get(f"/v1/jobs/{job_id}/messages?offset=3", headers=_auth(tokens["reviewer"])).json()
    users = [m["user_id"] for m in page["messages"] + rest["messages"]]
    assert len(set(users)) == 5 and all(m["status"] in ("passed", "fallback", "flagged") for m in rest["messages"])
    again = client.post("/v1/jobs", json={"campaign": CAMPAIGN, "idempotency_key": "k1"},
                        headers=_auth(tokens["campaign_tool"]))
    assert again.json()["id"] == job_id and again.json()["created"] is False
    assert client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]


def test_auth_and_roles(service) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = service
    assert client.post("/v1/jobs", json={"campaign": CAMPAIGN}).status_code == 401
    assert client.post("/v1/jobs", json={"campaign": CAMPAIGN}, headers=_auth("pg_wrong")).status_code == 401
    assert client.post("/v1/jobs", json={"campaign": CAMPAIGN}, headers=_auth(tokens["reviewer"])).status_code == 403
    assert client.delete("/v1/users/U001", headers=_auth(tokens["campaign_tool"])).status_code == 403
    with store.session() as s:  # only hashes are stored
        from generator.db.tables import ApiToken

        assert all(t.token_hash != tokens[t.role] and len(t.token_hash) == 64 for t in s.query(ApiToken))


@pytest.mark.parametrize(("payload", "field"), [
    ({"campaign": {**CAMPAIGN, "type": "teleport"}}, "type"),
    ({"campaign": {**CAMPAIGN, "variants": 0}}, "variants"),
    ({"campaign": {**CAMPAIGN, "audience": {"limit": "many"}}}, "limit"),
    ({"campaign": {**CAMPAIGN, "audience": {"user_ids": ["NOPE"]}}}, None),
    ({"campaign": "not an object"}, "campaign"),
    ({}, "campaign"),
])
def test_malformed_payloads_are_4xx_and_store_nothing(service, payload, field) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = service
    r = client.post("/v1/jobs", json=payload, headers=_auth(tokens["campaign_tool"]))
    assert 400 <= r.status_code < 500, r.text
    if field:
        assert field in json.dumps(r.json()["detail"])
    with store.session() as s:
        from generator.db.tables import Job

        assert s.query(Job).count() == 0


def test_oversized_request_is_rejected(service) -> None:  # type: ignore[no-untyped-def]
    client, _, tokens = service
    big = {"campaign": {**CAMPAIGN, "name": "x" * 1_200_000}}
    assert client.post("/v1/jobs", json=big, headers=_auth(tokens["campaign_tool"])).status_code == 413


def test_poison_chunk_is_dead_lettered_and_the_rest_completes(service) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = service
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", candidates=1, retries=0,
                                                                       audience=Audience(limit=4))))
    add_chunks(store, job.id, [[], [], ["U-DOES-NOT-EXIST"]])  # chunk 2 is poison: its user is unknown
    status = jobs.run_job_inline(store, job.id)
    assert status["status"] == "done" and status["chunks"] == {"done": 2, "failed": 1}
    with store.session() as s:
        from generator.db.tables import JobChunk

        poison = s.get(JobChunk, (job.id, 2))
        assert poison.deliveries == get_settings().max_deliveries and "unknown user ids" in poison.error
    assert count_messages(store, job.id) == 4
    jobs.run_chunk(store, job.id, 0)  # a redelivered chunk rewrites, never duplicates
    assert count_messages(store, job.id) == 4


def test_cancel_and_erase(service) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = service
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=2))))
    r = client.post(f"/v1/jobs/{job.id}/cancel", headers=_auth(tokens["campaign_tool"]))
    assert r.json()["status"] == "cancelled"
    assert jobs.run_chunk(store, job.id, 0) == "cancelled" and count_messages(store, job.id) == 0
    done = client.post("/v1/jobs", json={"campaign": CAMPAIGN}, headers=_auth(tokens["campaign_tool"])).json()
    page = client.get(f"/v1/jobs/{done['id']}/messages", headers=_auth(tokens["admin"])).json()
    user = page["messages"][0]["user_id"]
    r = client.delete(f"/v1/users/{user}", headers=_auth(tokens["admin"]))
    assert r.json()["messages_erased"] == 1
    left = client.get(f"/v1/jobs/{done['id']}/messages", headers=_auth(tokens["admin"])).json()["messages"]
    assert user not in {m["user_id"] for m in left}
    assert any(m["status"] == "erased" and m["title"] == "" for m in left)
