"""A small Python client of the pushgen HTTP API."""

from __future__ import annotations

import time
from typing import Any

import httpx

from generator.core.errors import PushgenError


class ApiError(PushgenError):
    """The API answered with an error, or could not be reached."""


class PushgenClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                 timeout=timeout)

    def _ok(self, r: httpx.Response) -> dict[str, Any]:
        if r.status_code >= 400:
            raise ApiError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
        return r.json()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self._ok(self.http.request(method, path, **kwargs))
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {self.http.base_url}: {exc}") from None

    def submit(self, campaign: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/v1/jobs", json={"campaign": campaign, "idempotency_key": idempotency_key})

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def messages(self, job_id: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}/messages", params={"offset": offset, "limit": limit})

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def wait(self, job_id: str, timeout: float = 600, every: float = 1.0) -> dict[str, Any]:
        """Poll until the job is done, failed or cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.status(job_id)
            if s["status"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
                return s
            time.sleep(every)
