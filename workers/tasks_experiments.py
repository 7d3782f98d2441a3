"""Celery tasks of experiments: sending an experiment's pushes and the periodic learning loop. Thin wrappers over
:mod:`generator.experiments.ab` and :mod:`generator.learning`; both are safe to run again (a send already made is
never made twice; each loop pass trains the next adapter version)."""

from __future__ import annotations

from typing import Any

from generator.experiments import ab as experiments
from generator.learning import LoopConfig, run_loop
from workers.celery_app import app
from workers.stores import store


@app.task(name="workers.tasks_experiments.send_experiment", acks_late=True)
def send_experiment(experiment_id: str, provider: str = "dry-run", rate_limit: float | None = None) -> dict[str, int]:
    """Send the experiment's due pushes with ``provider``, built from the settings (``PUSHGEN_FCM_*``,
    ``PUSHGEN_APNS_*``, ``PUSHGEN_WEBHOOK_*``) by :func:`workers.senders.registry.make_sender`."""
    from workers.senders.registry import make_sender

    sender = make_sender(provider, rate_limit=rate_limit)
    try:
        return dict(experiments.send(store(), experiment_id, sender))
    finally:
        sender.close()


@app.task(name="workers.tasks_experiments.learning_loop")
def learning_loop(out_dir: str = "out/loop", adapter_base: str = "loop") -> dict[str, Any]:
    """One pass of the learning loop (scheduled daily by Celery beat: ``celery -A workers.celery_app beat``)."""
    run = run_loop(store(), LoopConfig(out_dir=out_dir, adapter_base=adapter_base))
    return {"run": run.id, "status": run.status, "adapter": run.adapter, "ctr_model": run.ctr_model,
            "counts": run.counts, "error": run.error}
