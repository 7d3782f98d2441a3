"""What every HTTP request meets before FastAPI parses it, and how errors are answered.

:class:`RequestGuard` is plain ASGI middleware, outermost:

1. ``/v1/`` requests without a bearer token of a stored API token are answered 401 at once, before a byte of
   their body is read (a body nobody may send is never parsed, never buffered);
2. a ``Content-Length`` over the limit is answered 413; a body without one (chunked) is counted while it
   streams in and answered 413 as soon as it passes the limit, so memory never holds more than the limit;
3. a JSON body is checked against :mod:`generator.core.inputs` limits (nesting, 64-bit integers, finite numbers,
   valid Unicode) and answered 422 naming the field.

The error handlers answer with JSON that can always be encoded: the input is never echoed, text is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from generator.core.inputs import InputError, check_value, show

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _answer(send: Send, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=True).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Token gate, streaming body limit and JSON limits in front of the app (see the module doc)."""

    def __init__(self, app: Any, *, max_bytes: Callable[[], int], token_ok: Callable[[str], bool]):
        self.app, self.max_bytes, self.token_ok = app, max_bytes, token_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if scope["path"].startswith("/v1/"):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return await _answer(send, 401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
            if not await run_in_threadpool(self.token_ok, token.strip()):
                return await _answer(send, 401, "invalid token", {"WWW-Authenticate": "Bearer"})
        limit = self.max_bytes()
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _answer(send, 413, f"request body over {limit} bytes")
        body = await _read_body(receive, limit)
        if body is None:
            return await _answer(send, 413, f"request body over {limit} bytes")
        if body and "json" in headers.get("content-type", ""):
            problem = _json_problem(body)
            if problem is not None:
                return await _answer(send, 422, [{"loc": ["body", *problem[0]], "msg": problem[1],
                                                  "type": "value_error"}])
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, read as it streams; None once it passes ``limit`` bytes (the rest is never read)."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's own receive does

    return again


def _json_problem(body: bytes) -> tuple[list[str], str] | None:
    """(field path, problem) when a JSON body breaks the input limits; None when it is fine or is not JSON at
    all (FastAPI then answers 422 for the syntax)."""
    try:
        doc = json.loads(body)
    except RecursionError:
        return [], "nested deeper than the limit"
    except ValueError:
        return None
    try:
        check_value(doc)
    except InputError as exc:
        field, _, problem = str(exc).partition(": ")
        return ([p for p in field.split(".") if p] if problem else []), problem or str(exc)
    return None


def _safe(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) < 2**63 else show(value, 30)
    return show(value, 200)


def install_error_handlers(app: FastAPI) -> None:
    """Validation errors as ``[{loc, msg, type}]`` without the input itself (which may be NaN, a huge number, a
    lone surrogate or deeply nested, none of which JSON can carry back), and HTTP errors with escaped text."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": [_safe(p) for p in e.get("loc", ())], "msg": show(e.get("msg", "invalid"), 300),
                   "type": str(e.get("type", "value_error"))} for e in exc.errors()[:20]]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": show(detail, 500)}, status_code=exc.status_code, headers=exc.headers)
