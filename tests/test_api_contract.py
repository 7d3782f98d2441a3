"""Malformed requests: schemathesis generates requests that break the app's own OpenAPI spec, and hand-written ones
break it in ways a generator rarely tries. Every one is answered 4xx (never 5xx) and stores nothing."""

from __future__ import annotations

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from generator.db.store import Store
from generator.db.tables import Erasure, Job, JobChunk, Message
from generator.db.tokens import create_token

ROLES = ("campaign_tool", "reviewer", "admin")
GOOD = {"name": "t", "type": "price_drop", "candidates": 1, "retries": 0, "audience": {"limit": 2}}


@pytest.fixture
def app_store():  # type: ignore[no-untyped-def]
    from workers.api import create_app

    store = Store()
    return create_app(store), store, {r: create_token(store, r, r) for r in ROLES}


def _stored(store: Store) -> dict[str, int]:
    with store.session() as s:
        return {t.__tablename__: s.query(t).count() for t in (Job, JobChunk, Message, Erasure)}


NOTHING = {"jobs": 0, "job_chunks": 0, "messages": 0, "erasures": 0}


def _operations() -> list[tuple[str, str]]:
    from workers.api import create_app

    spec = create_app(store=object()).openapi()  # the spec only; no store is touched
    return [(method.upper(), path) for path, ops in spec["paths"].items() if path.startswith("/v1/") for method in ops]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_requests_that_break_the_spec_get_4xx_and_store_nothing(app_store, method, path) -> None:  # type: ignore[no-untyped-def]
    app, store, tokens = app_store
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(with_security_parameters=False)  # a valid token: the request itself is broken
    operation = schema[path][method]

    @settings(max_examples=15, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(GenerationMode.NEGATIVE))
    def check(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert 400 <= response.status_code < 500, (case.method, case.formatted_path, case.query, case.body,
                                                    response.status_code, response.text[:300])
        assert _stored(store) == NOTHING

    check()


def _post(client: TestClient, token: str, **kwargs):  # type: ignore[no-untyped-def]
    return client.post("/v1/jobs", headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
                       **kwargs)


@pytest.mark.parametrize(("body", "field"), [
    ({"campaign": {**GOOD, "template": "../../etc/passwd"}}, "template"),
    ({"campaign": {**GOOD, "template": "no_such_template.en"}}, "template"),
    ({"campaign": {**GOOD, "adapter": "../../../root"}}, "adapter"),
    ({"campaign": {**GOOD, "item_ids": ["SKU-0001", "SKU-NOPE"]}}, "item_ids"),
    ({"campaign": {**GOOD, "candidates": 10_000}}, "candidates"),
    ({"campaign": {**GOOD, "variants": -1}}, "variants"),
    ({"campaign": {**GOOD, "audience": {"locales": ["xx_XX"]}}}, "audience"),
    ({"campaign": {**GOOD, "type": "coupon"}}, "coupon"),
    ({"campaign": {**GOOD, "audience": {"limit": 0}}}, "limit"),
    ({"campaign": GOOD, "idempotency_key": "k" * 201}, "idempotency_key"),
    ({"campaign": GOOD, "schedule": "next tuesday"}, "schedule"),
    ({"campaign": [GOOD]}, "campaign"),
    ([{"campaign": GOOD}], None),
    ("campaign", None),
    (None, None),
])
def test_hand_written_malformed_jobs_are_4xx_naming_the_field_and_store_nothing(app_store, body, field) -> None:  # type: ignore[no-untyped-def]
    app, store, tokens = app_store
    r = _post(TestClient(app), tokens["campaign_tool"], json=body)
    assert 400 <= r.status_code < 500, r.text
    if field:
        assert field in json.dumps(r.json()["detail"])
    assert _stored(store) == NOTHING


@pytest.mark.parametrize(("content", "headers"), [
    (b'{"campaign": {"type": "price_drop"', {"Content-Type": "application/json"}),  # cut off
    (b"\xff\xfe\x00garbage", {"Content-Type": "application/json"}),  # not UTF-8
    (b"campaign=price_drop", {"Content-Type": "application/x-www-form-urlencoded"}),
    (json.dumps({"campaign": GOOD}).encode(), {"Content-Type": "text/plain"}),
    (b'{"campaign": ' * 5000 + b"1" + b"}" * 5000, {"Content-Type": "application/json"}),  # deep nesting
    (b"x" * 2_000_000, {"Content-Type": "application/json"}),  # over the size limit
    (b"", {"Content-Type": "application/json"}),
])
def test_bodies_that_are_not_a_job_are_4xx_and_store_nothing(app_store, content, headers) -> None:  # type: ignore[no-untyped-def]
    app, store, tokens = app_store
    r = _post(TestClient(app), tokens["campaign_tool"], content=content, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    assert _stored(store) == NOTHING


def test_a_body_without_content_length_over_the_limit_is_refused(app_store) -> None:  # type: ignore[no-untyped-def]
    app, store, tokens = app_store
    r = _post(TestClient(app), tokens["campaign_tool"], content=iter([b"{" + b" " * 1_100_000 + b"}"]),
              headers={"Content-Type": "application/json"})  # a generator body is sent chunked
    assert r.status_code == 413 and _stored(store) == NOTHING


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/jobs/nope/messages?limit=0"),
    ("GET", "/v1/jobs/nope/messages?limit=501"),
    ("GET", "/v1/jobs/nope/messages?offset=-1"),
    ("GET", "/v1/jobs/nope/messages?offset=ten"),
    ("GET", "/v1/jobs/nope"),
    ("POST", "/v1/jobs/nope/cancel"),
    ("DELETE", "/v1/users/" + "u" * 201),
    ("PUT", "/v1/jobs"),
])
def test_malformed_reads_and_unknown_ids_are_4xx_and_store_nothing(app_store, method, path) -> None:  # type: ignore[no-untyped-def]
    app, store, tokens = app_store
    r = TestClient(app).request(method, path, headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert 400 <= r.status_code < 500, r.text
    assert _stored(store) == NOTHING
