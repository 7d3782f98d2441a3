"""A dry-run sender: builds and size-checks the push as the chosen provider would, sends nothing, and keeps (and
optionally appends to a JSONL file) what it would have sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.senders.base import Attempt, Sender, check_size


class DryRunSender(Sender):
    def __init__(self, *, platform: str = "any", out: str | Path | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.platform = platform
        self.out = Path(out) if out else None
        self.sent: list[dict[str, Any]] = []

    def send_once(self, token: str, push: dict[str, Any]) -> Attempt:
        if self.platform == "apns":
            from workers.senders.apns import build_payload

            check_size(build_payload(push))
        else:
            from workers.senders.fcm import build_message

            check_size({k: v for k, v in build_message(token, push)["message"].items() if k != "token"})
        record = {"token": token, **push}
        self.sent.append(record)
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            with self.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return Attempt("sent", None, provider_id=f"dry-run-{len(self.sent)}")
