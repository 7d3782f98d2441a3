"""Seed a store with a generated-looking job for the review tests: messages shaped like campaign output
(ranked items with the scorer's explanations, every candidate, guardrail results, predicted click-through),
written straight through the Store, so no model is needed."""

from __future__ import annotations

from typing import Any

from generator.campaign.spec import Campaign
from generator.core.config import get_settings
from generator.core.data import load_shop
from generator.db.jobs import create_job
from generator.db.messages import save_messages
from generator.db.store import Store
from generator.db.tables import Job, Message
from generator.rank.scorer import RankedItem
from generator.review import recheck
from generator.write.prompts import format_price

XSS_TITLE = '<script>alert("title")</script> Deal'
XSS_ITEM = '<img src=x onerror=alert("item")> Lamp'
XSS_WHY = "viewed '<script>alert(\"why\")</script>'"


def seed_review_job(store: Store, *, users: int = 4, variants: int = 1, xss: bool = False,
                    flagged: int = 1) -> str:
    """A done price-drop job over the sample shop: ``users`` English users x ``variants``; the first
    ``flagged`` users' variant 0 claims a wrong discount (fails the ``percentages`` check). With ``xss`` one more
    user's copy, item name and explanation carry script tags. Returns the job id."""
    shop_dir = get_settings().shop_dir
    shop = load_shop(shop_dir)
    discounted = [i for i in shop.items if i.discount_pct and i.in_stock and len(i.title) <= 36
                  and not any(c.isdigit() for c in i.title)]
    people = [u for u in shop.users if u.locale.startswith("en") and u.push_opt_in][:users]
    campaign = Campaign(name="spring-sale", type="price_drop", variants=variants, adapter="brand-en")
    job: Job = create_job(store, kind="api", campaign_type="price_drop", template="auto", adapter="brand-en",
                          locale=None, model="smollm2-135m", status="done", total=len(people) * variants,
                          params={"campaign": campaign.model_dump(mode="json"), "shop": str(shop_dir)})
    records: list[dict[str, Any]] = []
    for n, user in enumerate(people):
        items = discounted[3 * n:3 * n + 3]
        ranked = [RankedItem(it, round(0.9 - 0.1 * k, 3), k + 1, [f"viewed '{items[-1 - k].title}' (0.{6 - k}1)"])
                  .to_dict() for k, it in enumerate(items)]
        featured = items[0]
        price = format_price(featured.current_price, featured.currency)
        for v in range(variants):
            if n < flagged and v == 0:
                title, body = f"{featured.title}: big savings", f"Now {price}, 55% off today only."
            elif v == 0:
                title, body = f"{featured.title} is on sale", f"Now {price}, {featured.discount_pct}% off."
            else:
                title, body = f"Good news: {featured.title}", f"{featured.discount_pct}% off, now just {price}."
            records.append(_record(job, user.user_id, v, title, body, ranked, featured.url,
                                   ctr=round(0.02 + 0.01 * n + 0.005 * v, 4)))
    if xss:
        items = discounted[-3:]
        ranked = [RankedItem(it, 0.5, k + 1, [XSS_WHY]).to_dict() for k, it in enumerate(items)]
        ranked[1]["title"] = XSS_ITEM
        records.append(_record(job, "U-XSS", 0, XSS_TITLE, "<b>bold</b> & <i>more</i>", ranked, items[0].url,
                               ctr=0.01))
    save_messages(store, job.id, records)
    return job.id


def _record(job: Job, user_id: str, variant: int, title: str, body: str, ranked: list[dict[str, Any]], url: str,
            ctr: float) -> dict[str, Any]:
    draft = Message(job_id=job.id, user_id=user_id, variant=variant, template="price_drop.en",
                    ranked_items=ranked, title=title, body=body)
    checks = [r.as_dict() for r in recheck(draft, job, title, body)]
    passed = all(c["passed"] for c in checks)
    return {"user_id": user_id, "variant": variant, "title": title, "body": body,
            "deep_link": f"{url}?utm_source=push&utm_campaign=spring-sale",
            "item_ids": [r["item_id"] for r in ranked], "prompt": f"<prompt for {user_id}> Title:",
            "template": "price_drop.en", "adapter": "brand-en", "status": "passed" if passed else "flagged",
            "guardrails": checks, "ctr_score": ctr if passed else None,
            "candidates": [{"title": title, "body": body, "sampled": False, "passed": passed, "ctr": ctr,
                            "reasons": [f"{c['name']}: {c['reason']}" for c in checks if not c["passed"]]}],
            "ranked_items": ranked}


class LiveServer:
    """The API app (review pages included) served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, store: Store):
        import socket
        import threading

        import uvicorn

        from workers.api import create_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return self
            time.sleep(0.025)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def login(page: Any, base_url: str, token: str) -> None:
    """Log in through the form, as a reviewer would."""
    page.goto(f"{base_url}/review/login")
    page.fill("#token", token)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base_url}/review/jobs")
