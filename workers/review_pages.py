"""The review workflow web pages, served by the API app under ``/review`` (server-rendered Jinja2, plain forms,
a little JavaScript for keyboard shortcuts; nothing is loaded from outside the app).

Login takes an API token of the ``reviewer`` or ``admin`` role (``pushgen token create --role reviewer``). The
session is a cookie signed with HMAC-SHA256 (key generated once per database, see
:func:`generator.review.app_secret`), HttpOnly, SameSite=Strict, Secure over HTTPS, valid for 8 hours and only
while the token still exists. Every POST carries the session's CSRF token in the form and is refused without it.
Every text from shoppers, the model or reviewers is escaped by Jinja's autoescape, and a strict
Content-Security-Policy allows only this app's own script.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import Field

from generator import review
from generator.core.inputs import MAX_INT
from generator.db.jobs import get_job
from generator.db.store import Store
from generator.db.tables import Job, Message
from generator.review import REVIEW_STATUSES, Reviewer, ReviewError

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "pushgen_review"
LOGIN_CSRF_COOKIE = "pushgen_login_csrf"
FLASH_COOKIE = "pushgen_flash"
SESSION_SECONDS = 8 * 3600
PAGE_SIZE = 50
MAX_PAGE = 10**9  # pages * page size stays far inside a 64-bit offset
MessageId = Annotated[int, PathParam(ge=1, le=MAX_INT, description="The message's id.")]
STATIC = {"review.css": "text/css", "review.js": "text/javascript"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{images}; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def csp() -> str:
    """The Content-Security-Policy: images only from this app, or from ``PUSHGEN_REVIEW_IMAGE_HOSTS`` (https)."""
    from generator.core.config import get_settings

    hosts = "".join(f" https://{h}" for h in get_settings().review_image_hosts if re.fullmatch(r"[\w.*-]+", h))
    return CSP.format(images=hosts)

router = APIRouter(prefix="/review", include_in_schema=False)
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                        trim_blocks=True, lstrip_blocks=True)


# --- signed cookies -----------------------------------------------------------------------------------------

def _key(request: Request) -> bytes:
    app = request.app
    if getattr(app.state, "review_key", None) is None:
        app.state.review_key = review.app_secret(_store(request), "review_session").encode()
    return app.state.review_key


def _sign(request: Request, payload: dict[str, Any]) -> str:
    data = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{data}.{hmac.new(_key(request), data.encode(), hashlib.sha256).hexdigest()}"


def _unsign(request: Request, value: str | None) -> dict[str, Any] | None:
    if not value or "." not in value:
        return None
    data, sig = value.rsplit(".", 1)
    if not hmac.compare_digest(sig, hmac.new(_key(request), data.encode(), hashlib.sha256).hexdigest()):
        return None
    try:
        out = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/review", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def _store(request: Request) -> Store:
    return request.app.state.store


# --- session and CSRF ---------------------------------------------------------------------------------------

class Session:
    """The logged-in reviewer and the CSRF token of their session."""

    def __init__(self, who: Reviewer, csrf: str):
        self.who, self.csrf = who, csrf


def _session(request: Request) -> Session | None:
    data = _unsign(request, request.cookies.get(SESSION_COOKIE))
    if not data or not isinstance(data.get("exp"), int) or data["exp"] < time.time():
        return None
    try:
        who = review.reviewer_by_id(_store(request), int(data["tid"]), str(data["th"]))
        if who is not None and not review.session_is_open(_store(request), str(data["sid"]), int(data["tid"])):
            return None  # logged out (or expired) on the server: the cookie alone is not enough
    except (KeyError, TypeError, ValueError):
        return None
    return Session(who, str(data.get("csrf", ""))) if who is not None else None


def _login_redirect(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":  # an expired session's form post: come back to the pages, not to the POST URL
        target = "/review/jobs"
    return HTTPException(303, "log in first", headers={"Location": "/review/login?" + urlencode({"next": target})})


def page_session(request: Request) -> Session:
    """A GET page's session; without one, a redirect to the login page."""
    s = _session(request)
    if s is None:
        raise _login_redirect(request)
    return s


def _same_origin(request: Request) -> bool:
    """An Origin header, when the browser sends one, must be this host (a second line behind the token)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def post_session(request: Request, csrf: Annotated[str, Form()] = "") -> Session:
    """A POST's session: logged in, and the form's CSRF token equal to the session's."""
    s = _session(request)
    if s is None:
        raise _login_redirect(request)
    if not csrf or not hmac.compare_digest(csrf, s.csrf) or not _same_origin(request):
        raise HTTPException(403, "CSRF check failed: reload the page and try again")
    return s


def _safe_next(url: str | None, default: str) -> str:
    """Only a path inside the review pages (never another site) is a place to return to."""
    if url and url.startswith("/review/") and not url.startswith("//") and "\\" not in url:
        return url
    return default


def _flash(request: Request, response: Response, text: str, level: str = "ok") -> None:
    _set_cookie(request, response, FLASH_COOKIE, _sign(request, {"text": text, "level": level}), 60)


def _back(request: Request, next_url: str | None, default: str, text: str, level: str = "ok",
          anchor: str = "") -> RedirectResponse:
    resp = RedirectResponse(_safe_next(next_url, default) + anchor, status_code=303)
    _flash(request, resp, text, level)
    return resp


def _render(request: Request, name: str, session: Session | None, **context: Any) -> HTMLResponse:
    flash = _unsign(request, request.cookies.get(FLASH_COOKIE))
    html = templates.get_template(f"review/{name}").render(request=request, session=session, flash=flash,
                                               statuses=REVIEW_STATUSES, **context)
    resp = HTMLResponse(html.encode("utf-8", "replace"))  # text stored before input was checked still renders
    if flash is not None:
        resp.delete_cookie(FLASH_COOKIE, path="/review")
    return resp


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise HTTPException(404, "not found")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


# --- login --------------------------------------------------------------------------------------------------

@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/review/jobs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/review/jobs") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = _render(request, "login.html", None, login_csrf=token, next=_safe_next(next, "/review/jobs"))
    _set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, 3600)
    return resp


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=500)] = "",
          csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/review/jobs") -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not csrf or not expected or not hmac.compare_digest(csrf, expected) or not _same_origin(request):
        raise HTTPException(403, "CSRF check failed: reload the login page and try again")
    who = review.reviewer_for_token(_store(request), token)
    if who is None:
        resp = _render(request, "login.html", None, login_csrf=expected, next=_safe_next(next, "/review/jobs"),
                       error="That token does not exist or its role may not review (use a reviewer or admin "
                             "token).")
        resp.status_code = 401
        return resp
    payload = {"tid": who.token_id, "th": review.token_hash_prefix(_store(request), who.token_id or 0),
               "sid": review.open_session(_store(request), who.token_id or 0, SESSION_SECONDS),
               "csrf": secrets.token_urlsafe(32), "exp": int(time.time()) + SESSION_SECONDS}
    resp = RedirectResponse(_safe_next(next, "/review/jobs"), status_code=303)
    _set_cookie(request, resp, SESSION_COOKIE, _sign(request, payload), SESSION_SECONDS)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/review")
    return resp


@router.post("/logout")
def logout(request: Request, _: Annotated[Session, Depends(post_session)]) -> RedirectResponse:
    data = _unsign(request, request.cookies.get(SESSION_COOKIE)) or {}
    review.close_session(_store(request), str(data.get("sid", "")))  # revoked on the server, not only forgotten
    resp = RedirectResponse("/review/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/review")
    return resp


# --- pages --------------------------------------------------------------------------------------------------

def _job(request: Request, job_id: str) -> Job:
    job = get_job(_store(request), job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: Annotated[Session, Depends(page_session)]) -> HTMLResponse:
    jobs = review.list_jobs(_store(request))
    counts = review.review_counts(_store(request), [j.id for j in jobs])
    return _render(request, "jobs.html", session, jobs=jobs, counts=counts)


def _cards(request: Request, job: Job, messages: list[Message]) -> list[dict[str, Any]]:
    trail = review.history(_store(request), [m.id for m in messages])
    rich = review.campaign_of(job).rich
    return [{"m": m, "events": trail[m.id], "approvable": review.approvable(m), "failing": review.failing_checks(m),
             "top_items": review.display_items(m, job), "preview": _preview(m, rich)} for m in messages]


def _preview(m: Message, rich: Any) -> dict[str, Any]:
    """The push as each platform shows it; its image only from PUSHGEN_REVIEW_IMAGE_HOSTS (else a placeholder)."""
    from generator.core.payload import preview

    out = preview(m.title, m.body, m.deep_link or "", m.ranked_items or [], rich)
    for platform in ("apns", "fcm"):
        image = out[platform]["image"]
        out[platform]["shown_image"] = image if image and review.image_allowed(image) else ""
    return out


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def queue_page(request: Request, job_id: str, session: Annotated[Session, Depends(page_session)],
               status: Annotated[str, Query(pattern="^(|pending|edited|approved|rejected)$")] = "",
               flag: Annotated[str, Query(pattern="^(|pass|fail)$")] = "",
               variant: Annotated[str, Query(pattern=r"^\d{0,2}$")] = "",
               page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1) -> HTMLResponse:
    job = _job(request, job_id)
    store = _store(request)
    filters = {"review_status": status or None, "flag": flag or None,
               "variant": int(variant) if variant else None}
    total = review.count_messages(store, job_id, **filters)
    messages = review.list_messages(store, job_id, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE, **filters)
    query = {k: v for k, v in {"status": status, "flag": flag, "variant": variant}.items() if v}
    here = f"/review/jobs/{job_id}" + (f"?{urlencode({**query, 'page': page})}" if query or page > 1 else "")
    campaign = review.campaign_of(job)
    return _render(request, "queue.html", session, job=job, cards=_cards(request, job, messages), total=total,
                   counts=review.review_counts(store, [job_id])[job_id], rule=review.get_rule(store, job_id),
                   filters={"status": status, "flag": flag, "variant": variant}, page=page,
                   pages=max(1, -(-total // PAGE_SIZE)), query=query, here=here, variants=campaign.variants,
                   campaign=campaign, guidelines=_guidelines(campaign))


def _guidelines(campaign: Any) -> Any:
    """The brand guidelines the job's copy is held to (the campaign's, else its adapter's brand.yaml)."""
    from generator.check.brand import policy_with_guidelines
    from generator.core.errors import PushgenError

    try:
        return policy_with_guidelines(campaign.policy, campaign.adapter).guidelines
    except PushgenError:  # a broken brand.yaml: the checks report it; the page still shows the queue
        return None


@router.get("/jobs/{job_id}/variants", response_class=HTMLResponse)
def variants_page(request: Request, job_id: str, session: Annotated[Session, Depends(page_session)],
                  page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1) -> HTMLResponse:
    job = _job(request, job_id)
    store = _store(request)
    campaign = review.campaign_of(job)
    per_page = PAGE_SIZE * max(1, campaign.variants)
    messages = review.list_messages(store, job_id, offset=(page - 1) * per_page, limit=per_page)
    users: dict[str, dict[int, Message]] = {}
    for m in messages:
        users.setdefault(m.user_id, {})[m.variant] = m
    variants = sorted({m.variant for m in messages}) or [0]
    total = review.count_messages(store, job_id)
    return _render(request, "variants.html", session, job=job, users=users, variants=variants, page=page,
                   pages=max(1, -(-total // per_page)), approvable=review.approvable,
                   here=f"/review/jobs/{job_id}/variants" + (f"?page={page}" if page > 1 else ""))


# --- actions ------------------------------------------------------------------------------------------------

def _message(request: Request, message_id: int) -> Message:
    with _store(request).session() as s:
        m = s.get(Message, message_id)
    if m is None:
        raise HTTPException(404, f"no message {message_id}")
    return m


@router.post("/messages/{message_id}/approve")
def approve(request: Request, message_id: MessageId, session: Annotated[Session, Depends(post_session)],
            next: Annotated[str, Form()] = "") -> RedirectResponse:
    m = _message(request, message_id)
    default, anchor = f"/review/jobs/{m.job_id}", f"#m-{message_id}"
    try:
        review.approve(_store(request), message_id, session.who)
    except ReviewError as exc:
        return _back(request, next, default, str(exc), "error", anchor)
    return _back(request, next, default, f"Approved {m.user_id} (variant {m.variant}).", anchor=anchor)


@router.post("/messages/{message_id}/reject")
def reject(request: Request, message_id: MessageId, session: Annotated[Session, Depends(post_session)],
           reason: Annotated[str, Form(max_length=review.MAX_TEXT)] = "",
           next: Annotated[str, Form()] = "") -> RedirectResponse:
    m = _message(request, message_id)
    default, anchor = f"/review/jobs/{m.job_id}", f"#m-{message_id}"
    try:
        review.reject(_store(request), message_id, session.who, reason)
    except ReviewError as exc:
        return _back(request, next, default, str(exc), "error", anchor)
    return _back(request, next, default, f"Rejected {m.user_id} (variant {m.variant}).", anchor=anchor)


@router.post("/messages/{message_id}/edit")
def edit(request: Request, message_id: MessageId, session: Annotated[Session, Depends(post_session)],
         title: Annotated[str, Form(max_length=review.MAX_TEXT)] = "",
         body: Annotated[str, Form(max_length=review.MAX_TEXT)] = "",
         then: Annotated[str, Form(pattern="^(save|approve)$")] = "save",
         next: Annotated[str, Form()] = "") -> RedirectResponse:
    m = _message(request, message_id)
    default, anchor = f"/review/jobs/{m.job_id}", f"#m-{message_id}"
    store = _store(request)
    try:
        _, results = review.edit(store, message_id, session.who, title, body)
    except ReviewError as exc:
        return _back(request, next, default, str(exc), "error", anchor)
    failed = [f"{r.name}: {r.reason}" for r in results if not r.passed]
    if failed:
        return _back(request, next, default, f"Edit saved, but it fails {len(failed)} guardrail check(s) and "
                     f"cannot be approved: {'; '.join(failed)}", "error", anchor)
    if then == "approve":
        try:
            review.approve(store, message_id, session.who)
        except ReviewError as exc:  # changed by someone else meanwhile
            return _back(request, next, default, str(exc), "error", anchor)
        return _back(request, next, default, "Edit passes every check; saved and approved.", anchor=anchor)
    return _back(request, next, default, "Edit passes every check; saved. Approve it when ready.", anchor=anchor)


@router.post("/jobs/{job_id}/approve-passing")
def approve_passing(request: Request, job_id: str, session: Annotated[Session, Depends(post_session)],
                    next: Annotated[str, Form()] = "") -> RedirectResponse:
    _job(request, job_id)
    n = review.approve_passing(_store(request), job_id, session.who)
    return _back(request, next, f"/review/jobs/{job_id}", f"Approved {n} message(s) that pass every check.")


@router.post("/jobs/{job_id}/bulk")
def bulk(request: Request, job_id: str, session: Annotated[Session, Depends(post_session)],
         action: Annotated[str, Form(pattern="^(approve|reject)$")],
         ids: Annotated[list[Annotated[int, Field(ge=1, le=MAX_INT)]] | None, Form()] = None,
         reason: Annotated[str, Form(max_length=review.MAX_TEXT)] = "",
         next: Annotated[str, Form()] = "") -> RedirectResponse:
    _job(request, job_id)
    store = _store(request)
    wanted = ids or []
    with store.session() as s:
        mine = {m.id for m in s.query(Message.id).filter(Message.job_id == job_id, Message.id.in_(wanted))}
    if not mine:
        return _back(request, next, f"/review/jobs/{job_id}", "Select messages first (x or the checkboxes).",
                     "error")
    try:
        done, skipped = review.bulk(store, mine, action, session.who, reason)
    except ReviewError as exc:
        return _back(request, next, f"/review/jobs/{job_id}", str(exc), "error")
    text = f"{'Approved' if action == 'approve' else 'Rejected'} {done} selected message(s)."
    if skipped:
        text += f" Skipped {len(skipped)} that fail a guardrail check (edit them first)."
    return _back(request, next, f"/review/jobs/{job_id}", text, "error" if skipped else "ok")


@router.post("/jobs/{job_id}/rule")
def rule(request: Request, job_id: str, session: Annotated[Session, Depends(post_session)],
         min_ctr: Annotated[str, Form(max_length=20)] = "", remove: Annotated[str, Form()] = "",
         next: Annotated[str, Form()] = "") -> RedirectResponse:
    _job(request, job_id)
    store, default = _store(request), f"/review/jobs/{job_id}"
    if remove:
        review.clear_rule(store, job_id)
        return _back(request, next, default, "Auto-approve rule removed.")
    try:
        value = float(min_ctr)
    except ValueError:
        return _back(request, next, default, "The threshold must be a number between 0 and 1.", "error")
    try:
        n = review.set_rule(store, job_id, value, session.who)
    except ReviewError as exc:
        return _back(request, next, default, str(exc), "error")
    return _back(request, next, default, f"Auto-approve rule saved (passing and predicted CTR ≥ {value:g}); "
                 f"it approved {n} message(s) now.")


def install(app: Any) -> None:
    """Mount the review pages on an API app, with security headers on every review response."""

    @app.middleware("http")
    async def review_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        if request.url.path.startswith("/review"):
            response.headers.setdefault("Content-Security-Policy", csp())
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
            if "text/html" in response.headers.get("content-type", ""):
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.include_router(router)
