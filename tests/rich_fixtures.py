"""Rich-push settings for seeded review jobs, and item pictures served to a Playwright browser in place of the
sample shop's image URLs (https://shop.example.com/img/..., unreachable offline), drawn with Pillow."""

from __future__ import annotations

import io
import zlib
from typing import Any

from generator.db.store import Store
from generator.db.tables import Job

RICH = {"ios_link": "shop://item/{item_id}", "android_link": "https://shop.example.com/app/item/{item_id}",
        "buttons": [{"id": "buy", "title": "Buy now", "ios_link": "shop://cart/add/{item_id}"},
                    {"id": "later", "title": "Remind me later"}],
        "ios_category": "SHOP_ITEM", "android_click_action": "OPEN_ITEM"}
IMAGES = "https://shop.example.com/img/**"


def enable_rich(store: Store, job_id: str, rich: dict[str, Any] | None = None, **campaign: Any) -> None:
    """Give a seeded job's campaign rich-push settings (and any other campaign fields)."""
    with store.session() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "campaign": {**job.params["campaign"], "rich": rich or RICH, **campaign}}


def item_png(name: str, size: tuple[int, int] = (480, 320)) -> bytes:
    """A product-photo-like PNG: a soft background and a simple object, coloured by the name."""
    from PIL import Image, ImageDraw

    hue = zlib.crc32(name.encode()) % 360
    img = Image.new("RGB", size, (238, 236, 232))
    draw = ImageDraw.Draw(img)
    base = Image.new("HSV", (1, 1), (int(hue * 255 / 360), 150, 200)).convert("RGB").getpixel((0, 0))
    w, h = size
    draw.ellipse((w * 0.3, h * 0.72, w * 0.7, h * 0.86), fill=(210, 206, 200))
    draw.rounded_rectangle((w * 0.36, h * 0.18, w * 0.64, h * 0.78), radius=int(h * 0.08), fill=base)
    draw.rectangle((w * 0.46, h * 0.08, w * 0.54, h * 0.2), fill=tuple(max(c - 60, 0) for c in base))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def serve_item_images(context: Any) -> list[str]:
    """Answer the browser's requests for item images with :func:`item_png`; returns the URLs it asked for."""
    asked: list[str] = []

    def handle(route: Any) -> None:
        asked.append(route.request.url)
        route.fulfill(status=200, content_type="image/png", body=item_png(route.request.url.rsplit("/", 1)[-1]))

    context.route(IMAGES, handle)
    return asked
