"""A store seeded with an A/B job whose messages are approved (written straight through the Store: no model),
plus device tokens, for the experiment, sender and loop tests."""

from __future__ import annotations

from sqlalchemy import update

from generator.db.jobs import create_job
from generator.db.messages import save_messages
from generator.db.store import Store
from generator.db.tables import Message
from generator.experiments.devices import register


def seed_ab_job(store: Store, users: list[str], *, variants: int = 2, approve: bool = True,
                adapter: str | None = "brand-en-v1", platform: str = "fcm", token_prefix: str = "tok-") -> str:
    """A done job with ``variants`` messages per user (variant v says 'Variant v'), approved, and one device
    token per user (``<token_prefix><user>`` on ``platform``). Returns the job id."""
    job = create_job(store, kind="api", campaign_type="price_drop", template="price_drop.en", adapter=adapter,
                     locale="en_US", model="smollm2-135m", status="done", total=len(users) * variants,
                     params={"campaign": {"name": "ab", "type": "price_drop", "variants": variants}})
    records = []
    for u in users:
        for v in range(variants):
            records.append({"user_id": u, "variant": v, "title": f"Variant {v} for you",
                            "body": f"Lamp now 19.99 ({'save' if v else 'deal'})", "deep_link": f"shop://item/{u}",
                            "item_ids": ["I1"], "prompt": f"prompt {u}", "template": "price_drop.en",
                            "adapter": adapter, "status": "passed", "guardrails": [], "candidates": [],
                            "ranked_items": [{"item_id": "I1"}]})
    save_messages(store, job.id, records)
    if approve:
        with store.session() as s:
            s.execute(update(Message).where(Message.job_id == job.id).values(review_status="approved"))
    for u in users:
        register(store, user_id=u, platform=platform, token=f"{token_prefix}{u}")
    return job.id
