"""Device registrations: where a user's pushes go (an FCM or APNs token, or a webhook address), what
``POST /v1/devices`` stores and ``DELETE /v1/devices/{token}`` removes.

A token is one device: registering a token again updates its app and locale, and a token registered by another
user moves to that user (the phone changed hands, or the app logged in as someone else), so a push never goes to
a device's previous owner. A token the provider declared dead (FCM ``UNREGISTERED``, APNs 410 / ``BadDeviceToken``,
recorded by :func:`generator.experiments.ab.send` in ``dead_device_tokens``) shows as dead in the listing; the app
registering it again revives it, since only a live app can hand it over. Erasing a user deletes their devices
(:func:`generator.erasure.erase`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from generator.db.store import Store
from generator.db.tables import DeadToken, DeviceToken, utcnow

Platform = Literal["fcm", "apns", "webhook"]
PLATFORMS: tuple[str, ...] = ("fcm", "apns", "webhook")


@dataclass
class Registration:
    """The outcome of :func:`register`: the device row, and whether it was new, moved or revived."""

    device: dict[str, Any]
    created: bool
    moved_from: str | None = None
    revived: bool = False


def _as_dict(row: DeviceToken, dead: DeadToken | None) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {"id": row.id, "user_id": row.user_id, "platform": row.platform, "token": row.token, "app": row.app,
            "locale": row.locale, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at or
                                                                                     row.created_at),
            "dead": dead is not None, "dead_reason": dead.reason if dead else None,
            "dead_at": iso(dead.marked_at) if dead else None}


def register(store: Store, *, user_id: str, platform: str, token: str, app: str | None = None,
             locale: str | None = None) -> Registration:
    """Store (or update) one device. The token is the key: a known token gets this user, platform, app and
    locale; a dead one is revived. Safe under concurrent registrations of the same token."""
    for _ in range(3):  # a concurrent insert of the same token wins the unique constraint: update it instead
        try:
            return _register_once(store, user_id, platform, token, app, locale)
        except IntegrityError:
            continue
    raise RuntimeError(f"device token kept changing while registering it for {user_id}")


def _register_once(store: Store, user_id: str, platform: str, token: str, app: str | None,
                   locale: str | None) -> Registration:
    now = utcnow()
    with store.session() as s:
        rows = list(s.scalars(select(DeviceToken).where(DeviceToken.token == token).order_by(DeviceToken.id)
                              .with_for_update()))
        if not rows:
            row = DeviceToken(user_id=user_id, platform=platform, token=token, app=app, locale=locale,
                              created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            return Registration(_as_dict(row, None), created=True)
        row, extra = rows[0], rows[1:]  # older library calls may have stored one token under two platforms
        for other in extra:
            s.delete(other)
        moved = row.user_id if row.user_id != user_id else None
        row.user_id, row.platform, row.app, row.locale, row.updated_at = user_id, platform, app, locale, now
        dead = s.get(DeadToken, row.id)
        if dead is not None:
            s.delete(dead)
        s.flush()
        return Registration(_as_dict(row, None), created=False, moved_from=moved, revived=dead is not None)


def unregister(store: Store, token: str) -> int:
    """Remove the device with this token (every platform's row); returns how many rows went."""
    with store.session() as s:
        return int(s.execute(delete(DeviceToken).where(DeviceToken.token == token)).rowcount or 0)


def list_devices(store: Store, user_id: str) -> list[dict[str, Any]]:
    """A user's devices, oldest first, each with whether a provider declared it dead (and why, and when)."""
    with store.session() as s:
        rows = s.execute(select(DeviceToken, DeadToken).outerjoin(DeadToken, DeadToken.token_id == DeviceToken.id)
                         .where(DeviceToken.user_id == user_id).order_by(DeviceToken.id)).all()
        return [_as_dict(row, dead) for row, dead in rows]
