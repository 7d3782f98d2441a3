"""Device registration over HTTP (:mod:`generator.experiments.devices`): ``POST /v1/devices`` and
``DELETE /v1/devices/{token}`` for ``campaign_tool`` and ``admin`` tokens (the app's backend registers what the
app reports), ``GET /v1/users/{user_id}/devices`` for ``admin`` tokens only (device tokens are personal data)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from generator.experiments import devices
from workers.auth import requires

TOKEN_PATTERN = r"^[A-Za-z0-9_:.~+=-]+$"  # FCM (base64url with ':'), APNs (hex), webhook ids; never '/' or spaces
UserId = Annotated[str, Path(min_length=1, max_length=200)]
DeviceTokenPath = Annotated[str, Path(min_length=1, max_length=1024, pattern=TOKEN_PATTERN)]


class DeviceIn(BaseModel):
    """One device as the app reports it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    user_id: str = Field(min_length=1, max_length=200, description="The shop's user id.")
    platform: devices.Platform = Field(description="fcm, apns or webhook: which sender reaches this token.")
    token: str = Field(min_length=1, max_length=1024, pattern=TOKEN_PATTERN,
                       description="The provider's device token (registering it again updates or moves it).")
    app: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$",
                            description="The app's bundle or package id, e.g. com.example.shop.")
    locale: str | None = Field(default=None, max_length=16, pattern=r"^[a-z]{2,3}([_-][A-Za-z]{2,4})?$",
                               description="The device's locale, e.g. en_US.")


router = APIRouter(tags=["devices"])


@router.post("/v1/devices", status_code=201)
def register_device(body: DeviceIn, request: Request, response: Response,
                    _: Annotated[str, Depends(requires("campaign_tool"))]) -> dict[str, Any]:
    """Register a device (201), or update a known token (200): a token sent by another user moves to them."""
    out = devices.register(request.app.state.store, **body.model_dump())
    if not out.created:
        response.status_code = 200
    return {**out.device, "created": out.created, "moved_from": out.moved_from, "revived": out.revived}


@router.delete("/v1/devices/{token}")
def unregister_device(token: DeviceTokenPath, request: Request,
                      _: Annotated[str, Depends(requires("campaign_tool"))]) -> dict[str, Any]:
    """Forget a device (the user logged out or uninstalled)."""
    if devices.unregister(request.app.state.store, token) == 0:
        raise HTTPException(404, "token: no device with this token")
    return {"token": token, "deleted": True}


@router.get("/v1/users/{user_id}/devices")
def user_devices(user_id: UserId, request: Request, _: Annotated[str, Depends(requires())]) -> dict[str, Any]:
    """A user's devices with their state (``dead`` with the provider's reason); admin only."""
    return {"user_id": user_id, "devices": devices.list_devices(request.app.state.store, user_id)}
