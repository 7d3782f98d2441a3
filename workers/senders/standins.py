"""Local stand-ins for the push providers, on loopback, speaking the same protocols: an FCM HTTP v1 server
(HTTP/1.1, uvicorn) and an APNs server (HTTP/2 over TLS with ALPN ``h2``, hypercorn; self-signed certificate)
that checks the ES256 provider token like Apple does. Tests and ``scripts/demo_experiment.py`` use them.

A device token's prefix chooses the answer, so one run can walk the documented error matrix:

| prefix | FCM | APNs |
| --- | --- | --- |
| ``unregistered-`` | 404 ``UNREGISTERED`` | 410 ``Unregistered`` |
| ``bad-`` | 400 ``INVALID_ARGUMENT`` | 400 ``BadDeviceToken`` |
| ``quota-`` | 429 ``QUOTA_EXCEEDED`` with ``Retry-After: 1``, once, then 200 | 429 ``TooManyRequests``, once |
| ``flaky-`` | 503 ``UNAVAILABLE`` twice, then 200 | 503 ``ServiceUnavailable`` twice |
| ``down-`` | 500 ``INTERNAL`` always | 500 ``InternalServerError`` always |
| ``auth-`` | 401 ``THIRD_PARTY_AUTH_ERROR`` | 403 ``InvalidProviderToken`` |
| anything else | 200 ``{"name": ...}`` | 200 with ``apns-id`` |
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_PAYLOAD = 4096


def make_apns_key() -> tuple[str, str]:
    """A fresh EC P-256 key pair as PEM texts: (private, as in an Apple .p8 file; public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (certfile, keyfile)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pushgen stand-in")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = folder / "standin.crt", folder / "standin.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


class _Behaviour:
    """Counts calls per token so 'once' and 'twice' answers can turn into success."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def nth(self, token: str) -> int:
        with self.lock:
            self.calls[token] += 1
            return self.calls[token]


def fcm_app(project_id: str, access_token: str, received: list[dict[str, Any]]) -> Starlette:
    behaviour = _Behaviour()

    def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
        status_name = {404: "NOT_FOUND", 400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE",
                       500: "INTERNAL", 401: "UNAUTHENTICATED"}[status]
        return JSONResponse({"error": {"code": status, "message": message, "status": status_name,
                                       "details": details}}, status_code=status, headers=headers)

    async def send(request: Request) -> Response:
        if request.path_params["project"] != project_id:
            return error(404, "UNSPECIFIED_ERROR", "unknown project")
        if request.headers.get("authorization") != f"Bearer {access_token}":
            return error(401, "THIRD_PARTY_AUTH_ERROR", "Request had invalid authentication credentials.")
        raw = await request.body()
        body = json.loads(raw)
        message = body.get("message", {})
        token = message.get("token", "")
        received.append({"path": request.url.path, "http_version": request.scope.get("http_version"),
                         "headers": dict(request.headers), "json": body})
        n = behaviour.nth(token)
        if token.startswith("unregistered-"):
            return error(404, "UNREGISTERED", "Requested entity was not found.")
        if token.startswith("bad-") or not token:
            return error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token")
        if token.startswith("auth-"):
            return error(401, "THIRD_PARTY_AUTH_ERROR", "APNs certificate or web push auth key was invalid")
        if token.startswith("quota-") and n == 1:
            return error(429, "QUOTA_EXCEEDED", "Sending limit exceeded.", {"Retry-After": "1"})
        if token.startswith("flaky-") and n <= 2:
            return error(503, "UNAVAILABLE", "The server is overloaded.")
        if token.startswith("down-"):
            return error(500, "INTERNAL", "An unknown internal error occurred.")
        payload = {k: v for k, v in message.items() if k != "token"}
        if len(json.dumps(payload, separators=(",", ":")).encode()) > MAX_PAYLOAD:
            return error(400, "INVALID_ARGUMENT", "Message payload exceeds the 4096-byte limit")
        return JSONResponse({"name": f"projects/{project_id}/messages/0:{uuid.uuid4().hex[:16]}"})

    return Starlette(routes=[Route("/v1/projects/{project}/messages:send", send, methods=["POST"])])


def apns_app(team_id: str, key_id: str, public_key: str, topic: str, received: list[dict[str, Any]]) -> Starlette:
    import jwt

    behaviour = _Behaviour()

    def reason(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
        body: dict[str, Any] = {"reason": text}
        if status == 410:
            body["timestamp"] = int(time.time() * 1000)
        return JSONResponse(body, status_code=status, headers=headers)

    async def push(request: Request) -> Response:
        token = request.path_params["token"]
        raw = await request.body()
        received.append({"path": request.url.path, "http_version": request.scope.get("http_version"),
                         "headers": dict(request.headers), "json": json.loads(raw) if raw else None})
        if request.scope.get("http_version") != "2":
            return reason(400, "BadHTTPVersion")  # APNs speaks HTTP/2 only
        auth = request.headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return reason(403, "MissingProviderToken")
        try:
            header = jwt.get_unverified_header(auth[7:])
            claims = jwt.decode(auth[7:], public_key, algorithms=["ES256"])
        except jwt.PyJWTError:
            return reason(403, "InvalidProviderToken")
        if header.get("kid") != key_id or claims.get("iss") != team_id:
            return reason(403, "InvalidProviderToken")
        if time.time() - float(claims.get("iat", 0)) > 3600:
            return reason(403, "ExpiredProviderToken")
        if request.headers.get("apns-topic") != topic:
            return reason(400, "TopicDisallowed")
        if request.headers.get("apns-push-type") not in ("alert", "background"):
            return reason(400, "InvalidPushType")
        if len(raw) > MAX_PAYLOAD:
            return reason(413, "PayloadTooLarge")
        n = behaviour.nth(token)
        if token.startswith("unregistered-"):
            return reason(410, "Unregistered")
        if token.startswith("bad-"):
            return reason(400, "BadDeviceToken")
        if token.startswith("auth-"):
            return reason(403, "InvalidProviderToken")
        if token.startswith("quota-") and n == 1:
            return reason(429, "TooManyRequests", {"retry-after": "1"})
        if token.startswith("flaky-") and n <= 2:
            return reason(503, "ServiceUnavailable")
        if token.startswith("down-"):
            return reason(500, "InternalServerError")
        return Response(status_code=200, headers={"apns-id": request.headers.get("apns-id") or str(uuid.uuid4())})

    return Starlette(routes=[Route("/3/device/{token}", push, methods=["POST"])])


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _UvicornStandIn:
    """An ASGI app served by uvicorn (HTTP/1.1) on 127.0.0.1 in a thread. Use as a context manager."""

    def __init__(self, app: Starlette):
        import uvicorn

        self._sock = _listening_socket()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self):  # type: ignore[no-untyped-def]
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                break
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


class FcmStandIn(_UvicornStandIn):
    """The FCM HTTP v1 stand-in (HTTP/1.1), checking the project and the OAuth bearer token."""

    def __init__(self, project_id: str = "demo-project", access_token: str = "test-oauth-token"):
        self.project_id, self.access_token = project_id, access_token
        self.received: list[dict[str, Any]] = []
        super().__init__(fcm_app(project_id, access_token, self.received))


def webhook_app(secret: str | None, received: list[dict[str, Any]]) -> Starlette:
    """A webhook receiver: checks the HMAC signature, answers by token prefix (``unregistered-``: 410,
    ``flaky-``: 503 twice, ``bad-``: 400), remembers idempotency keys and ignores repeats."""
    import hashlib
    import hmac

    behaviour, seen = _Behaviour(), set()

    async def hook(request: Request) -> Response:
        raw = await request.body()
        if secret is not None:
            want = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("x-pushgen-signature", ""), want):
                return JSONResponse({"error": "bad signature"}, status_code=401)
        body = json.loads(raw)
        token, key = body.get("token", ""), request.headers.get("idempotency-key", "")
        n = behaviour.nth(token)
        if token.startswith("unregistered-"):
            return JSONResponse({"error": "gone"}, status_code=410)
        if token.startswith("bad-"):
            return JSONResponse({"error": "bad request"}, status_code=400)
        if token.startswith("flaky-") and n <= 2:
            return JSONResponse({"error": "unavailable"}, status_code=503, headers={"Retry-After": "2"})
        if key not in seen:
            seen.add(key)
            received.append({"headers": dict(request.headers), "json": body})
        return JSONResponse({"ok": True}, headers={"x-request-id": f"wh-{len(received)}"})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


class WebhookStandIn(_UvicornStandIn):
    def __init__(self, secret: str | None = "hook-secret"):
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        super().__init__(webhook_app(secret, self.received))
        self.hook_url = f"{self.url}/hook"


class ApnsStandIn:
    """The APNs stand-in on 127.0.0.1: HTTP/2 over TLS (ALPN h2) with a self-signed certificate, hypercorn in a
    thread; ``ssl_context`` trusts that certificate. ``tls=False`` serves h2c (prior knowledge) instead."""

    def __init__(self, *, team_id: str = "TEAM123456", key_id: str = "KEY1234567", topic: str = "com.example.shop",
                 tls: bool = True):
        from hypercorn.config import Config

        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        self.private_key, self.public_key = make_apns_key()
        self.received: list[dict[str, Any]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="apns-standin-")
        self._sock = _listening_socket()
        port = self._sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{self._sock.fileno()}"]
        config.loglevel = "WARNING"
        config.accesslog = None
        self.ssl_context: ssl.SSLContext | None = None
        if tls:
            certfile, keyfile = self_signed_cert(Path(self._tmp.name))
            config.certfile, config.keyfile = str(certfile), str(keyfile)
            self.ssl_context = ssl.create_default_context(cafile=str(certfile))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self._config = config
        self._app = apns_app(team_id, key_id, self.public_key, topic, self.received)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from hypercorn.asyncio import serve

        def quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if not isinstance(context.get("exception"), asyncio.CancelledError):  # connections cut at shutdown
                loop.default_exception_handler(context)

        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._loop.set_exception_handler(quiet)
            self._ready.set()
            await serve(self._app, self._config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        asyncio.run(main())

    def __enter__(self) -> ApnsStandIn:
        self._thread.start()
        self._ready.wait(10)
        for _ in range(500):  # until it accepts connections
            try:
                with socket.create_connection(("127.0.0.1", self._sock.getsockname()[1]), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        try:
            self._sock.close()
        except OSError:  # hypercorn closed the inherited descriptor itself
            pass
        self._tmp.cleanup()
