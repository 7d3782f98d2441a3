"""The sender registry builds senders from Settings: the PUSHGEN_FCM_*, PUSHGEN_APNS_*, PUSHGEN_WEBHOOK_* and
PUSHGEN_DRY_RUN_OUT variables, with options given by the caller (the command line's) taking precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.core.config import Settings, get_settings
from generator.core.errors import PushgenError
from workers.senders import ApnsSender, FcmSender, WebhookSender
from workers.senders.registry import PROVIDERS, make_sender
from workers.senders.standins import FcmStandIn, make_apns_key

PUSH = {"title": "Desk lamp is on sale", "body": "Now 19.99, 20% off.", "deep_link": "shop://item/I1"}


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"PUSHGEN_{name.upper()}", value)
    get_settings.cache_clear()


def test_the_registry_names_every_provider() -> None:
    assert PROVIDERS == ("fcm", "apns", "webhook", "dry-run")
    with pytest.raises(PushgenError, match="pigeon"):
        make_sender("pigeon")


def test_fcm_from_the_environment_sends_to_the_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with FcmStandIn() as server:
        _env(monkeypatch, fcm_project=server.project_id, fcm_access_token=server.access_token, fcm_url=server.url)
        sender = make_sender("fcm", max_attempts=1)
        try:
            assert isinstance(sender, FcmSender) and sender.deliver("ok-registry", PUSH).status == "sent"
        finally:
            sender.close()
        assert server.received[-1]["headers"]["authorization"] == f"Bearer {server.access_token}"


def test_a_missing_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, fcm_project="p")
    with pytest.raises(PushgenError, match="set PUSHGEN_FCM_ACCESS_TOKEN"):
        make_sender("fcm")
    with pytest.raises(PushgenError, match="set PUSHGEN_WEBHOOK_URL"):
        make_sender("webhook")
    with pytest.raises(PushgenError, match="not a setting: fcm_projekt"):
        make_sender("fcm", fcm_projekt="p")


def test_options_override_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _env(monkeypatch, fcm_project="from-env", fcm_access_token="t", dry_run_out=str(tmp_path / "env.jsonl"))
    sender = make_sender("fcm", fcm_project="given")
    assert isinstance(sender, FcmSender) and sender.config.project_id == "given"
    assert make_sender("fcm", fcm_project=None).config.project_id == "from-env"  # None: as configured
    assert make_sender("dry-run").deliver("t1", PUSH).status == "sent"
    assert make_sender("dry-run", dry_run_out=tmp_path / "given.jsonl").deliver("t2", PUSH).status == "sent"
    tokens = {name: [json.loads(line)["token"] for line in (tmp_path / name).read_text().splitlines()]
              for name in ("env.jsonl", "given.jsonl")}
    assert tokens == {"env.jsonl": ["t1"], "given.jsonl": ["t2"]}


def test_apns_and_webhook_from_explicit_settings(tmp_path: Path) -> None:
    private_pem, _ = make_apns_key()
    (tmp_path / "key.p8").write_text(private_pem)
    settings = Settings(apns_team_id="TEAM", apns_key_id="KEY", apns_key_file=tmp_path / "key.p8",
                        apns_topic="com.example.shop", apns_url="https://apns.invalid",
                        webhook_url="https://hooks.invalid/push", webhook_secret="s3cret")
    apns = make_sender("apns", settings=settings)
    assert isinstance(apns, ApnsSender) and apns.config.base_url == "https://apns.invalid"
    assert apns.config.private_key == private_pem and apns.config.topic == "com.example.shop"
    hook = make_sender("webhook", settings=settings)
    assert isinstance(hook, WebhookSender) and (hook.url, hook.secret) == ("https://hooks.invalid/push", "s3cret")
    assert "s3cret" not in repr(settings)  # secrets stay out of logs
