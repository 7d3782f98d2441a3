"""The Celery app: one settings object (``generator.core.config.Settings``), two queues.

``cpu`` takes job orchestration; ``gpu`` takes generation chunks. Generation workers load the model once per
process and must not inherit CUDA from a forking parent: run them with ``--pool solo`` (or threads), which
``pushgen worker`` does for the gpu queue. Delivery is at-least-once (``acks_late`` and
``task_reject_on_worker_lost``); chunk writes are idempotent, so a redelivered chunk never duplicates messages.
"""

from __future__ import annotations

from celery import Celery

from generator.core.config import get_settings


def make_app() -> Celery:
    return configure(Celery("pushgen", include=["workers.tasks", "workers.tasks_experiments",
                                                "workers.tasks_callbacks"]))


def configure(app: Celery) -> Celery:
    """Set ``app``'s configuration from the current settings."""
    settings = get_settings()
    broker = settings.broker_url or "memory://"
    app.conf.update(
        broker_url=broker,
        result_backend=settings.result_backend,
        task_always_eager=settings.broker_url is None,  # the embedded default: tasks run in process
        task_eager_propagates=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_routes={"workers.tasks.start_job": {"queue": "cpu"}, "workers.tasks.generate_chunk": {"queue": "gpu"},
                     "workers.tasks_experiments.send_experiment": {"queue": "cpu"},
                     "workers.tasks_experiments.learning_loop": {"queue": "gpu"}},
        # `celery -A workers.celery_app beat` runs the learning loop once a day
        beat_schedule={"learning-loop": {"task": "workers.tasks_experiments.learning_loop", "schedule": 24 * 3600.0}},
        task_default_queue="cpu",
        # Redis hands an unacknowledged message to another worker only after this; a chunk takes seconds
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # stderr stays stderr: pushgen's log handler writes there (a redirected
        # stderr sent each record back into logging, where it was dropped)
    )
    return app


def follow_settings() -> Celery:
    """The app, reconfigured first if the settings' broker changed since it was configured (code that changes
    settings in process, such as tests or an embedding service), with connections to the old broker closed."""
    settings = get_settings()
    if (app.conf.broker_url, app.conf.result_backend) != (settings.broker_url or "memory://", settings.result_backend):
        app.close()  # the connection and producer pools of the old broker
        app.__dict__.pop("amqp", None)  # and kombu's memory of queues declared there (a new broker has none)
        configure(app)
    return app


app = make_app()
