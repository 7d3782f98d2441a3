"""The Celery task that drains the completion-callback outbox (:func:`generator.callbacks.drain`). Acknowledged
late and safe to run twice: events are claimed under row locks, and each carries its idempotency id."""

from __future__ import annotations

from generator import callbacks
from workers.celery_app import app
from workers.stores import store


@app.task(name="workers.tasks_callbacks.deliver", acks_late=True, reject_on_worker_lost=True)
def deliver() -> dict[str, int]:
    """Send the completion events that are due; returns how many were delivered, retried and failed."""
    return dict(callbacks.drain(store()))
