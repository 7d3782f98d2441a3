"""Strict input (issue 18): unknown keys are errors naming the key, an empty audience is an error and never widens
to everyone, and values outside the limits (64-bit integers, finite floats, valid Unicode, known locales, nesting,
YAML aliases, body size) are 4xx naming the field, never a 500, and store nothing."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from generator.campaign.spec import Campaign, load_campaign, select_audience
from generator.core.config import get_settings
from generator.core.data import User as UserRow
from generator.core.data import load_shop, load_table
from generator.core.errors import DataError
from generator.db.store import Store
from generator.db.tables import Job, JobChunk, Message
from generator.db.tokens import create_token
from tests.review_fixtures import seed_review_job

GOOD = {"name": "t", "type": "price_drop", "candidates": 1, "retries": 0, "audience": {"limit": 2}}


# --- campaign files -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "needle"), [
    ("name: x\naudeince: {limit: 2}\n", "audeince"),  # a misspelt key would have meant 'everyone'
    ("audience: {limt: 2}\n", "limt"),
    ("policy: {baned_words: [x]}\n", "baned_words"),
    ("audience: {user_ids: []}\n", "user_ids"),
    ("audience: {locales: []}\n", "locales"),
    ("", "empty file"),
    ("# only a comment\n", "empty file"),
    ("- name: x\n", "mapping"),
    ("audience: {limit: 100000000000000000000000}\n", "limit"),
    ("facts: {coupon_pct: .nan}\n", "facts.coupon_pct"),
    ("facts: {coupon_pct: .inf}\n", "facts.coupon_pct"),
    ('name: "\\ud800"\n', "name"),
    ('name: "a\\0b"\n', "name"),
    ("locale: xx_XX\n", "locale"),
    ("audience: {locales: [en_US, tlh_QQ]}\n", "locales"),
    ("facts: " + "{a: " * 40 + "1" + "}" * 40 + "\n", "nested deeper"),
    ("{1: 2}\n", "not text"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_campaign_files_are_one_error_naming_the_field(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_campaign(path)
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_yaml_alias_expansion_is_bounded(tmp_path: Path) -> None:
    """The 'billion laughs': nine levels of ten aliases, a few hundred bytes, 10^9 values if expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("facts:\n" + "\n".join("  " + x for x in lines) + "\n", encoding="utf-8")
    assert path.stat().st_size < 600
    with pytest.raises(DataError, match="alias"):
        load_campaign(path)
    few = tmp_path / "few.yaml"  # a handful of aliases inside the value budget still expand and validate
    few.write_text("facts:\n  a: &a [1, 2]\n  b: *a\n", encoding="utf-8")
    assert load_campaign(few).facts == {"a": [1, 2], "b": [1, 2]}
    wide = tmp_path / "wide.yaml"  # under the alias cap, but past the value budget once expanded
    wide.write_text("facts:\n  a: &a [" + ",".join(["1"] * 2000) + "]\n  b: [" + ",".join(["*a"] * 60) + "]\n",
                    encoding="utf-8")
    with pytest.raises(DataError, match="more than"):
        load_campaign(wide)


def test_campaign_files_that_are_folders_not_utf8_or_carry_a_bom(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder"):
        load_campaign(tmp_path)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_campaign(latin)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeffname: with-bom\ntype: price_drop\n".encode())
    assert load_campaign(bom).name == "with-bom"


def test_an_empty_explicit_audience_never_widens_to_everyone() -> None:
    shop = load_shop(get_settings().shop_dir)
    assert select_audience(shop, Campaign(), user_ids=[]) == []
    assert len(select_audience(shop, Campaign())) > 2  # the default (no ids at all) is every opted-in user
    with pytest.raises(ValueError, match="user_ids"):
        Campaign.model_validate({"audience": {"user_ids": []}})


# --- shop files ---------------------------------------------------------------------------------------------

def test_shop_files_bom_folder_non_utf8_misspelt_column_and_locale(tmp_path: Path) -> None:
    bom = tmp_path / "users.csv"
    bom.write_bytes("\ufeffuser_id,locale,timezone,push_opt_in\nU1,en_US,UTC,false\n".encode())
    assert [u.user_id for u in load_table(bom, UserRow).rows] == ["U1"]  # not "field required"
    with pytest.raises(DataError, match="is a folder"):
        load_table(tmp_path, UserRow)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        load_table(tmp_path / "folder.csv", UserRow)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user_id,locale\nJos\xe9,en_US\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_table(latin, UserRow)
    typo = tmp_path / "typo.csv"  # push_optin would silently default push_opt_in to true: everyone opted in
    typo.write_text("user_id,locale,timezone,push_optin\nU1,en_US,UTC,false\n", encoding="utf-8")
    with pytest.raises(DataError, match="push_optin.*did you mean 'push_opt_in'"):
        load_table(typo, UserRow)
    extra = tmp_path / "extra.csv"  # columns pushgen does not read are still fine
    extra.write_text("user_id,locale,crm_segment\nU1,en_US,gold\n", encoding="utf-8")
    assert len(load_table(extra, UserRow).rows) == 1
    bad_locale = tmp_path / "loc.csv"
    bad_locale.write_text("user_id,locale\nU1,xx_XX\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 1, field 'locale'.*unknown locale"):
        load_table(bad_locale, UserRow)
    jsonl = tmp_path / "users.jsonl"
    jsonl.write_text('{"user_id": "U1", "locale": "en_US", "push_opt_in": NaN}\n'
                     '{"user_id": "\\ud800"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 1, field 'push_opt_in'.*finite"):
        load_table(jsonl, UserRow)


# --- the API ------------------------------------------------------------------------------------------------

@pytest.fixture
def api():  # type: ignore[no-untyped-def]
    from workers.api import create_app

    store = Store()
    tokens = {r: create_token(store, r, r) for r in ("campaign_tool", "reviewer", "admin")}
    return TestClient(create_app(store), raise_server_exceptions=False), store, tokens


def _nothing_stored(store: Store) -> bool:
    with store.session() as s:
        return all(s.query(t).count() == 0 for t in (Job, JobChunk, Message))


@pytest.mark.parametrize(("body", "needle"), [
    ({"campaign": {**GOOD, "audeince": {"limit": 2}}}, "audeince"),
    ({"campaign": GOOD, "priority": "high"}, "priority"),
    ({"campaign": {**GOOD, "audience": {"user_ids": []}}}, "user_ids"),
    ({"campaign": {**GOOD, "audience": {"limit": 2**64}}}, "limit"),
    ({"campaign": {**GOOD, "facts": {"n": 10**30}}}, "facts"),
    ({"campaign": {**GOOD, "locale": "en_ZZ"}}, "locale"),
    ({"campaign": {**GOOD, "policy": {"banned_word": ["x"]}}}, "banned_word"),
])
def test_api_bodies_are_strict_and_name_the_field(api, body, needle) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    r = client.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {tokens['campaign_tool']}"})
    assert r.status_code == 422 and needle in r.text, r.text
    assert _nothing_stored(store)


@pytest.mark.parametrize(("raw", "needle"), [
    (b'{"campaign": {"name": "t", "facts": {"x": NaN}}}', "finite"),
    (b'{"campaign": {"name": "t", "facts": {"x": -Infinity}}}', "finite"),
    (b'{"campaign": {"name": "\\ud800"}}', "Unicode"),
    (b'{"campaign": {"name": "a\\u0000b"}}', "NUL"),
    (b'{"campaign": {"facts": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}}", "nested deeper"),
    (b'[' * 100_000 + b']' * 100_000, "nested deeper"),
    (b'{"campaign": {"name": "t", "variants": 1' + b"0" * 400 + b"}}", "64-bit"),
])
def test_bodies_json_cannot_carry_back_are_422_not_500(api, raw, needle) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    r = client.post("/v1/jobs", content=raw, headers={"Authorization": f"Bearer {tokens['campaign_tool']}",
                                                      "Content-Type": "application/json"})
    assert r.status_code == 422 and needle in r.text, r.text
    assert _nothing_stored(store)


def test_huge_integers_in_ids_offsets_and_pages_are_422(api) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    job_id = seed_review_job(store, users=1)
    for path in (f"/v1/jobs/{job_id}/messages?offset={2**64}", f"/v1/jobs/{job_id}/messages?offset={10**400}",
                 f"/v1/jobs/{job_id}/messages?limit={2**64}"):
        assert client.get(path, headers=auth).status_code == 422, path
    r = client.post("/v1/events", headers=auth, json={"events": [{"event_id": "e", "type": "opened",
                                                                  "send_id": 2**70}]})
    assert r.status_code == 422 and "send_id" in r.text
    r = client.post("/v1/events", headers={**auth, "Content-Type": "application/json"},
                    content=b'{"events": [{"event_id": "e", "type": "converted", "send_id": 1, "revenue": NaN}]}')
    assert r.status_code == 422
    csrf = _login(client, tokens["reviewer"])
    for page in (f"/review/jobs/{job_id}?page={2**64}", f"/review/jobs/{job_id}/variants?page={2**63}"):
        assert client.get(page).status_code == 422, page
    for action in ("approve", "reject", "edit"):
        r = client.post(f"/review/messages/{2**64}/{action}", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 422, (action, r.text)
    r = client.post(f"/review/jobs/{job_id}/bulk", data={"csrf": csrf, "action": "approve", "ids": [str(2**70)]},
                    follow_redirects=False)
    assert r.status_code == 422


def test_review_texts_that_no_database_can_store_are_refused_and_old_ones_still_render(api) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    job_id = seed_review_job(store, users=1, flagged=0)
    with store.session() as s:  # stored before input was checked: JSON columns escape a lone surrogate
        job = s.get(Job, job_id)
        job.params = {**job.params, "campaign": {**job.params["campaign"], "name": "bad \ud800 name"}}
        message_id = s.query(Message.id).filter(Message.job_id == job_id).scalar()
    csrf = _login(client, tokens["reviewer"])
    assert client.get(f"/review/jobs/{job_id}").status_code == 200
    assert client.get(f"/review/jobs/{job_id}/variants").status_code == 200
    assert client.get("/review/jobs").status_code == 200
    before = client.get(f"/v1/jobs/{job_id}/messages", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    r = client.post(f"/review/messages/{message_id}/edit", data={"csrf": csrf, "title": "a\x00b", "body": "x"},
                    follow_redirects=False)
    assert r.status_code == 303
    after = client.get(f"/v1/jobs/{job_id}/messages", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    assert before == after


def test_unparsable_bodies_without_a_token_are_401_not_422(api) -> None:  # type: ignore[no-untyped-def]
    client, _, tokens = api
    for headers in ({}, {"Authorization": "Bearer pg_not-a-token"}, {"Authorization": "Basic abc"}):
        r = client.post("/v1/jobs", content=b"{not json", headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 401, (headers, r.status_code)
        assert client.post("/v1/events", content=b"[", headers=headers).status_code == 401
    r = client.post("/v1/jobs", content=b"{not json", headers={"Authorization": f"Bearer {tokens['admin']}",
                                                              "Content-Type": "application/json"})
    assert r.status_code == 422


def _login(client: TestClient, token: str) -> str:
    page = client.get("/review/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/review/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/review/jobs").text).group(1)


# --- the body limit while streaming -------------------------------------------------------------------------

class _Stream:
    """An ASGI receive() of a chunked body (no Content-Length) of ``chunks`` x 64 KiB, counting what was read."""

    def __init__(self, chunks: int):
        self.left, self.read = chunks, 0

    async def __call__(self) -> dict:
        self.read += 1
        self.left -= 1
        return {"type": "http.request", "body": b" " * 65536, "more_body": self.left > 0}


def _call(app, headers: list[tuple[bytes, bytes]], stream: _Stream) -> int:  # type: ignore[no-untyped-def]
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/jobs", "raw_path": b"/v1/jobs", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), *headers], "http_version": "1.1",
             "scheme": "http", "server": ("test", 80), "client": ("test", 1), "root_path": "", "app": app}
    asyncio.run(app(scope, stream, send))
    return sent[0]["status"]


def test_a_chunked_body_is_never_read_without_a_token_and_never_past_the_limit(api) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = api
    app = client.app
    huge = _Stream(10_000)  # 655 MB if read whole
    assert _call(app, [], huge) == 401 and huge.read == 0
    wrong = _Stream(10_000)
    assert _call(app, [(b"authorization", b"Bearer pg_wrong")], wrong) == 401 and wrong.read == 0
    limit = get_settings().max_request_bytes
    mine = _Stream(10_000)
    assert _call(app, [(b"authorization", f"Bearer {tokens['campaign_tool']}".encode())], mine) == 413
    assert mine.read == limit // 65536 + 1  # stopped at the first chunk past the limit
    assert _nothing_stored(store)


def test_error_answers_are_valid_json_without_the_input(api) -> None:  # type: ignore[no-untyped-def]
    client, _, tokens = api
    r = client.post("/v1/jobs", json={"campaign": {**GOOD, "variants": "x" * 5000}},
                    headers={"Authorization": f"Bearer {tokens['campaign_tool']}"})
    assert r.status_code == 422 and "x" * 100 not in r.text and json.loads(r.text)["detail"]
