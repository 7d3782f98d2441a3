"""Property-based fuzzing (issue 18) of every way input comes in: campaign files, API bodies (Hypothesis and
schemathesis), shop files and review forms. Whatever arrives: never a 5xx, never a traceback (only pushgen's own
errors, in one line), and nothing stored when it is refused. Derandomised and bounded (max_examples), so it runs
in CI in well under a minute."""

from __future__ import annotations

import base64
import json
import re
import string
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from generator import jobs
from generator.campaign.spec import load_campaign
from generator.core.data import CONTRACTS, load_table
from generator.core.errors import PushgenError
from generator.db.store import Store
from generator.db.tables import Erasure, Job, JobChunk, Message, ReviewEvent
from generator.db.tokens import create_token
from tests.review_fixtures import seed_review_job

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
KEYS = ["name", "type", "template", "adapter", "locale", "brand", "facts", "item_ids", "audience", "variants",
        "candidates", "retries", "top_k", "policy", "utm_source", "user_ids", "locales", "limit", "banned_words",
        "coupon_code", "coupon_pct", "campaign", "idempotency_key", "schedule", "events", "event_id", "send_id",
        "revenue", "occurred_at", "send_key", "experiment_id", "user_id", "price_drop", "zh_CN", "en_US"]
nasty_text = st.one_of(st.text(max_size=20), st.sampled_from(["\ud800", "a\x00b", "\ufeff", "𝕏" * 3, "", " ",
                                                                 "../../etc/passwd", "<script>", "en_ZZ"]))
nasty_number = st.one_of(st.integers(), st.sampled_from([0, -1, 2**63, 2**64, -(2**70), 10**400]),
                         st.floats(allow_nan=True, allow_infinity=True))
scalar = st.one_of(st.none(), st.booleans(), nasty_number, nasty_text)
document = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), nasty_text), inner, max_size=5)),
    max_leaves=25)
campaign_like = st.dictionaries(st.sampled_from(KEYS[:15] + ["audeince", "polcy"]), document, max_size=6)


def _counts(store: Store) -> dict[str, int]:
    with store.session() as s:
        return {t.__tablename__: s.query(t).count() for t in (Job, JobChunk, Message, Erasure, ReviewEvent)}


def _json_bytes(doc: object) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity literals, lone surrogates escaped."""
    return json.dumps(doc, allow_nan=True, ensure_ascii=True).encode()


# --- campaign files -----------------------------------------------------------------------------------------

def _yaml_of(doc: object) -> str:
    return json.dumps(doc, allow_nan=True, ensure_ascii=True).replace("NaN", ".nan").replace("Infinity", ".inf")


@FUZZ
@given(content=st.one_of(campaign_like.map(_yaml_of), st.text(max_size=200), st.binary(max_size=200),
                         st.sampled_from(["", "---\n", "a: &a [*a]\n", "!!python/object:os.system {}\n",
                                          "a: !!binary AAAA\n", "? [1]\n: 2\n", "[" * 200])))
def test_campaign_files_load_or_fail_with_one_pushgen_error(tmp_path_factory: pytest.TempPathFactory,
                                                            content: str | bytes) -> None:
    path = tmp_path_factory.mktemp("c") / "campaign.yaml"
    (path.write_bytes if isinstance(content, bytes) else lambda c: path.write_text(c, encoding="utf-8",
                                                                                   errors="surrogatepass"))(content)
    try:
        load_campaign(path)
    except PushgenError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


# --- shop files ---------------------------------------------------------------------------------------------

csv_cell = st.one_of(st.text(alphabet=string.printable + "é中\ufeff", max_size=12), st.sampled_from(
    ["true", "nan", "1e999", "-1", "2026-01-01", "en_US", "xx_XX", "USD", "https://x", '"', "\x00"]))


@FUZZ
@given(kind=st.sampled_from(sorted(CONTRACTS)), header=st.lists(st.sampled_from(
    ["user_id", "item_id", "locale", "timezone", "push_opt_in", "push_optin", "title", "price", "currency",
     "in_stock", "url", "event_type", "timestamp", "rating", "push_id", "group_id", "sends", "clicks", "sent_at",
     "x"]), min_size=1, max_size=8, unique=True), rows=st.lists(st.lists(csv_cell, max_size=9), max_size=4),
       suffix=st.sampled_from([".csv", ".jsonl"]), raw=st.none() | st.binary(max_size=100))
def test_shop_files_load_or_fail_with_one_data_error(tmp_path_factory: pytest.TempPathFactory, kind: str,
                                                      header: list[str], rows: list[list[str]], suffix: str,
                                                      raw: bytes | None) -> None:
    path = tmp_path_factory.mktemp("shop") / f"{kind}{suffix}"
    if raw is not None:
        path.write_bytes(raw)
    elif suffix == ".csv":
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8",
                        errors="surrogatepass")
    else:
        path.write_bytes(b"\n".join(_json_bytes(dict(zip(header, r, strict=False))) for r in rows))
    try:
        load_table(path, CONTRACTS[kind])
    except PushgenError as exc:
        assert "\n" not in str(exc)


# --- API bodies ---------------------------------------------------------------------------------------------

@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from workers.api import create_app

    monkeypatch.setattr(jobs, "run_job_inline", lambda *a, **k: None)  # a valid job is stored, not generated
    store = Store()
    tokens = {r: create_token(store, r, r) for r in ("campaign_tool", "reviewer", "admin")}
    return TestClient(create_app(store), raise_server_exceptions=False), store, tokens


@FUZZ
@given(body=st.one_of(st.fixed_dictionaries({"campaign": campaign_like}, optional={"idempotency_key": nasty_text,
                                                                                  "schedule": document}),
                      document, st.binary(max_size=100)),
       path=st.sampled_from(["/v1/jobs", "/v1/events"]), token=st.sampled_from(["admin", "campaign_tool", None]))
def test_api_bodies_never_5xx_and_refusals_store_nothing(api, body: object, path: str, token: str | None) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    before = _counts(store)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {tokens[token]}"} if token else {})}
    r = client.post(path, content=body if isinstance(body, bytes) else _json_bytes(body), headers=headers)
    assert r.status_code < 500, (path, body, r.status_code, r.text[:300])
    json.loads(r.text)  # always a JSON answer
    if r.status_code >= 400:
        assert _counts(store) == before


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "DELETE"]), path=st.sampled_from(
    ["/v1/jobs/{x}", "/v1/jobs/{x}/messages?offset={n}&limit={n}", "/v1/jobs/{x}/cancel", "/v1/users/{x}",
     "/v1/experiments/{x}", "/review/jobs/{x}?page={n}", "/review/jobs/{x}/variants?page={n}"]),
       x=st.text(alphabet=string.ascii_letters + string.digits + "-_.%", min_size=1, max_size=40),
       n=st.one_of(st.integers(), st.sampled_from([2**63, 2**64, 10**30, "1e9", "nan", "-0"])))
def test_paths_and_queries_never_5xx(api, method: str, path: str, x: str, n: object) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    before = _counts(store)
    r = client.request(method, path.format(x=x, n=n), headers={"Authorization": f"Bearer {tokens['reviewer']}"},
                       follow_redirects=False)
    assert r.status_code < 500, (method, path, x, n, r.status_code, r.text[:300])
    assert _counts(store) == before  # a reviewer may change nothing here


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_over_the_api(api, mode) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    schema.config.generation.update(with_security_parameters=False)

    for path, method in (("/v1/jobs", "POST"), ("/v1/events", "POST"), ("/v1/jobs/{job_id}/messages", "GET")):
        @settings(max_examples=15, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=schema[path][method].as_strategy(mode))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            before = _counts(store)
            response = case.call(headers={"Authorization": f"Bearer {tokens['admin']}"})
            assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:300])
            if response.status_code >= 400:
                assert _counts(store) == before

        check()


# --- review forms -------------------------------------------------------------------------------------------

def _flash_level(response) -> str | None:  # type: ignore[no-untyped-def]
    cookie = response.cookies.get("pushgen_flash")
    if not cookie:
        return None
    data = cookie.strip('"').rsplit(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))["level"]


@FUZZ
@given(action=st.sampled_from(["edit", "reject", "approve", "bulk", "rule"]),
       fields=st.dictionaries(st.sampled_from(["title", "body", "reason", "then", "min_ctr", "remove", "action",
                                               "ids", "next"]),
                              st.one_of(nasty_text, nasty_number.map(str), st.text(max_size=3000)), max_size=5),
       target=st.sampled_from(["mine", "huge", "other"]))
def test_review_forms_never_5xx_and_refusals_store_nothing(web_review, action: str, fields: dict[str, str],
                                                           target: str) -> None:
    client, store, job_id, message_id, csrf = web_review
    before = _snapshot(store, job_id)
    mid = {"mine": message_id, "huge": 2**64, "other": 999_999}[target]
    url = {"bulk": f"/review/jobs/{job_id}/bulk", "rule": f"/review/jobs/{job_id}/rule"}.get(
        action, f"/review/messages/{mid}/{action}")
    data = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in fields.items()}
    r = client.post(url, data={**data, "csrf": csrf}, follow_redirects=False)
    assert r.status_code < 500, (url, fields, r.status_code, r.text[:300])
    if r.status_code >= 400 or _flash_level(r) == "error":
        assert _snapshot(store, job_id) == before, (url, fields)


def _snapshot(store: Store, job_id: str) -> tuple:
    with store.session() as s:
        messages = [(m.id, m.title, m.body, m.review_status, m.status)
                    for m in s.query(Message).filter(Message.job_id == job_id).order_by(Message.id)]
        return messages, s.query(ReviewEvent).count()


@pytest.fixture
def web_review(api):  # type: ignore[no-untyped-def]
    client, store, tokens = api
    job_id = seed_review_job(store, users=2)
    page = client.get("/review/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.post("/review/login", data={"token": tokens["reviewer"], "csrf": csrf})
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(f"/review/jobs/{job_id}").text).group(1)
    with store.session() as s:
        message_id = s.query(Message.id).filter(Message.job_id == job_id).order_by(Message.id).first()[0]
    return client, store, job_id, message_id, csrf


def test_the_fuzzed_corpus_reaches_the_checks(tmp_path: Path) -> None:
    """A sanity check that the strategies do produce the nasty values (not only easy ones)."""
    path = tmp_path / "c.yaml"
    path.write_text('name: "\\ud800"\nfacts: {x: .nan}\n', encoding="utf-8")
    with pytest.raises(PushgenError, match="Unicode|finite"):
        load_campaign(path)
