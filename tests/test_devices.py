"""``POST /v1/devices``, ``DELETE /v1/devices/{token}`` and the admins' listing, on SQLite and PostgreSQL: dedupe by
token, a token moving to its latest user, roles, bad inputs (4xx naming the field, nothing stored), tokens the
FCM and APNs stand-ins declare dead, and erasure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from generator.db.store import Store
from generator.db.tables import DeviceToken
from generator.db.tokens import create_token
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job
from workers.senders import ApnsConfig, ApnsSender, FcmConfig, FcmSender, RetryPolicy
from workers.senders.standins import ApnsStandIn, FcmStandIn

NOON_UTC = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Store, dict[str, dict[str, str]]]]:
    from workers.api import create_app

    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = Store(url)
    client = TestClient(create_app(store))
    tokens = {r: {"Authorization": f"Bearer {create_token(store, r, r)}"} for r in ("campaign_tool", "reviewer",
                                                                                    "admin")}
    yield client, store, tokens
    store.engine.dispose()


def _register(client: TestClient, auth: dict[str, str], **body: Any) -> Any:
    return client.post("/v1/devices", json={"platform": "fcm", "app": "com.example.shop", "locale": "en_US",
                                            **body}, headers=auth)


def _devices(client: TestClient, auth: dict[str, str], user: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/users/{user}/devices", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["devices"]


def test_a_token_is_stored_once_and_moves_to_its_latest_user(api) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    tool, admin = tokens["campaign_tool"], tokens["admin"]
    first = _register(client, tool, user_id="U1", token="fcm-token-1")
    assert first.status_code == 201 and first.json()["created"] is True
    again = _register(client, tool, user_id="U1", token="fcm-token-1", locale="de_DE")
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["moved_from"] is None
    assert [(d["token"], d["locale"]) for d in _devices(client, admin, "U1")] == [("fcm-token-1", "de_DE")]
    moved = _register(client, tool, user_id="U2", token="fcm-token-1", platform="apns")
    assert moved.status_code == 200 and moved.json()["moved_from"] == "U1"
    assert _devices(client, admin, "U1") == []
    [d] = _devices(client, admin, "U2")
    assert (d["platform"], d["app"], d["dead"]) == ("apns", "com.example.shop", False)
    with store.session() as s:
        assert s.query(DeviceToken).count() == 1
    assert client.delete("/v1/devices/fcm-token-1", headers=tool).json() == {"token": "fcm-token-1",
                                                                            "deleted": True}
    assert client.delete("/v1/devices/fcm-token-1", headers=tool).status_code == 404
    assert _devices(client, admin, "U2") == []


def test_roles_decide_who_registers_and_who_lists(api) -> None:  # type: ignore[no-untyped-def]
    client, _, tokens = api
    assert _register(client, {}, user_id="U1", token="t1").status_code == 401
    assert _register(client, {"Authorization": "Bearer pg_nope"}, user_id="U1", token="t1").status_code == 401
    assert _register(client, tokens["reviewer"], user_id="U1", token="t1").status_code == 403
    assert _register(client, tokens["admin"], user_id="U1", token="t1").status_code == 201
    assert client.get("/v1/users/U1/devices", headers=tokens["campaign_tool"]).status_code == 403
    assert client.get("/v1/users/U1/devices", headers=tokens["reviewer"]).status_code == 403
    assert client.delete("/v1/devices/t1", headers=tokens["reviewer"]).status_code == 403
    assert client.get("/openapi.json").json()["paths"]["/v1/devices"]["post"]


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": "U1", "token": "t", "platform": "sms"}, "platform"),
    ({"user_id": "U1", "token": "has space"}, "token"),
    ({"user_id": "U1", "token": "a/b"}, "token"),
    ({"user_id": "U1", "token": "x" * 1025}, "token"),
    ({"user_id": "", "token": "t"}, "user_id"),
    ({"token": "t"}, "user_id"),
    ({"user_id": "U1", "token": "t", "locale": "english"}, "locale"),
    ({"user_id": "U1", "token": "t", "app": "com example"}, "app"),
    ({"user_id": "U1", "token": "t", "colour": "red"}, "colour"),
    ({"user_id": "U1", "token": ["t"]}, "token"),
])
def test_bad_registrations_are_4xx_naming_the_field_and_store_nothing(api, body, field) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    r = client.post("/v1/devices", json={"platform": "fcm", **body}, headers=tokens["campaign_tool"])
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"])
    with store.session() as s:
        assert s.query(DeviceToken).count() == 0


def test_bad_token_in_the_path_is_4xx() -> None:
    from workers.api import create_app

    store = Store()
    client = TestClient(create_app(store))
    auth = {"Authorization": f"Bearer {create_token(store, 't', 'campaign_tool')}"}
    r = client.delete("/v1/devices/" + "x" * 1025, headers=auth)
    assert r.status_code == 422 and "token" in r.text


def test_tokens_the_providers_kill_show_dead_and_come_back_when_registered_again(api) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    tool, admin = tokens["campaign_tool"], tokens["admin"]
    users = ["U1", "U2", "U3", "U4"]
    job = seed_ab_job(store, users, variants=1, token_prefix="seeded-")
    for u in users:  # the seeded tokens go; the app registers these instead
        assert client.delete(f"/v1/devices/seeded-{u}", headers=tool).status_code == 200
    registered = {"U1": ("fcm", "unregistered-U1"), "U2": ("fcm", "ok-U2"), "U3": ("apns", "bad-U3"),
                  "U4": ("apns", "unregistered-U4")}
    for u, (platform, token) in registered.items():
        assert _register(client, tool, user_id=u, token=token, platform=platform).status_code == 201
    rules = ex.SendRules(frequency_cap=0, quiet_start=0, quiet_end=0)
    exp = ex.create_experiment(store, job, holdout=0, rules=rules)
    ex.assign(store, exp.id, users)
    with FcmStandIn() as fcm, ApnsStandIn() as apns:
        senders = [FcmSender(FcmConfig(fcm.project_id, fcm.access_token, base_url=fcm.url),
                             retry=RetryPolicy(max_attempts=2), sleep=lambda _: None),
                   ApnsSender(ApnsConfig(apns.team_id, apns.key_id, apns.private_key, apns.topic,
                                         base_url=apns.url, verify=apns.ssl_context),
                              retry=RetryPolicy(max_attempts=2), sleep=lambda _: None)]
        counts = ex.send(store, exp.id, senders, now=NOON_UTC)
        for s in senders:
            s.close()
    assert counts == {"dead_token": 3, "sent": 1}
    state = {u: _devices(client, admin, u)[0] for u in users}
    assert not state["U2"]["dead"]
    assert state["U1"]["dead"] and "UNREGISTERED" in state["U1"]["dead_reason"]
    assert state["U3"]["dead"] and "BadDeviceToken" in state["U3"]["dead_reason"]
    assert state["U4"]["dead"] and state["U4"]["dead_reason"].startswith("410")
    again = _register(client, tool, user_id="U1", token="unregistered-U1")
    assert again.json()["revived"] is True and _devices(client, admin, "U1")[0]["dead"] is False


def test_erasure_removes_the_users_devices(api) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    for n, platform in enumerate(("fcm", "apns", "webhook")):
        _register(client, tokens["campaign_tool"], user_id="U9", token=f"tok-{n}", platform=platform)
    _register(client, tokens["campaign_tool"], user_id="U8", token="tok-other")
    r = client.delete("/v1/users/U9", headers=tokens["admin"])
    assert r.status_code == 200 and r.json()["device_tokens_erased"] == 3
    assert _devices(client, tokens["admin"], "U9") == []
    assert [d["token"] for d in _devices(client, tokens["admin"], "U8")] == ["tok-other"]
