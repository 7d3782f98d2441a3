"""Build a sender from options or ``PUSHGEN_*`` environment variables (the CLI and the Celery task use this)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generator.core.errors import PushgenError
from workers.senders.base import RetryPolicy, Sender


def _env(name: str, given: str | None = None, *, required: bool = True) -> str | None:
    value = given or os.environ.get(name)
    if required and not value:
        raise PushgenError(f"set {name}")
    return value


def make_sender(provider: str, *, rate_limit: float | None = None, max_attempts: int = 5,
                dry_run_out: str | None = None, **opts: Any) -> Sender:
    """A sender for ``provider`` (one of :data:`FACTORIES`). FCM: ``PUSHGEN_FCM_PROJECT``,
    ``PUSHGEN_FCM_ACCESS_TOKEN`` (an OAuth 2 token for the firebase.messaging scope), ``PUSHGEN_FCM_URL``
    (optional). APNs: ``PUSHGEN_APNS_TEAM_ID``, ``PUSHGEN_APNS_KEY_ID``, ``PUSHGEN_APNS_KEY_FILE`` (.p8),
    ``PUSHGEN_APNS_TOPIC``, ``PUSHGEN_APNS_URL`` and ``PUSHGEN_APNS_CA`` (a CA file to trust, e.g. a stand-in's)
    optional. Webhook: ``PUSHGEN_WEBHOOK_URL``, ``PUSHGEN_WEBHOOK_SECRET`` (optional)."""
    factory = FACTORIES.get(provider)
    if factory is None:
        raise PushgenError(f"provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    common: dict[str, Any] = {"rate_limit": rate_limit, "retry": RetryPolicy(max_attempts=max_attempts)}
    return factory(opts, common, dry_run_out)


def _fcm(opts: dict[str, Any], common: dict[str, Any], _: str | None) -> Sender:
    from workers.senders.fcm import FCM_URL, FcmConfig, FcmSender

    cfg = FcmConfig(project_id=_env("PUSHGEN_FCM_PROJECT", opts.get("project")),
                    access_token=_env("PUSHGEN_FCM_ACCESS_TOKEN", opts.get("access_token")),
                    base_url=_env("PUSHGEN_FCM_URL", opts.get("url"), required=False) or FCM_URL)
    return FcmSender(cfg, **common)


def _apns(opts: dict[str, Any], common: dict[str, Any], _: str | None) -> Sender:
    from workers.senders.apns import APNS_URL, ApnsConfig, ApnsSender

    key_file = Path(_env("PUSHGEN_APNS_KEY_FILE", opts.get("key_file")))
    ca = _env("PUSHGEN_APNS_CA", opts.get("ca"), required=False)
    cfg = ApnsConfig(team_id=_env("PUSHGEN_APNS_TEAM_ID", opts.get("team_id")),
                     key_id=_env("PUSHGEN_APNS_KEY_ID", opts.get("key_id")),
                     private_key=key_file.read_text(), topic=_env("PUSHGEN_APNS_TOPIC", opts.get("topic")),
                     base_url=_env("PUSHGEN_APNS_URL", opts.get("url"), required=False) or APNS_URL,
                     verify=ssl.create_default_context(cafile=ca) if ca else True)
    return ApnsSender(cfg, **common)


def _webhook(opts: dict[str, Any], common: dict[str, Any], _: str | None) -> Sender:
    from workers.senders.webhook import WebhookSender

    return WebhookSender(_env("PUSHGEN_WEBHOOK_URL", opts.get("url")),
                         secret=_env("PUSHGEN_WEBHOOK_SECRET", opts.get("secret"), required=False), **common)


def _dry_run(opts: dict[str, Any], common: dict[str, Any], dry_run_out: str | None) -> Sender:
    from workers.senders.dryrun import DryRunSender

    return DryRunSender(platform=opts.get("platform") or "any", out=dry_run_out, **common)


FACTORIES: dict[str, Callable[[dict[str, Any], dict[str, Any], str | None], Sender]] = {
    "fcm": _fcm, "apns": _apns, "webhook": _webhook, "dry-run": _dry_run}
"""Provider name -> sender factory: a new provider plugs in here, without touching :func:`make_sender`."""
PROVIDERS = tuple(FACTORIES)
