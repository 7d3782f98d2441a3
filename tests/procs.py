"""Helpers of the tests that run real worker and server processes."""

from __future__ import annotations

import time


def wait_for(pred, timeout: float, every: float = 0.5):  # type: ignore[no-untyped-def]
    """``pred()``'s first truthy value, polled every ``every`` s; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError
