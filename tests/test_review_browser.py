"""The review pages in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium, never a
downloaded browser) against the API app served by uvicorn on a loopback port, with a SQLite store seeded with
generated-looking messages (no model needed)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from review_fixtures import XSS_ITEM, XSS_TITLE, XSS_WHY, LiveServer, login, seed_review_job

from generator.db.messages import list_messages
from generator.db.store import Store
from generator.db.tokens import create_token

CHROMIUM = os.environ.get("PUSHGEN_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Store, dict[str, str]]]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('review') / 'review.db'}")
    tokens = {r: create_token(store, name, r) for r, name in (("reviewer", "alice"), ("campaign_tool", "shop"))}
    with LiveServer(store) as server:
        yield server, store, tokens


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies); every dialog (alert, confirm) it opens is recorded."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.set_default_timeout(5000)
    pg = context.new_page()
    pg.dialogs = []

    def on_dialog(dialog: Any) -> None:
        pg.dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    yield pg
    context.close()


def _card(page: Any, store: Store, job: str, user: str, variant: int = 0) -> Any:
    m = next(m for m in list_messages(store, job) if m.user_id == user and m.variant == variant)
    return page.locator(f"#m-{m.id}")


def _status(store: Store, job: str) -> dict[tuple[str, int], str]:
    return {(m.user_id, m.variant): m.review_status for m in list_messages(store, job)}


def test_login_takes_a_reviewer_token_and_refuses_others(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=1)
    page.goto(f"{server.url}/review/jobs/{job}")
    expect(page.locator("h1")).to_have_text("Reviewer login")
    page.fill("#token", tokens["campaign_tool"])
    page.click("form button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("may not review")
    page.fill("#token", tokens["reviewer"])
    page.click("form button[type=submit]")
    page.wait_for_url(f"{server.url}/review/jobs/{job}")  # back where the reviewer was going
    expect(page.locator(".top .who")).to_contain_text("alice")
    page.click("text=Log out")
    expect(page.locator("h1")).to_have_text("Reviewer login")
    page.goto(f"{server.url}/review/jobs")
    expect(page.locator("h1")).to_have_text("Reviewer login")


def test_approve_by_button_and_keyboard_and_the_api_returns_the_approved_set(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=3)  # U001 fails a check; U002, U004 pass
    login(page, server.url, tokens["reviewer"])
    page.click(f"a[href='/review/jobs/{job}']")
    expect(_card(page, store, job, "U001").locator("button.approve")).to_be_disabled()
    _card(page, store, job, "U002").locator("button.approve").click()
    expect(page.locator("#flash")).to_contain_text("Approved U002")
    expect(_card(page, store, job, "U002").locator(".review-status")).to_have_text("approved")
    for _ in range(3):  # j selects the first card, then moves down to U004
        page.keyboard.press("j")
    expect(_card(page, store, job, "U004")).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("a")
    expect(page.locator("#flash")).to_contain_text("Approved U004")
    assert _status(store, job) == {("U001", 0): "pending", ("U002", 0): "approved", ("U004", 0): "approved"}
    trail = _card(page, store, job, "U004").locator("details.audit")
    expect(trail.locator("summary")).to_have_text("Audit trail (1)")
    expect(trail.locator(".actor")).to_have_text("alice")
    expect(trail.locator(".action")).to_have_text("approve")
    r = httpx.get(f"{server.url}/v1/jobs/{job}/messages", params={"review_status": "approved"},
                  headers={"Authorization": f"Bearer {tokens['reviewer']}"})
    assert r.status_code == 200
    assert {m["user_id"] for m in r.json()["messages"]} == {"U002", "U004"}
    assert not page.dialogs


def test_an_edit_that_fails_a_guardrail_cannot_be_approved_and_a_fixed_one_can(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=1)  # U001 claims 55% off
    item = list_messages(store, job)[0].ranked_items[0]
    login(page, server.url, tokens["reviewer"])
    page.goto(f"{server.url}/review/jobs/{job}")
    page.keyboard.press("j")
    page.keyboard.press("e")  # opens the edit form with the title focused
    card = _card(page, store, job, "U001")
    expect(card.locator("input.edit-title")).to_be_focused()
    card.locator("textarea.edit-body").fill("Now only $1.00 today.")
    card.locator("button.save-approve").click()
    expect(page.locator("#flash")).to_contain_text("cannot be approved")
    expect(card.locator(".not-approvable")).to_contain_text("prices")
    expect(card.locator("button.approve")).to_be_disabled()
    expect(card.locator(".review-status")).to_have_text("edited")
    assert _status(store, job) == {("U001", 0): "edited"}
    fixed = f"Now ${item['price']}, {item['discount_pct']}% off."
    card.locator("details.edit summary").click()
    card.locator("textarea.edit-body").fill(fixed)
    card.locator("button.save-approve").click()
    expect(page.locator("#flash")).to_contain_text("saved and approved")
    expect(card.locator(".review-status")).to_have_text("approved")
    expect(card.locator(".push-body")).to_have_text(fixed)
    events = card.locator("li.event")
    expect(events).to_have_count(3)
    expect(events.nth(0)).to_contain_text("failed checks: ")  # every check the edit failed, the price among them
    expect(events.nth(0)).to_contain_text("prices: price '$1.00' matches no item's price")
    expect(events.nth(0).locator(".old")).to_contain_text("55% off today only")
    expect(events.nth(1).locator(".new")).to_contain_text(fixed)
    expect(events.nth(2).locator(".action")).to_have_text("approve")


def test_reject_with_a_reason_by_keyboard(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=2)
    login(page, server.url, tokens["reviewer"])
    page.goto(f"{server.url}/review/jobs/{job}")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("r")  # focuses U002's reason field
    page.keyboard.type("sounds pushy")
    page.keyboard.press("Enter")
    expect(page.locator("#flash")).to_contain_text("Rejected U002")
    card = _card(page, store, job, "U002")
    expect(card.locator(".review-status")).to_have_text("rejected")
    expect(card.locator("li.event .reason")).to_have_text("reason: sounds pushy")
    assert _status(store, job)[("U002", 0)] == "rejected"


def test_bulk_approve_all_that_pass_then_reject_the_selected_rest(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=3, variants=2, flagged=1)
    login(page, server.url, tokens["reviewer"])
    page.goto(f"{server.url}/review/jobs/{job}")
    page.click("button.approve-all")
    expect(page.locator("#flash")).to_contain_text("Approved 5 message(s)")
    assert sorted(_status(store, job).values()) == ["approved"] * 5 + ["pending"]
    page.select_option("select[name=status]", "pending")
    page.click("form.filters button")
    expect(page.locator("article.msg")).to_have_count(1)
    page.keyboard.press("j")
    page.keyboard.press("x")  # select U001 variant 0
    page.fill("input.bulk-reason", "wrong discount")
    page.click("button.bulk-reject")
    expect(page.locator("#flash")).to_contain_text("Rejected 1 selected")
    assert _status(store, job)[("U001", 0)] == "rejected"
    expect(page.locator("article.msg")).to_have_count(0)  # the pending filter is kept


def test_script_tags_in_copy_item_names_and_review_texts_stay_text(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=1, xss=True)
    login(page, server.url, tokens["reviewer"])
    page.goto(f"{server.url}/review/jobs/{job}")
    card = _card(page, store, job, "U-XSS")
    expect(card.locator(".push-title")).to_have_text(XSS_TITLE)
    expect(card.locator(".push-body")).to_have_text("<b>bold</b> & <i>more</i>")
    expect(card.locator(".item-name").nth(1)).to_contain_text(XSS_ITEM)
    expect(card.locator(".why").first).to_contain_text(XSS_WHY)
    card.locator("input.reason").fill("<script>alert('reason')</script>")
    card.locator("button.reject").click()
    expect(card.locator("li.event .reason")).to_have_text("reason: <script>alert('reason')</script>")
    card.locator("details.edit summary").click()
    card.locator("input.edit-title").fill("<img src=x onerror=alert('edit')> Lamp")
    card.locator("button.save").click()
    expect(card.locator(".push-title")).to_have_text("<img src=x onerror=alert('edit')> Lamp")
    expect(card.locator("li.event .new").first).to_contain_text("<img src=x onerror=alert('edit')>")
    page.goto(f"{server.url}/review/jobs/{job}/variants")
    expect(page.locator(".push-title", has_text="<img src=x onerror=alert('edit')> Lamp")).to_have_count(1)
    page.goto(f"{server.url}/review/jobs")
    assert page.dialogs == []
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], main script').length") == 0


def test_variant_view_shows_every_variant_per_user(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=2, variants=2)
    login(page, server.url, tokens["reviewer"])
    page.goto(f"{server.url}/review/jobs/{job}")
    page.click("a.variants-link")
    expect(page.locator("table.variants thead th")).to_have_text(["user", "variant 0", "variant 1"])
    row = page.locator("table.variants tbody tr", has_text="U002")
    expect(row.locator("td.variant")).to_have_count(2)
    row.locator("td.variant").nth(1).locator("button.approve").click()
    expect(page.locator("#flash")).to_contain_text("Approved U002 (variant 1)")
    assert _status(store, job)[("U002", 1)] == "approved"
    expect(page.locator("table.variants tbody tr", has_text="U001").locator("button.approve").first).to_be_disabled()


def test_auto_approve_rule_is_recorded_as_auto_rule(live, page) -> None:  # type: ignore[no-untyped-def]
    server, store, tokens = live
    job = seed_review_job(store, users=4)  # passing copy has predicted CTR 0.03, 0.04, 0.05
    login(page, server.url, tokens["reviewer"])
    page.goto(f"{server.url}/review/jobs/{job}")
    page.fill("input.min-ctr", "0.035")
    page.click("button.save-rule")
    expect(page.locator("#flash")).to_contain_text("approved 2 message(s)")
    expect(page.locator(".rule-now")).to_contain_text("alice")
    card = _card(page, store, job, "U007")
    expect(card.locator("li.event .actor")).to_have_text("auto-rule")
    expect(card.locator("li.event .reason")).to_contain_text("predicted CTR ≥ 0.035")
    assert sorted(_status(store, job).values()) == ["approved", "approved", "pending", "pending"]


def test_screenshot_script_writes_the_review_queue_png(browser, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    # the script lets the sample shop's pictures load; restored after this test so later ones see the default
    monkeypatch.setenv("PUSHGEN_REVIEW_IMAGE_HOSTS", '["shop.example.com"]')

    spec = importlib.util.spec_from_file_location("screenshot_review",
                                                  Path(__file__).parent.parent / "scripts" / "screenshot_review.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.take(tmp_path / "queue.png", browser=browser)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") == 1400
