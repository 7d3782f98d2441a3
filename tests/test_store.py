"""The store on SQLite and on a real PostgreSQL: migrations, idempotent message writes, embedding cache."""

from __future__ import annotations

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from generator.db.embeddings import get_embeddings, put_embeddings
from generator.db.jobs import create_job, get_job, set_job_status
from generator.db.messages import count_messages, list_messages, save_messages
from generator.db.store import Store
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
