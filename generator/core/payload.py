"""Push payloads: the one builder of what FCM and APNs receive, used by the guardrails (is the copy small
enough?), the senders (what goes on the wire) and the review page (what the phone shows).

A *push* is provider-neutral: ``title``, ``body``, ``deep_link`` (the web URL), ``data`` (ids that outcome events
refer back to), ``collapse_id``, ``idempotency_key`` and, for a rich push (:class:`RichPush` in the campaign),
``image_url`` (the featured item's image), up to two ``buttons`` and per-platform ``links``:

* **FCM** (HTTP v1): ``notification.image`` (Android shows it big when expanded), ``android.notification.
  click_action`` (the intent filter that opens the app even when it is closed) with ``data.deep_link``, the buttons
  as ``data.actions`` (JSON; the app adds them as notification actions), and for iOS devices reached through FCM
  ``apns.payload.aps`` with ``mutable-content``/``category`` and ``apns.fcm_options.image``.
* **APNs**: ``aps.mutable-content: 1`` with ``image_url`` for a notification service extension to download and
  attach, ``aps.category`` naming the app's registered ``UNNotificationCategory`` whose actions are the buttons
  (their links travel in ``actions``), and ``deep_link`` (the iOS link: universal link or app scheme).

Both stay within 4,096 bytes after JSON encoding: :func:`fit` drops the image first, then the buttons, and never
touches the copy; copy that does not fit on its own is refused (:class:`PayloadTooLarge`), which the guardrails'
``payload_size`` check reports before anyone approves it.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from generator.core.errors import PushgenError

MAX_PAYLOAD_BYTES = 4096  # FCM (message payload) and APNs (alert notifications) alike
LINK_FIELDS = ("item_id", "url")


class PayloadTooLarge(PushgenError):
    """A push whose JSON payload exceeds the provider's limit even without its image and buttons; not sent."""


def encoded_size(payload: Any) -> int:
    """Bytes of ``payload`` as sent: compact JSON, UTF-8 (non-ASCII text counts its real bytes)."""
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _link_template(value: str | None) -> str | None:
    """A link template may use only ``{item_id}`` (the featured item) and ``{url}`` (its web page with UTM)."""
    if value is None:
        return None
    names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    unknown = sorted(names - set(LINK_FIELDS))
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use {{item_id}} or {{url}}")
    return value


class Button(BaseModel):
    """An action button: shown under the expanded push on both platforms."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="The action's identifier (the app's "
                    "UNNotificationAction identifier on iOS; the action id the Android app handles).")
    title: str = Field(min_length=1, max_length=40, description="The button's label.")
    ios_link: str | None = Field(default=None, max_length=1000, description="Link the button opens on iOS.")
    android_link: str | None = Field(default=None, max_length=1000, description="Link it opens on Android.")

    _links = field_validator("ios_link", "android_link")(lambda cls, v: _link_template(v))


class RichPush(BaseModel):
    """A campaign's rich-push settings (``rich:`` in the campaign YAML or JSON)."""

    model_config = ConfigDict(extra="forbid")
    image: bool = Field(default=True, description="Attach the featured item's image (its image_url).")
    buttons: list[Button] = Field(default_factory=list, max_length=2, description="At most two action buttons.")
    ios_link: str | None = Field(default=None, max_length=1000,
                                 description="The tap's link on iOS, e.g. 'shop://item/{item_id}' or a universal "
                                             "link; default: the web URL.")
    android_link: str | None = Field(default=None, max_length=1000,
                                     description="The tap's link on Android (an app link or scheme); default: "
                                                 "the web URL.")
    ios_category: str = Field(default="PUSHGEN_ITEM", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                              description="The UNNotificationCategory the iOS app registered for these buttons.")
    android_click_action: str = Field(default="OPEN_DEEP_LINK", pattern=r"^[A-Za-z0-9_.]{1,100}$",
                                      description="The intent action the Android app's activity filters on.")

    _links = field_validator("ios_link", "android_link")(lambda cls, v: _link_template(v))

    @field_validator("buttons")
    @classmethod
    def _distinct_ids(cls, v: list[Button]) -> list[Button]:
        if len({b.id for b in v}) != len(v):
            raise ValueError("two buttons have the same id")
        return v


def _fill(template: str | None, item_id: str, url: str) -> str:
    return template.format(item_id=item_id, url=url) if template else url


def rich_fields(rich: RichPush | Mapping[str, Any] | None, *, item_id: str, image_url: str,
                web_link: str) -> dict[str, Any]:
    """The rich part of a push for one message: its featured item's id and image, the campaign's settings."""
    if rich is None:
        return {}
    rich = rich if isinstance(rich, RichPush) else RichPush.model_validate(rich)
    return {"image_url": image_url if rich.image else "",
            "links": {"ios": _fill(rich.ios_link, item_id, web_link),
                      "android": _fill(rich.android_link, item_id, web_link)},
            "buttons": [{"id": b.id, "title": b.title, "ios": _fill(b.ios_link, item_id, web_link),
                         "android": _fill(b.android_link, item_id, web_link)} for b in rich.buttons],
            "category": rich.ios_category, "click_action": rich.android_click_action}


def plain_push(title: str, body: str, deep_link: str = "") -> dict[str, Any]:
    """The minimal push of a copy: what the guardrails measure (image and buttons are dropped before copy)."""
    return {"title": title, "body": body, "deep_link": deep_link,
            "data": {"deep_link": deep_link} if deep_link else {}}


def fcm_message(push: Mapping[str, Any]) -> dict[str, Any]:
    """The FCM HTTP v1 ``message`` without its ``token`` (addressing, not payload)."""
    collapse = push.get("collapse_id") or "pushgen"
    data = {str(k): str(v) for k, v in (push.get("data") or {}).items()}
    notification: dict[str, Any] = {"title": push["title"], "body": push["body"]}
    android: dict[str, Any] = {"priority": "high", "collapse_key": collapse}
    aps: dict[str, Any] = {}
    apns: dict[str, Any] = {"headers": {"apns-collapse-id": collapse}}
    links, image, buttons = push.get("links") or {}, push.get("image_url"), push.get("buttons") or []
    if links.get("android"):
        data["deep_link"] = links["android"]
        android["notification"] = {"click_action": push.get("click_action") or "OPEN_DEEP_LINK"}
    if image:
        notification["image"] = image
        aps["mutable-content"] = 1
        apns["fcm_options"] = {"image": image}
    if buttons:
        data["actions"] = json.dumps([{"id": b["id"], "title": b["title"], "link": b["android"]} for b in buttons],
                                     ensure_ascii=False, separators=(",", ":"))
        aps["category"] = push.get("category") or "PUSHGEN_ITEM"
    if aps:
        apns["payload"] = {"aps": aps}
    return {"notification": notification, "data": data, "android": android, "apns": apns}


def apns_payload(push: Mapping[str, Any]) -> dict[str, Any]:
    """The APNs JSON: ``aps`` (alert, sound, and for a rich push mutable-content and category) plus the app's keys."""
    aps: dict[str, Any] = {"alert": {"title": push["title"], "body": push["body"]}, "sound": "default"}
    out: dict[str, Any] = {"aps": aps}
    for k, v in (push.get("data") or {}).items():
        if k != "aps":
            out[k] = v
    links, image, buttons = push.get("links") or {}, push.get("image_url"), push.get("buttons") or []
    if links.get("ios"):
        out["deep_link"] = links["ios"]
    if image:
        aps["mutable-content"] = 1
        out["image_url"] = image
    if buttons:
        aps["category"] = push.get("category") or "PUSHGEN_ITEM"
        out["actions"] = [{"id": b["id"], "title": b["title"], "link": b["ios"]} for b in buttons]
    return out


Builder = Callable[[Mapping[str, Any]], dict[str, Any]]
BUILDERS: dict[str, Builder] = {"fcm": fcm_message, "apns": apns_payload}


def fit(push: Mapping[str, Any], build: Builder, limit: int = MAX_PAYLOAD_BYTES) -> tuple[dict[str, Any], list[str]]:
    """The largest payload of ``push`` within ``limit`` bytes: as it is, else without the image, else also without
    the buttons. Returns (payload, what was dropped); copy that does not fit alone raises
    :class:`PayloadTooLarge`."""
    dropped: list[str] = []
    current = dict(push)
    for part in (None, "image_url", "buttons"):
        if part is not None and current.get(part):
            current[part] = [] if part == "buttons" else ""
            dropped.append("image" if part == "image_url" else "buttons")
        payload = build(current)
        size = encoded_size(payload)
        if size <= limit:
            return payload, dropped
    raise PayloadTooLarge(f"payload is {size} bytes after JSON encoding; the limit is {limit}")


def sizes(push: Mapping[str, Any], platforms: Sequence[str] = ("fcm", "apns")) -> dict[str, int]:
    """Encoded bytes of each platform's full payload (before anything is dropped)."""
    return {p: encoded_size(BUILDERS[p](push)) for p in platforms}


# representative ids of a real send (experiment UUID, arm, 40-character send key), so previews count real bytes
_PREVIEW_DATA = {"experiment_id": "0" * 36, "arm": "A", "send_key": "0" * 40}


def preview(title: str, body: str, deep_link: str, ranked_items: Sequence[Mapping[str, Any]],
            rich: RichPush | Mapping[str, Any] | None) -> dict[str, Any]:
    """What each platform would show of a message: per platform the image and buttons left after :func:`fit`
    (what was dropped, and why), the tap's link and the payload's bytes; ``fits`` False when the copy alone is
    over the limit. The review page renders it as an iOS and an Android notification."""
    featured = ranked_items[0] if ranked_items else {}
    push = {"title": title, "body": body, "deep_link": deep_link, "idempotency_key": "0" * 40,
            "collapse_id": "exp-00000000", "data": {**_PREVIEW_DATA, "deep_link": deep_link},
            **rich_fields(rich, item_id=str(featured.get("item_id") or ""),
                          image_url=str(featured.get("image_url") or ""), web_link=deep_link)}
    out: dict[str, Any] = {"rich": bool(rich), "limit": MAX_PAYLOAD_BYTES}
    for platform, build in BUILDERS.items():
        try:
            payload, dropped = fit(push, build)
        except PayloadTooLarge:
            out[platform] = {"fits": False, "bytes": encoded_size(build(plain_push(title, body, deep_link))),
                             "image": "", "buttons": [], "dropped": ["image", "buttons"], "link": deep_link}
            continue
        image = "" if "image" in dropped else push.get("image_url") or ""
        buttons = [] if "buttons" in dropped else [b["title"] for b in push.get("buttons") or []]
        link = (push.get("links") or {}).get("ios" if platform == "apns" else "android") or deep_link
        out[platform] = {"fits": True, "bytes": encoded_size(payload), "image": image, "buttons": buttons,
                         "dropped": dropped, "link": link}
    return out
