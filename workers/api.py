"""The campaign-tool HTTP API (FastAPI; OpenAPI at /openapi.json, docs at /docs).

Token auth with roles: ``campaign_tool`` submits and reads jobs, ``reviewer`` reads them, ``admin`` does
everything, including erasing a user's personal data. Tokens are stored hashed (``pushgen token create``).
"""


import logging
import re
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Path, Query
from fastapi.security import HTTPAuthorizationCredentials

from generator import callbacks, jobs, privacy, review
from generator.core.config import get_settings
from generator.core.errors import PushgenError
from generator.core.inputs import MAX_INT
from generator.db.jobs import get_job
from generator.db.store import Store
from generator.db.tokens import role_of, token_name
from workers import review_pages, tasks
from workers.auth import bearer, requires
from workers.http_guard import RequestGuard, install_error_handlers
from workers.recovery import RecoveryLoop

JobId = Annotated[str, Path(min_length=1, max_length=36, description="The job's id (a UUID).")]


class RedactUserPaths(logging.Filter):
    """Access-log lines name ``/v1/users/[erased]``, never the user id an erasure was asked for."""

    PATTERN = re.compile(r"(/v1/users/)[^/?\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1[erased]", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1[erased]", record.msg)
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactUserPaths) for f in access.filters):
        access.addFilter(RedactUserPaths())


def create_app(store: Store | None = None, *, recover: bool = False) -> FastAPI:
    """The API app; with ``recover`` it also runs the recovery pass in a thread while it serves (``pushgen serve``),
    as every worker does."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        loop = RecoveryLoop(tasks.enqueue, at_start=True).start() if recover else None
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()

    app = FastAPI(title="pushgen", version="0.1.0", lifespan=lifespan,
                  description="Queue push-copy generation jobs and read their messages.")
    app.state.store = store or Store()
    _redact_access_log()

    @app.post("/v1/jobs", status_code=202)
    def submit(req: jobs.JobRequest, background: BackgroundTasks,
               _: Annotated[str, Depends(requires("campaign_tool"))],
               creds: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> dict[str, Any]:
        try:
            job, created = jobs.create_job(app.state.store, req)
        except PushgenError as exc:
            raise HTTPException(422, str(exc)) from exc
        if created and req.callback_url is not None:
            callbacks.subscribe(app.state.store, job.id, str(req.callback_url), creds.credentials)
        if created and job.status != "scheduled":  # a scheduled job is started by the recovery pass when due
            if get_settings().broker_url:
                jobs.dispatch(app.state.store, job.id, tasks.enqueue)
            else:
                background.add_task(jobs.run_job_inline, app.state.store, job.id)
                background.add_task(callbacks.drain, app.state.store)
        return {**jobs.job_status(app.state.store, job.id), "created": created}

    @app.get("/v1/jobs/{job_id}")
    def status(job_id: JobId, _: Annotated[str, Depends(requires("campaign_tool", "reviewer"))]) -> dict[str, Any]:
        out = jobs.job_status(app.state.store, job_id)
        if out is None:
            raise HTTPException(404, f"no job {job_id}")
        return out

    @app.get("/v1/jobs/{job_id}/messages")
    def messages(job_id: JobId, _: Annotated[str, Depends(requires("campaign_tool", "reviewer"))],
                 offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 review_status: Annotated[str | None, Query(pattern="^(pending|edited|approved|rejected)$",
                                                            description="Only messages in this review state, e.g. "
                                                                        "approved (what may be sent).")] = None,
                 ) -> dict[str, Any]:
        if get_job(app.state.store, job_id) is None:
            raise HTTPException(404, f"no job {job_id}")
        rows = review.list_messages(app.state.store, job_id, review_status=review_status, offset=offset, limit=limit)
        total = review.count_messages(app.state.store, job_id, review_status=review_status)
        return {"job_id": job_id, "offset": offset, "limit": limit, "total": total,
                "messages": [{"user_id": m.user_id, "variant": m.variant, "title": m.title, "body": m.body,
                              "deep_link": m.deep_link, "item_ids": m.item_ids, "status": m.status,
                              "review_status": m.review_status, "ctr_score": m.ctr_score,
                              "guardrails": m.guardrails} for m in rows]}

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: JobId, background: BackgroundTasks,
               _: Annotated[str, Depends(requires("campaign_tool"))]) -> dict[str, Any]:
        try:
            jobs.cancel_job(app.state.store, job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id}") from None
        background.add_task(callbacks.drain, app.state.store)  # the job.cancelled event, if one was asked for
        return jobs.job_status(app.state.store, job_id)

    @app.delete("/v1/users/{user_id}")
    def erase(user_id: Annotated[str, Path(min_length=1, max_length=200)],
              _: Annotated[str, Depends(requires("admin"))],
              creds: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> dict[str, Any]:
        """Erase the user's events, reviews, device tokens and the personal parts of their messages, and record
        that it was done (when, by which token, how many rows)."""
        who = token_name(app.state.store, creds.credentials) or "admin"
        return {"user_id": user_id, **privacy.erase_user(app.state.store, user_id, requested_by=who)}

    review_pages.install(app)  # the review workflow pages under /review
    from workers import events_api

    events_api.install(app)  # POST /v1/events, GET /v1/experiments/{id}
    from workers import devices_api

    app.include_router(devices_api.router)  # POST /v1/devices, DELETE /v1/devices/{token}, GET .../devices
    from workers import callbacks_api

    app.include_router(callbacks_api.router)  # POST /v1/callbacks/secret
    install_error_handlers(app)
    # outermost: token gate, streaming body limit and JSON limits before anything parses the request
    app.add_middleware(RequestGuard, max_bytes=lambda: get_settings().max_request_bytes,
                       token_ok=lambda token: role_of(app.state.store, token) is not None)
    return app


def serve_app() -> FastAPI:
    """What ``pushgen serve`` runs: the API with the recovery pass (``uvicorn --factory workers.api:serve_app``)."""
    return create_app(recover=True)


app = create_app  # `uvicorn --factory workers.api:app`
