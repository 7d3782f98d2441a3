"""The verdict of one named check on one copy (what the guardrails and the brand's check return)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason}  # asdict's, without its copies
