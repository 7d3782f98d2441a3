"""Erasure that really erases (issue 18, GDPR Art. 17): after ``DELETE /v1/users/{id}`` the raw database (the
SQLite file and its write-ahead log; PostgreSQL's rows) holds no trace of the user id, their copy, prompt, device
token, ranked items, send keys or event ids; what is kept is unlinkable (random pseudonyms, keyed hashes); the
erased messages can never be approved or sent; and the user is never targeted again until restored."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select, text

from generator import erasure, jobs, privacy, review
from generator.campaign.spec import Audience, Campaign
from generator.core.config import REPO_ROOT, get_settings
from generator.core.data import load_shop
from generator.core.errors import PushgenError
from generator.db import suppression
from generator.db.chunks import finish_chunk
from generator.db.jobs import create_job
from generator.db.messages import count_messages, list_messages, save_messages
from generator.db.store import Store
from generator.db.suppression import erasures, suppressed
from generator.db.tables import Base, Message
from generator.experiments import ab as ex
from generator.experiments.devices import register
from workers.senders.dryrun import DryRunSender

USER, OTHER = "ERASE-ME-4711", "U061"
MINE = {"title": "Erasable title 7731", "body": "Erasable body 7731 only for you", "prompt": f"prompt of {USER}",
        "item": "RANKED-ITEM-ONLY-MINE-1", "token": "device-token-ERASABLE-9001", "reason": "Erasable reason 7731",
        "event": "evt-of-the-erasable-user-1"}


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "shop"
    shutil.copytree(REPO_ROOT / "examples" / "shop", folder)
    with (folder / "users.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"{USER},en_US,UTC,true\n")
    with (folder / "events.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"{USER},SKU-0002,view,2026-01-05T10:00:00+00:00\n")
    monkeypatch.setenv("PUSHGEN_SHOP_DIR", str(folder))
    get_settings.cache_clear()
    return folder


def _records(user: str, mine: bool) -> list[dict]:
    item = MINE["item"] if mine else "SKU-0003"
    title, body = (MINE["title"], MINE["body"]) if mine else ("Lamp on sale", "Now 19.99")
    return [{"user_id": user, "variant": v, "title": title, "body": body, "prompt": MINE["prompt"] if mine else "p",
             "deep_link": f"https://shop.example.com/p/{item}?utm_source=push&utm_campaign=c",
             "item_ids": [item], "template": "price_drop.en", "adapter": None, "status": "passed",
             "guardrails": [{"name": "facts", "passed": True, "reason": f"names {title}"}],
             "candidates": [{"title": title, "body": body, "sampled": False, "passed": True}],
             "ranked_items": [{"item_id": item, "title": f"{item} lamp", "why": [f"viewed {item}"]}],
             "ctr_score": 0.05} for v in (0, 1)]


def _scenario(store: Store, shop: Path) -> dict[str, str]:
    """A job naming the user (params, chunk, idempotency key), their messages (approved and rejected with a
    reason), a device token, an experiment that sent to them and an outcome event. Returns the job and exp ids."""
    campaign = Campaign(type="price_drop", variants=2, audience=Audience(user_ids=[USER, OTHER]))
    request = jobs.JobRequest(campaign=campaign, idempotency_key=f"campaign-7-{USER}")
    job, _ = jobs.create_job(store, request, shop=load_shop(shop))
    finish_chunk(store, job.id, 0, "failed", f"unknown user ids: ['{USER}']")
    save_messages(store, job.id, _records(USER, True) + _records(OTHER, False))
    with store.session() as s:
        ids = {(m.user_id, m.variant): m.id for m in s.scalars(select(Message).where(Message.job_id == job.id))}
    who = review.Reviewer("alice", "reviewer")
    for user in (USER, OTHER):
        review.approve(store, ids[(user, 0)], who)
    review.reject(store, ids[(USER, 1)], who, MINE["reason"])
    register(store, user_id=USER, platform="fcm", token=MINE["token"])
    register(store, user_id=OTHER, platform="fcm", token="token-of-another")
    exp = ex.create_experiment(store, job.id, variants=[0], holdout=0, rules=ex.SendRules(quiet_start=0, quiet_end=0))
    ex.assign(store, exp.id, [USER, OTHER])
    assert ex.send(store, exp.id, DryRunSender(platform="fcm"), timezones={}) == {"sent": 2}
    assert ex.record_events(store, [{"event_id": MINE["event"], "type": "opened", "experiment_id": exp.id,
                                     "user_id": USER}]) == {"stored": 1, "duplicate": 0}
    return {"job": job.id, "experiment": exp.id, "message": str(ids[(USER, 0)])}


def _needles(exp_id: str) -> dict[str, bytes]:
    return {**{k: v.encode() for k, v in MINE.items()}, "user id": USER.encode(),
            "send key": ex.idempotency_key(exp_id, USER).encode(),
            "plain hash": hashlib.sha256(USER.encode()).hexdigest().encode()}


def _raw_sqlite(store: Store) -> bytes:
    path = Path(store.url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def _all_rows(store: Store) -> bytes:
    with store.engine.connect() as conn:
        return "\n".join(repr(row) for t in Base.metadata.sorted_tables
                         for row in conn.execute(text(f'SELECT * FROM "{t.name}"'))).encode()


def test_the_raw_sqlite_file_and_wal_keep_no_trace_of_the_erased_user(shop: Path) -> None:
    store = Store()
    ids = _scenario(store, shop)
    needles = _needles(ids["experiment"])
    before = _raw_sqlite(store)
    assert all(n in before for k, n in needles.items() if k not in ("plain hash",)), "the scenario stores them"

    out = privacy.erase_user(store, USER, requested_by="dpo (admin)", shop_dir=shop)
    assert out["messages_erased"] == 2 and out["device_tokens_erased"] == 1 and out["users_erased"] == 1

    raw = _raw_sqlite(store)
    assert {k for k, n in needles.items() if n in raw} == set()
    assert {k for k, n in needles.items() if n in _all_rows(store)} == set()
    assert not Path(store.url.removeprefix("sqlite:///") + "-wal").exists() or \
        Path(store.url.removeprefix("sqlite:///") + "-wal").stat().st_size == 0  # checkpointed and truncated
    for name in ("events.csv", "users.csv", "reviews.csv"):
        assert USER not in (shop / name).read_text(encoding="utf-8")
    _erased_stays_erased(store, ids)


def test_postgresql_rows_keep_no_trace_of_the_erased_user(shop: Path, pg_url: str) -> None:
    store = Store(pg_url)
    ids = _scenario(store, shop)
    needles = _needles(ids["experiment"])
    assert all(n in _all_rows(store) for k, n in needles.items() if k != "plain hash")
    privacy.erase_user(store, USER, requested_by="dpo (admin)", shop_dir=shop)
    assert {k for k, n in needles.items() if n in _all_rows(store)} == set()
    _erased_stays_erased(store, ids)
    store.engine.dispose()


def _erased_stays_erased(store: Store, ids: dict[str, str]) -> None:
    """Not approvable, not rejectable, not listed as approved, never sent again; the experiment keeps its
    counts; the other user is untouched; the record is keyed."""
    with pytest.raises(review.ReviewError):
        review.approve(store, int(ids["message"]), review.Reviewer("alice", "reviewer"))
    with pytest.raises(review.ReviewError):
        review.reject(store, int(ids["message"]), review.Reviewer("alice", "reviewer"), "again")
    approved = review.list_messages(store, ids["job"], review_status="approved")
    assert [m.user_id for m in approved] == [OTHER]
    erased = [m for m in list_messages(store, ids["job"]) if m.status == "erased"]
    assert len(erased) == 2 and {m.review_status for m in erased} == {"erased"}
    assert all(m.ranked_items == m.item_ids == m.candidates == m.guardrails == [] for m in erased)
    assert len({m.user_id for m in erased}) == 1 and erased[0].user_id.startswith("erased:")
    counts = ex.arm_counts(store, ids["experiment"])
    assert counts["A"]["assigned"] == 2 and counts["A"]["sent"] == 2 and counts["A"]["opened"] == 1
    assert ex.send(store, ids["experiment"], DryRunSender(platform="fcm"), timezones={}) == {}
    assert ex.record_events(store, [{"event_id": MINE["event"], "type": "opened", "send_id": next(
        s.id for s in ex.sends(store, ids["experiment"]) if s.user_id.startswith("erased:"))}]) == \
        {"stored": 0, "duplicate": 1}  # a repost of the same event is still recognised
    [record] = erasures(store, USER)
    assert record.user_hash not in (hashlib.sha256(USER.encode()).hexdigest(), USER)
    assert [c for c in list_messages(store, ids["job"]) if c.user_id == OTHER][0].title == "Lamp on sale"


def test_an_erased_user_is_never_targeted_again_until_restored(shop: Path) -> None:
    store = Store()
    erasure.erase(store, USER, requested_by="dpo")  # the database only: the shop's files still list the user
    shop_rows = load_shop(shop)
    everyone = jobs.JobRequest(campaign=Campaign(type="price_drop"))
    job, _ = jobs.create_job(store, everyone, shop=shop_rows)
    with store.session() as s:
        from generator.db.tables import JobChunk

        targeted = {u for c in s.scalars(select(JobChunk).where(JobChunk.job_id == job.id)) for u in c.user_ids}
    assert USER not in targeted and OTHER in targeted
    named = jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(user_ids=[OTHER, USER])))
    with pytest.raises(PushgenError, match="erased"):
        jobs.create_job(store, named, shop=shop_rows)
    assert save_messages(store, job.id, _records(USER, True)) == 0  # a chunk that was running meanwhile writes nothing
    assert suppression.restore_user(store, USER) and not suppression.restore_user(store, USER)
    job, _ = jobs.create_job(store, named, shop=shop_rows)
    assert job.total == 2


def test_a_chunk_left_empty_by_an_erasure_generates_nothing(shop: Path) -> None:
    store = Store()
    request = jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(user_ids=[USER])))
    job, _ = jobs.create_job(store, request, shop=load_shop(shop))
    erasure.erase(store, USER, requested_by="dpo")

    class Boom:
        def run(self, *a, **k):  # type: ignore[no-untyped-def]
            raise AssertionError("an empty chunk must never run (it would mean everyone)")

    assert jobs.run_chunk(store, job.id, 0, runner=Boom()) == "done"  # type: ignore[arg-type]
    assert count_messages(store, job.id) == 0


def test_access_logs_never_name_the_erased_user() -> None:
    import logging

    from workers.api import RedactUserPaths

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "DELETE", f"/v1/users/{USER}?x=1", "1.1", 200), None)
    assert RedactUserPaths().filter(record) and USER not in record.getMessage()
    assert "/v1/users/[erased]?x=1" in record.getMessage()


def test_migration_0006_rekeys_old_erasures_and_pseudonyms(tmp_path: Path) -> None:
    import uuid

    store = Store(f"sqlite:///{tmp_path / 'old.db'}", migrate=False)
    store.migrate("0005")
    job = create_job(store, campaign_type="c", template="t", model="m", params={})
    old_id = f"erased:{uuid.uuid5(uuid.NAMESPACE_URL, job.id + USER)}"
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO erasures (user_hash, requested_by, counts, created_at) VALUES "
                          "(:h, 'dpo', '{}', '2026-01-01')"), {"h": hashlib.sha256(USER.encode()).hexdigest()})
        conn.execute(text("INSERT INTO messages (job_id, user_id, variant, title, body, item_ids, prompt, template, "
                          "status, guardrails, candidates, ranked_items, review_status, created_at) VALUES "
                          "(:j, :u, 0, '', '', '[\"SKU-1\"]', '', 't', 'erased', '[]', '[]', '[]', 'approved', "
                          "'2026-01-01')"), {"j": job.id, "u": old_id})
    store.migrate()
    assert [r.id for r in erasures(store, USER)] == [1]  # found by the keyed hash of the same id
    assert suppressed(store, [USER, OTHER]) == {USER}
    [m] = list_messages(store, job.id)
    assert m.user_id != old_id and m.user_id.startswith("erased:") and m.item_ids == [] and m.review_status == "erased"


def test_privacy_commands_erase_and_restore(shop: Path) -> None:
    from tests.test_cli_errors import assert_one_line_error, pushgen

    r = pushgen("privacy", "erase", USER, "--by", "dpo")
    assert r.returncode == 0 and USER not in r.stdout and '"users_erased": 1' in r.stdout, r.stderr
    assert suppressed(Store(), [USER]) == {USER}
    assert pushgen("privacy", "restore", USER).returncode == 0 and suppressed(Store(), [USER]) == set()
    assert_one_line_error(pushgen("privacy", "restore", USER), "not on the suppression list")
