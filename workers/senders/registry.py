"""The sender registry: a provider name -> a factory that builds its sender from :class:`Settings` (the
``PUSHGEN_FCM_*``, ``PUSHGEN_APNS_*`` and ``PUSHGEN_WEBHOOK_*`` variables; docs/configuration.md). The command
line and the Celery task build senders here."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from generator.core.config import Settings, get_settings
from generator.core.errors import PushgenError
from workers.senders.base import RetryPolicy, Sender

Factory = Callable[[Settings, dict[str, Any]], Sender]
"""Builds a sender from the settings and the options every sender takes (``rate_limit``, ``retry``)."""


def make_sender(provider: str, *, settings: Settings | None = None, rate_limit: float | None = None,
                max_attempts: int = 5, **overrides: Any) -> Sender:
    """A sender for ``provider`` (one of :data:`PROVIDERS`) from ``settings`` (default: the process's), with
    ``overrides`` (settings fields given as options, e.g. ``dry_run_out=...``; None leaves a setting as it is)
    taking precedence; ``rate_limit`` (sends per second) and ``max_attempts`` (on 429 and 5xx) are the send's."""
    factory = FACTORIES.get(provider)
    if factory is None:
        raise PushgenError(f"provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    settings = settings or get_settings()
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise PushgenError(f"not a setting: {', '.join(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        settings = Settings.model_validate({**settings.model_dump(), **given})
    return factory(settings, {"rate_limit": rate_limit, "retry": RetryPolicy(max_attempts=max_attempts)})


def _need(settings: Settings, name: str) -> Any:
    """A provider's required setting, or an error naming its environment variable."""
    value = getattr(settings, name)
    if not value:
        raise PushgenError(f"set {settings.model_config.get('env_prefix', '')}{name.upper()}")
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def _fcm(settings: Settings, common: dict[str, Any]) -> Sender:
    from workers.senders.fcm import FCM_URL, FcmConfig, FcmSender

    cfg = FcmConfig(project_id=_need(settings, "fcm_project"), access_token=_need(settings, "fcm_access_token"),
                    base_url=settings.fcm_url or FCM_URL)
    return FcmSender(cfg, **common)


def _apns(settings: Settings, common: dict[str, Any]) -> Sender:
    from workers.senders.apns import APNS_URL, ApnsConfig, ApnsSender

    key_file, ca = _need(settings, "apns_key_file"), settings.apns_ca
    cfg = ApnsConfig(team_id=_need(settings, "apns_team_id"), key_id=_need(settings, "apns_key_id"),
                     private_key=key_file.read_text(), topic=_need(settings, "apns_topic"),
                     base_url=settings.apns_url or APNS_URL,
                     verify=ssl.create_default_context(cafile=str(ca)) if ca else True)
    return ApnsSender(cfg, **common)


def _webhook(settings: Settings, common: dict[str, Any]) -> Sender:
    from workers.senders.webhook import WebhookSender

    return WebhookSender(_need(settings, "webhook_url"), secret=_secret(settings.webhook_secret), **common)


def _dry_run(settings: Settings, common: dict[str, Any]) -> Sender:
    from workers.senders.dryrun import DryRunSender

    return DryRunSender(platform="any", out=settings.dry_run_out, **common)


FACTORIES: dict[str, Factory] = {"fcm": _fcm, "apns": _apns, "webhook": _webhook, "dry-run": _dry_run}
"""Provider name -> sender factory: a new provider plugs in here (and its settings in :class:`Settings`), without
touching :func:`make_sender`."""
PROVIDERS = tuple(FACTORIES)
