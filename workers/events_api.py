"""Outcome ingestion and experiment results over HTTP: ``POST /v1/events`` (delivered, opened, clicked,
converted with optional revenue; idempotent by event id) and ``GET /v1/experiments/{id}`` (counts, statistics and
sample-ratio checks). Mounted on the API app by :func:`install`; tokens of the ``campaign_tool`` and ``admin``
roles may post events."""


from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from generator.core.errors import PushgenError
from generator.core.inputs import MAX_INT, STRICT
from generator.db.tokens import ROLES
from generator.experiments import ab as experiments
from workers.auth import requires


class OutcomeIn(BaseModel):
    """One outcome of one send. Name the send by ``send_id``, by the ``send_key`` carried in the push's data,
    or by ``experiment_id`` + ``user_id``."""

    model_config = STRICT
    event_id: str = Field(min_length=1, max_length=200, description="Client-chosen id; posting it again is a no-op.")
    type: Literal["delivered", "opened", "clicked", "converted"]
    send_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    send_key: str | None = Field(default=None, max_length=64)
    experiment_id: str | None = Field(default=None, max_length=36)
    user_id: str | None = Field(default=None, max_length=200)
    revenue: float | None = Field(default=None, ge=0, le=1e9, description="Order value; 'converted' only.")
    occurred_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _names_a_send(self) -> "OutcomeIn":
        if self.send_id is None and not self.send_key and not (self.experiment_id and self.user_id):
            raise ValueError("name the send: send_id, send_key, or experiment_id and user_id")
        if self.revenue is not None and self.type != "converted":
            raise ValueError("revenue: only a 'converted' event carries revenue")
        return self


class EventsIn(BaseModel):
    model_config = STRICT
    events: list[OutcomeIn] = Field(min_length=1, max_length=1000)


def install(app: FastAPI) -> None:
    @app.post("/v1/events", status_code=200, tags=["experiments"])
    def post_events(body: EventsIn, _: Annotated[str, Depends(requires("campaign_tool"))]) -> dict[str, Any]:
        """Store outcome events (all or none); an event id seen before counts as ``duplicate``."""
        rows = [e.model_dump() for e in body.events]
        for r in rows:
            if isinstance(r.get("occurred_at"), datetime) is False:
                r.pop("occurred_at", None)
        try:
            return experiments.record_events(app.state.store, rows)
        except PushgenError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/v1/experiments/{experiment_id}", tags=["experiments"])
    def get_experiment(experiment_id: Annotated[str, Path(min_length=1, max_length=36)],
                       _: Annotated[str, Depends(requires(*ROLES))]) -> dict[str, Any]:
        """The experiment's arms, counts per stage, comparisons against control and sample-ratio checks."""
        from generator.experiments.report import summary

        try:
            return summary(app.state.store, experiment_id)
        except experiments.ExperimentError as exc:
            raise HTTPException(404, str(exc)) from exc
