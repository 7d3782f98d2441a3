"""Take the README's screenshot of the review queue (docs/review-queue.png) with Playwright and Debian's
Chromium: a throw-away SQLite store seeded with the browser tests' job, the API app on a free loopback port,
a reviewer logged in through the form, rich-push previews (item pictures drawn locally), one edit that fails a
guardrail, one approval and one rejection.

    .venv/bin/python scripts/screenshot_review.py --out docs/review-queue.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
CHROMIUM = "/usr/bin/chromium"
GUIDELINES = {"tone": ["warm", "helpful", "concise"], "emoji": 1, "capitalisation": "sentence",
              "locales": {"*": {"banned": ["cheap", "hurry", "last chance"]}}}


def take(out: Path, *, chromium: str = CHROMIUM, browser: Any = None) -> Path:
    """Seed, serve, review a little and save the screenshot to ``out``. ``browser``: an already launched
    Playwright browser to use (else Chromium at ``chromium`` is launched)."""
    import os

    from review_fixtures import LiveServer, seed_review_job

    from generator.core.config import get_settings
    from generator.db.store import Store
    from generator.db.tokens import create_token

    os.environ.setdefault("PUSHGEN_REVIEW_IMAGE_HOSTS", '["shop.example.com"]')  # the sample shop's pictures
    get_settings.cache_clear()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/review.db")
        job_id = seed_review_job(store, users=4, variants=1)
        from rich_fixtures import enable_rich

        enable_rich(store, job_id, policy={"guidelines": GUIDELINES})  # previews with images; brand rules
        token = create_token(store, "alice", "reviewer")
        with LiveServer(store) as server:
            if browser is not None:
                _shoot(browser, server.url, token, job_id, out)
            else:
                from playwright.sync_api import sync_playwright

                with sync_playwright() as p:
                    launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                    _shoot(launched, server.url, token, job_id, out)
                    launched.close()
    return out


def _shoot(browser: Any, url: str, token: str, job_id: str, out: Path) -> None:
    from review_fixtures import login
    from rich_fixtures import serve_item_images

    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    serve_item_images(context)  # the sample shop's image URLs are not reachable offline
    page = context.new_page()
    login(page, url, token)
    page.goto(f"{url}/review/jobs/{job_id}")
    cards = page.locator("article.msg")
    cards.nth(1).locator("button.approve").click()
    page.wait_for_load_state()
    cards.nth(2).locator("input.reason").fill("tone is too pushy for this customer")
    cards.nth(2).locator("button.reject").click()
    page.wait_for_load_state()
    page.goto(f"{url}/review/jobs/{job_id}")
    page.keyboard.press("j")
    page.evaluate("window.scrollTo(0, 0)")  # the header with the brand guidelines, then the first card
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=False)
    context.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "review-queue.png")
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args()
    print(take(args.out, chromium=args.chromium))


if __name__ == "__main__":
    main()
