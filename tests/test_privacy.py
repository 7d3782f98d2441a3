"""``DELETE /v1/users/{id}``: a user's events, reviews, device tokens and the personal parts of their messages are
erased, the rest is left as it was, and the erasure is recorded (when, by whom, how many rows)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from generator import jobs
from generator.core import data
from generator.core.config import REPO_ROOT, get_settings
from generator.core.data import load_shop
from generator.db.store import Store
from generator.db.suppression import erasures, suppressed
from generator.db.tokens import create_token
from generator.experiments.devices import list_devices, register

SHOP = REPO_ROOT / "examples" / "shop"
USER, OTHER = "U069", "U061"  # both have events and reviews in the sample shop


@pytest.fixture
def erasable(tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    shop = tmp_path / "shop"
    shutil.copytree(SHOP, shop)
    monkeypatch.setenv("PUSHGEN_SHOP_DIR", str(shop))
    monkeypatch.setenv("PUSHGEN_GENERATOR_MODEL", str(tiny_llama))
    monkeypatch.setenv("PUSHGEN_LOCALE_MODELS", "{}")
    monkeypatch.setenv("PUSHGEN_MAX_NEW_TOKENS", "8")
    get_settings.cache_clear()
    jobs._RUNNERS.clear()
    from workers.api import create_app

    store = Store()
    client = TestClient(create_app(store))
    admin = create_token(store, "dpo-desk", "admin")
    tool = create_token(store, "shop", "campaign_tool")
    yield client, store, shop, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {tool}"}
    jobs._RUNNERS.clear()


def test_erasure_removes_the_users_data_everywhere_and_records_it(erasable) -> None:  # type: ignore[no-untyped-def]
    client, store, shop, admin, tool = erasable
    campaign = {"type": "price_drop", "candidates": 1, "retries": 0, "variants": 2,
                "audience": {"user_ids": [USER, OTHER]}}
    job_id = client.post("/v1/jobs", json={"campaign": campaign}, headers=tool).json()["id"]
    register(store, user_id=USER, platform="fcm", token="fcm-token-of-the-user")
    register(store, user_id=USER, platform="apns", token="apns-token-of-the-user")
    register(store, user_id=OTHER, platform="fcm", token="fcm-token-of-another")
    before = load_shop(shop)
    data.cached_shop(shop)  # a worker's cached copy, which must not outlive the erasure
    mine = {k: sum(r.user_id == USER for r in getattr(before, k)) for k in ("events", "reviews")}
    assert mine["events"] > 0 and mine["reviews"] > 0

    r = client.delete(f"/v1/users/{USER}", headers=admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["events_erased"] == mine["events"] and out["reviews_erased"] == mine["reviews"]
    assert out["messages_erased"] == 2 and out["device_tokens_erased"] == 2
    assert out["requested_by"] == "dpo-desk (admin)"

    after = load_shop(shop)  # the files still load, without the user's rows and with everyone else's
    for kind in ("events", "reviews"):
        assert not [row for row in getattr(after, kind) if row.user_id == USER]
        assert [row for row in getattr(after, kind)] == [row for row in getattr(before, kind) if row.user_id != USER]
    assert not any(USER in p.read_text(encoding="utf-8") for p in (shop / "events.csv", shop / "reviews.csv"))
    assert not [e for e in data.cached_shop(shop).events if e.user_id == USER]
    assert list_devices(store, USER) == []
    assert [d["token"] for d in list_devices(store, OTHER)] == ["fcm-token-of-another"]

    msgs = client.get(f"/v1/jobs/{job_id}/messages", headers=tool).json()["messages"]
    assert USER not in {m["user_id"] for m in msgs}
    erased = [m for m in msgs if m["status"] == "erased"]
    assert len(erased) == 2 and all(m["title"] == m["body"] == "" and m["deep_link"] is None for m in erased)
    assert sum(m["user_id"] == OTHER and m["title"] != "" for m in msgs) == 2

    [record] = erasures(store, USER)
    assert record.requested_by == "dpo-desk (admin)"
    assert record.user_hash != hashlib.sha256(USER.encode()).hexdigest()  # keyed: nobody can recompute it
    assert record.counts == {"events": mine["events"], "reviews": mine["reviews"], "users": 1, "messages": 2,
                             "device_tokens": 2, "job_rows": 2}  # the job's params and its chunk named the user
    assert USER not in f"{record.user_hash} {record.requested_by} {record.counts}"  # the record is not personal

    again = client.delete(f"/v1/users/{USER}", headers=admin).json()  # asking twice is harmless, and recorded
    assert again["events_erased"] == again["messages_erased"] == again["device_tokens_erased"] == 0
    assert again["users_erased"] == 0
    assert len(erasures(store, USER)) == 2 and erasures(store, OTHER) == []


def test_erasure_needs_the_admin_role_and_then_changes_nothing(erasable) -> None:  # type: ignore[no-untyped-def]
    client, store, shop, _, tool = erasable
    events = (shop / "events.csv").read_bytes()
    register(store, user_id=USER, platform="fcm", token="t")
    assert client.delete(f"/v1/users/{USER}", headers=tool).status_code == 403
    assert client.delete(f"/v1/users/{USER}").status_code == 401
    assert (shop / "events.csv").read_bytes() == events and erasures(store) == [] and list_devices(store, USER)


def test_without_a_configured_shop_the_bundled_sample_is_never_rewritten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUSHGEN_SHOP_DIR", raising=False)
    get_settings.cache_clear()
    from generator import privacy

    digest = {p.name: p.read_bytes() for p in SHOP.glob("*.csv")}
    store = Store()
    out = privacy.erase_user(store, USER, requested_by="test")
    assert out["events_erased"] == out["reviews_erased"] == out["users_erased"] == 0
    assert len(erasures(store, USER)) == 1 and suppressed(store, [USER, OTHER]) == {USER}
    assert {p.name: p.read_bytes() for p in SHOP.glob("*.csv")} == digest
