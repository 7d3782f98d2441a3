"""The review page's push preview in a real browser (Playwright, Debian's Chromium): each message as iOS and
Android show it, with the featured item's image, the campaign's buttons and the byte count of the fitted
payload; plain copy without rich settings; no script runs from seeded text."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from review_fixtures import LiveServer, login, seed_review_job
from rich_fixtures import enable_rich, serve_item_images

from generator.db.messages import list_messages
from generator.db.store import Store
from generator.db.tokens import create_token

CHROMIUM = os.environ.get("PUSHGEN_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Store, str]]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('rich') / 'review.db'}")
    token = create_token(store, "alice", "reviewer")
    with LiveServer(store) as server:
        yield server, store, token


@pytest.fixture
def page(live: Any) -> Iterator[Any]:
    server, _, token = live
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        context.set_default_timeout(5000)
        pg = context.new_page()
        pg.asked = serve_item_images(context)
        pg.dialogs = []
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        login(pg, server.url, token)
        yield pg
        browser.close()


@pytest.fixture
def image_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The review pages may load the sample shop's images (PUSHGEN_REVIEW_IMAGE_HOSTS; none by default)."""
    from generator.core.config import get_settings

    monkeypatch.setenv("PUSHGEN_REVIEW_IMAGE_HOSTS", '["shop.example.com"]')
    get_settings.cache_clear()


def test_the_preview_shows_the_items_image_and_buttons_as_ios_and_android_do(live, image_hosts, page) -> None:  # type: ignore[no-untyped-def]
    server, store, _ = live
    job = seed_review_job(store, users=2, flagged=0)
    enable_rich(store, job)
    page.goto(f"{server.url}/review/jobs/{job}")
    m = list_messages(store, job)[0]
    card = page.locator(f"#m-{m.id}")
    image = m.ranked_items[0]["image_url"]
    ios, android = card.locator("figure.phone.ios"), card.locator("figure.phone.android")
    expect(ios.locator(".n-title")).to_have_text(m.title)
    expect(android.locator(".n-body")).to_have_text(m.body)
    expect(ios.locator("img.thumb")).to_have_attribute("src", image)
    expect(android.locator("img.big")).to_have_attribute("src", image)
    for img in (ios.locator("img.thumb"), android.locator("img.big")):  # really drawn, not a broken icon
        img.scroll_into_view_if_needed()
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle())
    assert image in page.asked
    for phone in (ios, android):
        expect(phone.locator(".buttons .button")).to_have_text(["Buy now", "Remind me later"])
        expect(phone.locator(".size")).to_contain_text("of 4,096 bytes")
    expect(ios.locator(".tap code")).to_have_text(f"shop://item/{m.ranked_items[0]['item_id']}")
    expect(android.locator(".tap code")).to_have_text(
        f"https://shop.example.com/app/item/{m.ranked_items[0]['item_id']}")
    big = android.locator("img.big").bounding_box()
    thumb = ios.locator("img.thumb").bounding_box()
    assert big["width"] > 4 * thumb["width"] and thumb["width"] == pytest.approx(44, abs=1)
    assert page.dialogs == []


def test_plain_copy_previews_without_image_or_buttons(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, _ = live
    job = seed_review_job(store, users=1, flagged=0, xss=True)
    page.goto(f"{server.url}/review/jobs/{job}")
    previews = page.locator("figure.phone")
    expect(previews).to_have_count(4)
    expect(page.locator("figure.phone img")).to_have_count(0)
    expect(page.locator("figure.phone .buttons")).to_have_count(0)
    expect(page.locator("figure.phone .n-title").filter(has_text="<script>")).to_have_count(2)
    assert page.dialogs == []


def test_the_queue_shows_the_brand_guidelines(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, _ = live
    job = seed_review_job(store, users=1, flagged=0)
    enable_rich(store, job, policy={"guidelines": {
        "tone": ["warm", "playful"], "emoji": 1, "capitalisation": "sentence",
        "locales": {"*": {"banned": ["cheap", "hurry"]}, "en": {"required": ["made to last"],
                                                              "disclaimer": "T&Cs apply."}}}})
    page.goto(f"{server.url}/review/jobs/{job}")
    rules = page.locator("section.brand-rules")
    expect(rules.locator(".tone .tag")).to_have_text(["warm", "playful"])
    expect(rules.locator(".emoji")).to_have_text("at most 1")
    expect(rules.locator(".caps")).to_have_text("sentence")
    expect(rules.locator("[data-locale='*'] .banned q")).to_have_text(["cheap", "hurry"])
    expect(rules.locator("[data-locale='en'] .required q")).to_have_text(["made to last"])
    expect(rules.locator("[data-locale='en'] .disclaimer q")).to_have_text("T&Cs apply.")
    # the seeded copy says neither the required phrase nor the disclaimer: the brand check fails it on screen
    expect(page.locator("li.check.fail").filter(has_text="brand")).to_have_count(0)  # checked when generated
    m = list_messages(store, job)[0]
    card = page.locator(f"#m-{m.id}")
    card.locator("details.edit summary").click()
    card.locator("textarea.edit-body").fill(m.body + " Enjoy it.")
    card.locator("button.save").click()
    page.wait_for_load_state()
    expect(page.locator(f"#m-{m.id} li.check.fail").filter(has_text="brand")).to_contain_text(
        "missing the required phrase 'made to last'")


def test_images_from_hosts_not_allowed_are_placeholders_and_never_loaded(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, _ = live
    job = seed_review_job(store, users=1, flagged=0)
    enable_rich(store, job)
    page.goto(f"{server.url}/review/jobs/{job}")
    m = list_messages(store, job)[0]
    card = page.locator(f"#m-{m.id}")
    expect(card.locator("figure.phone img")).to_have_count(0)
    expect(card.locator("figure.phone.android .no-img")).to_contain_text(m.ranked_items[0]["image_url"])
    expect(card.locator("figure.phone.ios .buttons .button")).to_have_text(["Buy now", "Remind me later"])
    assert page.asked == []  # nothing was requested from outside the app
