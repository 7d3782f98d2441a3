"""The store on SQLite and on a real PostgreSQL: migrations, idempotent message writes, embedding cache."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from generator.db.embeddings import get_embeddings, put_embeddings
from generator.db.jobs import create_job, get_job, set_job_status
from generator.db.messages import MESSAGE_FIELDS, _save_rows, count_messages, list_messages, save_messages
from generator.db.store import Store, json_text
from generator.db.tables import Base, Message


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Store:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(url)
    yield s
    s.engine.dispose()


def test_migrations_create_the_models_schema(store: Store) -> None:
    assert {"jobs", "messages", "item_embeddings", "alembic_version"} <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    store.migrate()  # idempotent


def test_messages_are_idempotent_per_job_user_variant(store: Store) -> None:
    job = create_job(store, campaign_type="price_drop", template="price_drop.en", model="m", total=2)
    msg = {"user_id": "u1", "title": "t", "body": "b", "template": "price_drop.en", "status": "passed",
           "item_ids": ["A1", "A2"], "guardrails": [{"name": "prices", "passed": True, "reason": ""}]}
    save_messages(store, job.id, [msg, {**msg, "variant": 1}])
    save_messages(store, job.id, [{**msg, "title": "t2"}])  # a retried write replaces, never duplicates
    rows = list_messages(store, job.id)
    assert [(m.user_id, m.variant, m.title) for m in rows] == [("u1", 0, "t2"), ("u1", 1, "t")]
    assert rows[0].item_ids == ["A1", "A2"] and rows[0].guardrails[0]["name"] == "prices"
    set_job_status(store, job.id, "done")
    assert get_job(store, job.id).status == "done" and get_job(store, job.id).finished_at is not None


def test_batched_upserts_update_only_the_fields_given_and_keep_defaults(store: Store) -> None:
    job = create_job(store, campaign_type="c", template="t", model="m")
    base = {"title": "t", "body": "b", "template": "t", "status": "flagged", "ctr_score": 0.5,
            "candidates": [{"title": "x", "passed": False}]}
    save_messages(store, job.id, [{"user_id": f"u{i}", **base} for i in range(2500)])  # more than one batch
    with store.session() as s:  # a reviewer acted on one of them
        row = s.scalar(select(Message).where(Message.job_id == job.id, Message.user_id == "u7"))
        row.review_status = "approved"
    n = save_messages(store, job.id, [{"user_id": "u7", "status": "passed", "ctr_score": None},
                               {"user_id": "u8", "title": "first"}, {"user_id": "u8", "body": "later"},
                               {"user_id": "new", **base, "variant": 2}])
    assert n == 4 and count_messages(store, job.id) == 2501
    rows = {(m.user_id, m.variant): m for m in list_messages(store, job.id)}
    u7, u8, new = rows[("u7", 0)], rows[("u8", 0)], rows[("new", 2)]
    assert (u7.status, u7.ctr_score, u7.title, u7.review_status) == ("passed", None, "t", "approved")
    assert (u8.title, u8.body, u8.status) == ("first", "later", "flagged")  # the same message twice: merged
    assert new.review_status == "pending" and new.created_at is not None and new.candidates == base["candidates"]


def test_failed_transaction_writes_nothing(store: Store) -> None:
    job = create_job(store, campaign_type="c", template="t", model="m")
    with pytest.raises(KeyError):
        save_messages(store, job.id, [{"user_id": "u1", "title": "t", "body": "b", "template": "t",
                                "status": "passed"}, {"title": "no user id"}])
    assert list_messages(store, job.id) == []


def test_embedding_cache_round_trip(store: Store) -> None:
    vec = np.arange(4, dtype=np.float32)
    put_embeddings(store, "minilm", {"h1": vec})
    put_embeddings(store, "minilm", {"h1": vec + 1})  # existing vectors are kept
    got = get_embeddings(store, "minilm", ["h1", "h2"])
    assert list(got) == ["h1"] and np.array_equal(got["h1"], vec)
    assert get_embeddings(store, "other-model", ["h1"]) == {}


# ---------------------------------------------------------------------------------------------- the write path

def _orm_upsert(store: Store, job_id: str, messages: list[dict]) -> None:
    """The write path save_messages replaced (the ORM's bulk ``INSERT .. ON CONFLICT DO UPDATE``, json.dumps for
    the JSON columns): what it stored is what the new path must store."""
    dialect = store.engine.dialect.name
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    rows: dict = {}
    for m in messages:
        key = (m["user_id"], int(m.get("variant", 0)))
        rows.setdefault(key, {"job_id": job_id, "user_id": key[0], "variant": key[1]}).update(
            {f: m[f] for f in MESSAGE_FIELDS if f in m})
    by_fields: dict = {}
    for row in rows.values():
        by_fields.setdefault(tuple(row), []).append(row)
    required = {"job_id", "user_id", "title", "body", "template", "status"}
    with store.session() as s:
        for fields, batch in by_fields.items():
            if not required <= set(fields):
                _save_rows(s, job_id, batch)
                continue
            stmt = insert(Message)
            updated = {f: stmt.excluded[f] for f in fields if f not in ("job_id", "user_id", "variant")}
            s.execute(stmt.on_conflict_do_update(index_elements=["job_id", "user_id", "variant"], set_=updated), batch)


def _stored(store: Store, job_id: str) -> list[tuple]:
    """A job's rows, every column but the id and the time of writing."""
    skip = {"id", "job_id", "created_at"}
    with store.session() as s:
        rows = s.scalars(select(Message).where(Message.job_id == job_id).order_by(Message.id))
        return [tuple(getattr(m, c.key) for c in Message.__table__.columns if c.key not in skip) for m in rows]


ODD = ["plain", "quote ' and \" both", "tab\there", "new\nline\r\n", "back\\slash \\N \\.", "emoji 🎉 中文 é",
       "comma, semicolon; pipe |", "", "  spaced  ", "\\x00 spelt out", "\u2028line separator", "null"]


def _message(i: int, text: str, **over) -> dict:
    return {"user_id": f"u{i}", "title": f"{text} {i}", "body": text, "template": "t", "status": "passed",
            "deep_link": f"https://x.example/p?q={text}", "item_ids": [text, f"A{i}"], "prompt": text,
            "adapter": None if i % 2 else text, "ctr_score": None if i % 3 == 0 else i / 7,
            "guardrails": [{"name": text, "passed": bool(i % 2), "reason": text}],
            "candidates": [{"title": text, "ctr": -1.25e-7 * i, "reasons": [text], "n": 2 ** 40 + i}],
            "ranked_items": [{"item_id": f"A{i}", "score": 0.1 * i, "why": [text, None, True]}], **over}


def test_odd_text_and_json_round_trip_as_the_orm_path_stored_them(store: Store) -> None:
    ours, theirs = (create_job(store, campaign_type="c", template="t", model="m") for _ in range(2))
    messages = [_message(i, text) for i, text in enumerate(ODD)]
    messages.append({**_message(99, "given none"), "prompt": None, "item_ids": None, "candidates": None})
    if store.engine.dialect.name == "sqlite":  # PostgreSQL's text holds no NUL (both paths refuse it)
        messages.append(_message(100, "nul \x00 inside"))
    assert save_messages(store, ours.id, messages) == len(messages)
    _orm_upsert(store, theirs.id, messages)
    stored = _stored(store, ours.id)
    assert stored == _stored(store, theirs.id)
    rows = {m.user_id: m for m in list_messages(store, ours.id)}
    assert rows["u1"].body == ODD[1] and rows["u4"].candidates[0]["reasons"] == [ODD[4]]
    assert (rows["u99"].prompt, rows["u99"].item_ids, rows["u99"].candidates) == ("", None, None)


def test_partial_and_repeated_writes_store_what_the_orm_path_stored(store: Store) -> None:
    ours, theirs = (create_job(store, campaign_type="c", template="t", model="m") for _ in range(2))
    first = [_message(i, ODD[i % len(ODD)], variant=i % 2) for i in range(40)]
    later = [{"user_id": "u3", "variant": 1, "status": "flagged", "ctr_score": None},  # fields given only
             {"user_id": "u4", "title": "first"}, {"user_id": "u4", "body": "merged"},  # one message given twice
             {"user_id": "u5", "variant": 1},  # nothing but its key: left as it is
             {**_message(77, "new one"), "variant": 3}, {"user_id": "partial-new", "title": "no body"}]
    for job in (ours, theirs):
        write = save_messages if job is ours else _orm_upsert
        write(store, job.id, first)
        if job is ours:
            with pytest.raises(IntegrityError):  # a new message without its required fields, as before
                save_messages(store, job.id, later)
        else:
            with pytest.raises(IntegrityError):
                _orm_upsert(store, job.id, later)
        write(store, job.id, later[:-1])
        write(store, job.id, first[:5])  # a redelivered chunk: the same rows again
    assert _stored(store, ours.id) == _stored(store, theirs.id)
    assert count_messages(store, ours.id) == 41


def test_erased_users_messages_are_skipped(store: Store) -> None:
    from generator.db.suppression import user_ref
    from generator.db.tables import Suppression

    job = create_job(store, campaign_type="c", template="t", model="m")
    with store.session() as s:
        s.add(Suppression(user_ref=user_ref(store, "u2")))
    assert save_messages(store, job.id, [_message(i, "x") for i in range(4)]) == 3
    assert [m.user_id for m in list_messages(store, job.id)] == ["u0", "u1", "u3"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_messages_store_what_the_orm_path_stored(store: Store, data: st.DataObject) -> None:
    nul = store.engine.dialect.name == "sqlite"
    text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="" if nul else "\x00"),
                   max_size=12)
    leaf = st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | \
        st.floats(allow_nan=False, allow_infinity=False) | text
    json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner,
                                                                                                  max_size=3),
                              max_leaves=8)
    value = {"title": text, "body": text, "template": text, "status": text, "prompt": text,
             "deep_link": text | st.none(), "adapter": text | st.none(),
             "ctr_score": st.floats(allow_nan=False) | st.none(),
             "item_ids": json_value, "guardrails": json_value, "candidates": json_value, "ranked_items": json_value}
    key = {"user_id": st.sampled_from(["a", "b", "c", "d"]), "variant": st.integers(0, 1)}
    message = st.fixed_dictionaries(key, optional=value)  # any fields: a new one without all it needs is refused
    full = st.fixed_dictionaries({**key, **{f: value[f] for f in ("title", "body", "template", "status")}},
                                 optional={f: v for f, v in value.items() if f not in ("title", "body", "template",
                                                                                        "status")})
    writes = data.draw(st.lists(full, min_size=1, max_size=6)), data.draw(st.lists(message, max_size=6))
    ours, theirs = (create_job(store, campaign_type="c", template="t", model="m") for _ in range(2))
    for batch in writes:
        outcomes = []
        for job, write in ((ours, save_messages), (theirs, _orm_upsert)):
            try:
                write(store, job.id, batch)
                outcomes.append(None)
            except IntegrityError:  # a new message without its required fields: both refuse the whole batch
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1]
    assert _stored(store, ours.id) == _stored(store, theirs.id)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) |
                     st.text(), lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) |
                     st.dictionaries(st.text() | st.integers() | st.booleans(), inner, max_size=4), max_leaves=12)


@given(_JSON)
def test_json_text_reads_back_as_json_dumps_did(value) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


def test_json_text_refuses_what_json_dumps_refused() -> None:
    from generator.check.result import CheckResult  # a dataclass

    for value in (datetime.now(), CheckResult("n", True, ""), {"a": np.float32(1.5)}, {1, 2}):
        with pytest.raises(TypeError):
            json_text(value)
