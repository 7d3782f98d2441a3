"""Issue 18, the service: outcome events only for sends that went out, deep links encoded and on allow-listed hosts,
``pushgen serve`` running the recovery pass, logout that ends the session on the server, ``pushgen token
list/delete``, and review pages that load no image from outside the app."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from generator import jobs
from generator.campaign.runner import CampaignRunner
from generator.campaign.spec import Audience, Campaign
from generator.core.config import get_settings
from generator.core.data import Item, load_shop
from generator.core.links import LinkError, deep_link
from generator.db.jobs import get_job, set_job_status
from generator.db.messages import count_messages
from generator.db.store import Store
from generator.db.tables import JobChunk, utcnow
from generator.db.tokens import create_token, list_tokens, role_of
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job
from tests.review_fixtures import seed_review_job
from tests.test_cli_errors import assert_one_line_error, pushgen
from workers.senders.dryrun import DryRunSender

# --- outcome events -----------------------------------------------------------------------------------------

def test_events_are_refused_for_sends_that_never_went_out() -> None:
    from workers.api import create_app

    store = Store()
    users = ["u1", "u2", "u3", "u4"]
    job = seed_ab_job(store, users, variants=1)
    with store.session() as s:  # u2's copy was rejected (dropped); u3 has no device token
        from generator.db.tables import DeviceToken, Message

        s.execute(update(Message).where(Message.user_id == "u2").values(review_status="rejected"))
        s.query(DeviceToken).filter(DeviceToken.user_id == "u3").delete()
    exp = ex.create_experiment(store, job, variants=[0], holdout=0.0, rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, users)
    ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={})
    status = {s.user_id: s.status for s in ex.sends(store, exp.id)}
    assert status == {"u1": "sent", "u2": "dropped", "u3": "no_token", "u4": "sent"}
    token = create_token(store, "shop", "campaign_tool")
    client = TestClient(create_app(store))
    for n, (user, etype) in enumerate([("u2", "opened"), ("u3", "opened"), ("u3", "converted"), ("u2", "clicked")]):
        event = {"event_id": f"bad{n}", "type": etype, "experiment_id": exp.id, "user_id": user}
        if etype == "converted":
            event["revenue"] = 1e9
        r = client.post("/v1/events", json={"events": [event]}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 422 and "did not go out" in r.text, r.text
    ok = client.post("/v1/events", headers={"Authorization": f"Bearer {token}"}, json={"events": [
        {"event_id": "good", "type": "opened", "experiment_id": exp.id, "user_id": "u1"}]})
    assert ok.status_code == 200 and ok.json() == {"stored": 1, "duplicate": 0}
    counts = ex.arm_counts(store, exp.id)["A"]
    assert counts["sent"] == 2 and counts["opened"] == 1 and counts["revenue"] == 0


# --- deep links ---------------------------------------------------------------------------------------------

def _item(url: str) -> Item:
    return Item(item_id="SKU-1", title="Lamp", price=10, currency="USD", in_stock=True, url=url)


def test_deep_links_encode_campaign_text_and_keep_to_allowed_hosts() -> None:
    evil = 'spring&utm_source=evil&x=1"><script>alert(1)</script>'
    link = deep_link(_item("https://shop.example.com/p/SKU-1?ref=home&utm_campaign=old"), utm_source="push",
                     utm_campaign=evil)
    parts = urlsplit(link)
    assert parts.hostname == "shop.example.com" and "<" not in link and '"' not in link
    assert parse_qs(parts.query) == {"ref": ["home"], "utm_source": ["push"], "utm_campaign": [evil]}
    for url, why in [("https://evil.example.net/p/1", "not allowed"), ("javascript:alert(1)", "http"),
                     ("https://shop.example.com@evil.net/p", "credentials"), ("/relative/p", "http")]:
        with pytest.raises(LinkError, match=why):
            deep_link(_item(url), utm_source="push", utm_campaign="c")
    assert deep_link(_item("https://img.cdn.example.org/x"), utm_source="s", utm_campaign="c",
                     hosts=["*.example.org"]).startswith("https://img.cdn.example.org/x?")


def test_the_campaign_runner_builds_its_links_with_the_encoder(tiny_llama: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PUSHGEN_GENERATOR_MODEL", str(tiny_llama))
    monkeypatch.setenv("PUSHGEN_MAX_NEW_TOKENS", "4")
    get_settings.cache_clear()
    from generator.write.generate import Generator

    shop = load_shop(get_settings().shop_dir)
    user = next(u.user_id for u in shop.users if u.locale.startswith("en") and u.push_opt_in)
    campaign = Campaign(name='sale&utm_source=evil"><b>x', type="price_drop", candidates=1, retries=0)
    runner = CampaignRunner(generator=Generator(str(tiny_llama)), locale_models={})
    _, [message] = runner.run(shop, campaign, user_ids=[user])
    query = parse_qs(urlsplit(message.deep_link).query)
    assert query["utm_source"] == ["push"] and query["utm_campaign"] == [campaign.name]


# --- pushgen serve runs the recovery pass -------------------------------------------------------------------

def test_serve_recovers_a_job_killed_mid_generation(tiny_llama: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PUSHGEN_GENERATOR_MODEL", str(tiny_llama))
    monkeypatch.setenv("PUSHGEN_LOCALE_MODELS", "{}")
    monkeypatch.setenv("PUSHGEN_MAX_NEW_TOKENS", "4")
    monkeypatch.setenv("PUSHGEN_RECOVER_EVERY", "0.2")
    monkeypatch.setenv("PUSHGEN_REQUEUE_AFTER", "1")
    get_settings.cache_clear()
    jobs._RUNNERS.clear()
    from workers.api import serve_app

    store = Store()
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", candidates=1, retries=0,
                                                                      audience=Audience(limit=2))))
    set_job_status(store, job.id, "running")  # the server died while its background task ran this chunk
    with store.session() as s:
        s.execute(update(JobChunk).where(JobChunk.job_id == job.id)
                  .values(status="running", deliveries=1, updated_at=utcnow() - timedelta(minutes=10)))
    with TestClient(serve_app()):  # the lifespan of `pushgen serve`
        deadline = time.monotonic() + 120
        while get_job(store, job.id).status != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
    assert get_job(store, job.id).status == "done" and count_messages(store, job.id) == 2
    jobs._RUNNERS.clear()


# --- review sessions, tokens, images ------------------------------------------------------------------------

def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_logout_ends_the_session_on_the_server() -> None:
    from workers.api import create_app

    store = Store()
    token = create_token(store, "alice", "reviewer")
    client = TestClient(create_app(store))
    page = client.get("/review/login")
    assert client.post("/review/login", data={"token": token, "csrf": _csrf(page.text)},
                       follow_redirects=False).status_code == 303
    stolen = dict(client.cookies)  # a copy of the cookie, e.g. taken from a shared machine
    csrf = _csrf(client.get("/review/jobs").text)
    assert client.post("/review/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    thief = TestClient(create_app(store), cookies=stolen)
    r = thief.get("/review/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login")


def test_token_list_and_delete() -> None:
    store = Store()
    secret = create_token(store, "ci-bot", "campaign_tool")
    listed = pushgen("token", "list")
    assert listed.returncode == 0 and "ci-bot" in listed.stdout and secret not in listed.stdout
    token_id = list_tokens(store)[0].id
    assert pushgen("token", "delete", str(token_id)).returncode == 0
    assert role_of(store, secret) is None and list_tokens(store) == []
    assert_one_line_error(pushgen("token", "delete", str(token_id)), "no token")
    assert_one_line_error(pushgen("token", "delete", str(2**64)), "token_id")


def test_review_pages_load_no_image_from_outside_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.api import create_app

    store = Store()
    seed_review_job(store, users=2)
    token = create_token(store, "alice", "reviewer")
    client = TestClient(create_app(store))
    page = client.get("/review/login")
    client.post("/review/login", data={"token": token, "csrf": _csrf(page.text)})
    job_id = client.get("/review/jobs").text.split("/review/jobs/")[1].split('"')[0]
    r = client.get(f"/review/jobs/{job_id}")
    assert r.status_code == 200 and "shop.example.com/img" not in r.text and "no-img" in r.text
    assert "https:" not in r.headers["content-security-policy"]
    monkeypatch.setenv("PUSHGEN_REVIEW_IMAGE_HOSTS", '["shop.example.com"]')
    get_settings.cache_clear()
    r = client.get(f"/review/jobs/{job_id}")
    assert '<img src="https://shop.example.com/img/' in r.text
    assert "img-src 'self' data: https://shop.example.com;" in r.headers["content-security-policy"]
