"""Rich push: the item's image, up to two buttons and per-platform links, in what the FCM and APNs stand-ins
receive; the 4,096-byte fit that drops the image first, then the buttons, never the copy; one builder for the
guardrails, the senders and the review preview; bad settings refused naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from generator.campaign.spec import Campaign
from generator.check.guardrails import GuardContext, check_payload_size
from generator.core import payload as payloads
from generator.core.payload import RichPush, apns_payload, encoded_size, fcm_message, fit, plain_push
from generator.db.store import Store
from generator.db.tables import Job
from generator.db.tokens import create_token
from generator.experiments import ab as ex
from tests.experiment_fixtures import seed_ab_job
from workers.senders import ApnsConfig, ApnsSender, FcmConfig, FcmSender, RetryPolicy
from workers.senders.standins import ApnsStandIn, FcmStandIn

NOON_UTC = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RICH = {"ios_link": "shop://item/{item_id}", "android_link": "https://shop.example.com/app/item/{item_id}",
        "buttons": [{"id": "buy", "title": "Buy now", "ios_link": "shop://cart/add/{item_id}",
                     "android_link": "https://shop.example.com/app/cart/{item_id}"},
                    {"id": "later", "title": "Remind me later"}],
        "ios_category": "SHOP_ITEM", "android_click_action": "OPEN_ITEM"}
IMAGE = "https://shop.example.com/img/I1.jpg"


def rich_push(**over: Any) -> dict[str, Any]:
    push = {"title": "Desk lamp is on sale", "body": "Now 19.99, 20% off.", "deep_link": "https://shop/p/I1",
            "idempotency_key": "k1", "collapse_id": "exp-1", "data": {"arm": "A", "send_key": "k1"},
            **payloads.rich_fields(RICH, item_id="I1", image_url=IMAGE, web_link="https://shop/p/I1")}
    return {**push, **over}


def test_fcm_and_apns_receive_the_image_buttons_and_their_own_links() -> None:
    with FcmStandIn() as fcm, ApnsStandIn() as apns:
        f = FcmSender(FcmConfig(fcm.project_id, fcm.access_token, base_url=fcm.url), retry=RetryPolicy(1))
        a = ApnsSender(ApnsConfig(apns.team_id, apns.key_id, apns.private_key, apns.topic, base_url=apns.url,
                                  verify=apns.ssl_context), retry=RetryPolicy(1))
        assert f.deliver("ok-rich", rich_push()).status == "sent" and a.deliver("ok-rich", rich_push()).status == "sent"
        f.close(), a.close()
        msg, body = fcm.received[-1]["json"]["message"], apns.received[-1]["json"]
    assert msg["notification"] == {"title": "Desk lamp is on sale", "body": "Now 19.99, 20% off.", "image": IMAGE}
    assert msg["android"]["notification"] == {"click_action": "OPEN_ITEM"}
    assert msg["data"]["deep_link"] == "https://shop.example.com/app/item/I1"
    assert json.loads(msg["data"]["actions"]) == [
        {"id": "buy", "title": "Buy now", "link": "https://shop.example.com/app/cart/I1"},
        {"id": "later", "title": "Remind me later", "link": "https://shop/p/I1"}]
    assert msg["apns"]["payload"]["aps"] == {"mutable-content": 1, "category": "SHOP_ITEM"}
    assert msg["apns"]["fcm_options"] == {"image": IMAGE} and all(isinstance(v, str) for v in msg["data"].values())
    assert body["aps"]["mutable-content"] == 1 and body["aps"]["category"] == "SHOP_ITEM"
    assert body["image_url"] == IMAGE and body["deep_link"] == "shop://item/I1"
    assert body["actions"][0] == {"id": "buy", "title": "Buy now", "link": "shop://cart/add/I1"}


@pytest.mark.parametrize("build", [fcm_message, apns_payload])
def test_fit_drops_the_image_first_then_the_buttons_and_never_the_copy(build) -> None:  # type: ignore[no-untyped-def]
    push = rich_push()
    assert fit(push, build) == (build(push), [])
    long_image = rich_push(image_url="https://cdn.example.com/" + "i" * 3900)
    payload, dropped = fit(long_image, build)
    assert dropped == ["image"] and "i" * 3900 not in json.dumps(payload) and "Buy now" in json.dumps(payload)
    # copy + buttons alone are over the limit: the buttons go too; the copy stays whole
    long_title = "Remind me " + "x" * 2200
    crowded = rich_push(image_url="https://cdn.example.com/" + "i" * 1500,
                        buttons=[{"id": "b", "title": long_title, "ios": "l", "android": "l"}],
                        body="é" * 1000)
    payload, dropped = fit(crowded, build)
    assert dropped == ["image", "buttons"] and encoded_size(payload) <= 4096
    text = json.dumps(payload, ensure_ascii=False)
    assert "é" * 1000 in text and "Desk lamp is on sale" in text and long_title not in text
    with pytest.raises(payloads.PayloadTooLarge, match="4096"):
        fit(rich_push(body="é" * 2100), build)


def test_copy_too_large_alone_is_refused_by_the_sender_without_a_request() -> None:
    with FcmStandIn() as fcm:
        sender = FcmSender(FcmConfig(fcm.project_id, fcm.access_token, base_url=fcm.url), retry=RetryPolicy(1))
        result = sender.deliver("ok-big", rich_push(body="é" * 2100))
        sender.close()
        assert result.status == "too_large" and fcm.received == []


def test_the_guardrail_passes_exactly_the_copy_the_senders_can_send() -> None:
    ctx, seen = GuardContext(items=[]), set()
    for n in range(1295, 1320):  # around the limit: 3 bytes per character
        body = "帐" * n
        passed = check_payload_size("t", body, ctx).passed
        for build in (fcm_message, apns_payload):
            if passed:
                fit(plain_push("t", body), build)
        if not passed:
            with pytest.raises(payloads.PayloadTooLarge):
                for build in (fcm_message, apns_payload):
                    fit(plain_push("t", body), build)
        seen.add(passed)
    assert seen == {True, False}


def test_an_experiment_sends_the_campaigns_rich_push_with_the_items_image() -> None:
    store = Store()
    job_id = seed_ab_job(store, ["U1"], variants=1)
    with store.session() as s:
        job = s.get(Job, job_id)
        job.params = {"campaign": {**job.params["campaign"], "rich": RICH}}
        from generator.db.tables import Message

        for m in s.query(Message).filter(Message.job_id == job_id):
            m.ranked_items = [{"item_id": "SKU-7", "image_url": "https://shop.example.com/img/SKU-7.jpg"}]
    exp = ex.create_experiment(store, job_id, holdout=0, rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, ["U1"])
    with FcmStandIn() as fcm:
        sender = FcmSender(FcmConfig(fcm.project_id, fcm.access_token, base_url=fcm.url), retry=RetryPolicy(1))
        assert ex.send(store, exp.id, sender, now=NOON_UTC) == {"sent": 1}
        sender.close()
        msg = fcm.received[-1]["json"]["message"]
    assert msg["notification"]["image"] == "https://shop.example.com/img/SKU-7.jpg"
    assert msg["data"]["deep_link"] == "https://shop.example.com/app/item/SKU-7"
    assert msg["data"]["send_key"] == ex.idempotency_key(exp.id, "U1")


@pytest.mark.parametrize(("rich", "field"), [
    ({"buttons": [{"id": f"b{i}", "title": "x"} for i in range(3)]}, "buttons"),
    ({"buttons": [{"id": "b", "title": "x"}, {"id": "b", "title": "y"}]}, "buttons"),
    ({"buttons": [{"id": "Buy Now", "title": "x"}]}, "id"),
    ({"buttons": [{"id": "b", "title": "x" * 41}]}, "title"),
    ({"ios_link": "shop://item/{sku}"}, "ios_link"),
    ({"android_link": "x" * 1001}, "android_link"),
    ({"ios_category": "has space"}, "ios_category"),
    ({"image": True, "sound": "ding"}, "sound"),
])
def test_bad_rich_settings_are_refused_naming_the_field(rich, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as err:
        Campaign(type="price_drop", rich=rich)
    assert field in str(err.value)
    from workers.api import create_app

    store = Store()
    client = TestClient(create_app(store))
    auth = {"Authorization": f"Bearer {create_token(store, 't', 'campaign_tool')}"}
    r = client.post("/v1/jobs", json={"campaign": {"type": "price_drop", "rich": rich}}, headers=auth)
    assert r.status_code == 422 and field in json.dumps(r.json()["detail"])
    with store.session() as s:
        assert s.query(Job).count() == 0


def test_the_preview_shows_what_each_platform_keeps() -> None:
    ranked = [{"item_id": "I1", "image_url": IMAGE}]
    view = payloads.preview("Lamp on sale", "Now 19.99.", "https://shop/p/I1", ranked, RichPush(**RICH))
    assert view["apns"]["image"] == view["fcm"]["image"] == IMAGE
    assert view["apns"]["buttons"] == ["Buy now", "Remind me later"] and view["apns"]["link"] == "shop://item/I1"
    assert view["fcm"]["link"] == "https://shop.example.com/app/item/I1" and view["fcm"]["dropped"] == []
    assert 0 < view["fcm"]["bytes"] <= 4096
    crowded = payloads.preview("Lamp", "é" * 1300, "https://shop/p/I1",
                               [{"item_id": "I1", "image_url": "https://cdn/" + "i" * 1500}], RichPush(**RICH))
    assert crowded["apns"]["dropped"] == ["image"] and crowded["apns"]["buttons"] == ["Buy now", "Remind me later"]
    assert payloads.preview("t", "é" * 2100, "", ranked, None)["fcm"]["fits"] is False
