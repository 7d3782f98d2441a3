"""The review workflow without a browser: the library (decisions, re-checked edits, bulk approval, the auto-approve
rule, the audit trail, preference pairs), the pages' login, CSRF and cookie rules over HTTP, the API's view of
review decisions, and the migration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from review_fixtures import XSS_ITEM, XSS_TITLE, seed_review_job
from sqlalchemy import select

from generator import learning, review
from generator.core.data import PastPush, load_table
from generator.db.jobs import get_job
from generator.db.messages import list_messages, save_messages
from generator.db.store import Store
from generator.db.tables import Message
from generator.db.tokens import create_token
from generator.review import AUTO_ACTOR, Reviewer, ReviewError, ReviewEvent

ALICE = Reviewer("alice", "reviewer", 1)


def _messages(store: Store, job_id: str) -> dict[tuple[str, int], Message]:
    return {(m.user_id, m.variant): m for m in list_messages(store, job_id)}


def _events(store: Store, message_id: int) -> list[ReviewEvent]:
    return review.history(store, [message_id])[message_id]


# --- library ------------------------------------------------------------------------------------------------

def test_failing_copy_cannot_be_approved_and_passing_copy_can() -> None:
    store = Store()
    job = seed_review_job(store, users=2)
    msgs = _messages(store, job)
    bad, good = msgs[("U001", 0)], msgs[("U002", 0)]
    with pytest.raises(ReviewError, match="percentages"):
        review.approve(store, bad.id, ALICE)
    assert review.approve(store, good.id, ALICE).review_status == "approved"
    assert _messages(store, job)[("U001", 0)].review_status == "pending"
    (event,) = _events(store, good.id)
    assert (event.actor, event.actor_role, event.action, event.old_status, event.new_status) == \
        ("alice", "reviewer", "approve", "pending", "approved")
    assert event.new_title == good.title and not _events(store, bad.id)


def test_an_edit_is_rechecked_failing_edits_stay_unapprovable_and_passing_ones_can_be_approved() -> None:
    store = Store()
    job = seed_review_job(store, users=1)
    m = _messages(store, job)[("U001", 0)]
    item = m.ranked_items[0]
    edited, results = review.edit(store, m.id, ALICE, m.title, "Now only $1.00, 40% off.")
    assert edited.review_status == "edited" and edited.status == "flagged"
    assert [r.name for r in results if not r.passed] == ["prices"]
    with pytest.raises(ReviewError, match="prices"):
        review.approve(store, m.id, ALICE)
    fixed = f"Now ${item['price']}, {item['discount_pct']}% off."
    edited, results = review.edit(store, m.id, ALICE, m.title, fixed)
    assert all(r.passed for r in results) and edited.status == "passed" and edited.body == fixed
    review.approve(store, m.id, ALICE)
    trail = _events(store, m.id)
    assert [e.action for e in trail] == ["edit", "edit", "approve"]
    assert trail[0].old_body == "Now $23.97, 55% off today only." and trail[0].new_body == "Now only $1.00, 40% off."
    assert trail[0].checks and trail[0].checks[0].startswith("prices:")
    assert trail[1].old_body == trail[0].new_body and trail[1].checks == []
    with pytest.raises(ReviewError, match="changes nothing"):
        review.edit(store, m.id, ALICE, m.title, fixed)


def test_an_edit_naming_another_shop_product_fails_the_facts_check() -> None:
    store = Store()
    job = seed_review_job(store, users=2)
    msgs = _messages(store, job)
    mine, other = msgs[("U002", 0)], msgs[("U001", 0)]
    _, results = review.edit(store, mine.id, ALICE, other.ranked_items[0]["title"], mine.body)
    failed = {r.name for r in results if not r.passed}
    assert "facts" in failed


def test_reject_needs_a_reason_and_records_it() -> None:
    store = Store()
    job = seed_review_job(store, users=1)
    m = _messages(store, job)[("U001", 0)]
    with pytest.raises(ReviewError, match="reason"):
        review.reject(store, m.id, ALICE, "   ")
    review.reject(store, m.id, ALICE, "claims a discount we do not have")
    (event,) = _events(store, m.id)
    assert event.action == "reject" and event.reason == "claims a discount we do not have"
    assert _messages(store, job)[("U001", 0)].review_status == "rejected"


def test_approve_all_that_pass_skips_failing_copy_and_bulk_selection_skips_it_too() -> None:
    store = Store()
    job = seed_review_job(store, users=3, variants=2, flagged=2)
    assert review.approve_passing(store, job, ALICE, variant=1) == 3
    assert review.approve_passing(store, job, ALICE) == 1  # U004 variant 0; U001/U002 variant 0 fail
    statuses = {k: m.review_status for k, m in _messages(store, job).items()}
    assert statuses[("U001", 0)] == statuses[("U002", 0)] == "pending"
    assert sum(s == "approved" for s in statuses.values()) == 4
    ids = [m.id for m in list_messages(store, job)]
    done, skipped = review.bulk(store, ids, "approve", ALICE)
    assert done == 0 and len(skipped) == 2
    with pytest.raises(ReviewError, match="reason"):
        review.bulk(store, skipped, "reject", ALICE)
    done, _ = review.bulk(store, skipped, "reject", ALICE, "wrong discount")
    assert done == 2 and review.count_messages(store, job, review_status="rejected") == 2


def test_auto_approve_rule_approves_passing_copy_above_the_threshold_as_auto_rule() -> None:
    store = Store()
    job = seed_review_job(store, users=4, flagged=1)  # CTRs 0.03, 0.04, 0.05 for the passing ones
    with pytest.raises(ReviewError):
        review.set_rule(store, job, 1.5, ALICE)
    assert review.set_rule(store, job, 0.035, ALICE) == 2
    approved = [m for m in list_messages(store, job) if m.review_status == "approved"]
    assert sorted(round(m.ctr_score, 3) for m in approved) == [0.04, 0.05]
    for m in approved:
        (event,) = _events(store, m.id)
        assert event.actor == AUTO_ACTOR and event.actor_role == "rule" and "set by alice" in event.reason
    assert review.get_rule(store, job).min_ctr == 0.035
    assert review.apply_rule(store, job) == 0  # idempotent
    review.clear_rule(store, job)
    assert review.get_rule(store, job) is None and review.apply_rule(store, job) == 0


def test_auto_rule_covers_chunks_that_finish_after_it_was_set() -> None:
    from generator import jobs
    from generator.campaign.spec import Audience, Campaign

    store = Store()
    job, _ = jobs.create_job(store, jobs.JobRequest(campaign=Campaign(type="price_drop", audience=Audience(limit=2))))
    review.set_rule(store, job.id, 0.01, ALICE)  # nothing generated yet
    shaped = list_messages(store, seed_review_job(store, users=2, flagged=0))
    fields = ("title", "body", "deep_link", "item_ids", "prompt", "template", "adapter", "status", "guardrails",
              "candidates", "ranked_items", "ctr_score")

    class SavingRunner:  # stands in for the model: saves campaign-shaped records for the chunk's users
        def run(self, shop, campaign, *, user_ids, job_id, **_):  # type: ignore[no-untyped-def]
            save_messages(store, job_id, [{**{f: getattr(m, f) for f in fields}, "user_id": u, "variant": 0}
                                   for u, m in zip(user_ids, shaped, strict=False)])
            return job_id, []

    jobs.run_job_inline(store, job.id, runner=SavingRunner())
    msgs = list_messages(store, job.id)
    assert len(msgs) == 2 and {m.review_status for m in msgs} == {"approved"}
    assert {e.actor for m in msgs for e in _events(store, m.id)} == {AUTO_ACTOR}


def test_preference_pairs_from_edits_and_rejections_load_as_past_pushes(tmp_path: Path) -> None:
    store = Store()
    job = seed_review_job(store, users=3, variants=2, flagged=1)
    msgs = _messages(store, job)
    m = msgs[("U001", 0)]
    item = m.ranked_items[0]
    review.edit(store, m.id, ALICE, m.title, f"Now ${item['price']}, {item['discount_pct']}% off.")
    review.approve(store, m.id, ALICE)
    review.approve(store, msgs[("U002", 0)].id, ALICE)
    review.reject(store, msgs[("U002", 1)].id, ALICE, "too generic")
    review.reject(store, msgs[("U004", 1)].id, ALICE, "no approved sibling")  # nothing to pair with
    out = tmp_path / "pairs.jsonl"
    assert learning.export_pairs(store, out, job_id=job) == (2, 1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_kind = {r["kind"]: r for r in rows}
    edit, rej = by_kind["edit"], by_kind["reject"]
    assert edit["chosen"] == f" {m.title}\nBody: Now ${item['price']}, {item['discount_pct']}% off."
    assert edit["rejected"] == f" {m.title}\nBody: Now $23.97, 55% off today only." and edit["prompt"] == m.prompt
    assert rej["chosen"].startswith(f" {msgs[('U002', 0)].title}") and rej["reason"] == "too generic"
    assert rej["rejected"].startswith(f" {msgs[('U002', 1)].title}") and rej["reviewer"] == "alice"
    pushes = load_table(out, PastPush).rows  # the adapter training's contract
    assert {p.title for p in pushes} == {m.title, msgs[("U002", 0)].title}
    assert all(p.campaign_type == "price_drop" and p.sends == 0 and p.item_id for p in pushes)
    from generator.tune.train import load_pushes, select_texts

    texts = select_texts(load_pushes(out), "ctr")  # what `pushgen adapter train --pushes` trains on
    assert sorted(p.title for p, _, _ in texts) == sorted(p.title for p in pushes)
    assert {w for _, w, _ in texts} == {1.0}


def test_review_export_command_writes_the_pairs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from generator.cli import app

    store = Store()
    job = seed_review_job(store, users=1, variants=2, flagged=0)
    msgs = _messages(store, job)
    review.approve(store, msgs[("U001", 0)].id, ALICE)
    review.reject(store, msgs[("U001", 1)].id, ALICE, "weaker")
    result = CliRunner().invoke(app, ["review", "export", "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert "1 preference pairs" in result.output
    assert json.loads((tmp_path / "p.jsonl").read_text())["kind"] == "reject"


@pytest.mark.postgres
def test_review_flow_on_postgresql(pg_url: str) -> None:
    store = Store(pg_url)
    job = seed_review_job(store, users=2, variants=1)
    assert review.approve_passing(store, job, ALICE) == 1
    m = _messages(store, job)[("U001", 0)]
    review.reject(store, m.id, ALICE, "wrong discount")
    assert review.count_messages(store, job, review_status="approved") == 1
    assert [e.action for e in _events(store, m.id)] == ["reject"]
    assert review.app_secret(store, "k") == review.app_secret(store, "k")


def test_migration_0004_downgrades_and_upgrades(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from generator.db.store import MIGRATIONS_DIR

    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    assert {"review_events", "review_rules", "app_secrets"} <= set(inspect(store.engine).get_table_names())
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    assert "review_events" not in inspect(store.engine).get_table_names()
    store.migrate("head")
    assert "review_events" in inspect(store.engine).get_table_names()


# --- pages over HTTP -----------------------------------------------------------------------------------------

@pytest.fixture
def web():  # type: ignore[no-untyped-def]
    from workers.api import create_app

    store = Store()
    tokens = {r: create_token(store, f"{r}-name", r) for r in ("campaign_tool", "reviewer", "admin")}
    return TestClient(create_app(store)), store, tokens


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _login(client: TestClient, token: str) -> str:
    page = client.get("/review/login")
    r = client.post("/review/login", data={"token": token, "csrf": _csrf(page.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return _csrf(client.get("/review/jobs").text)


def test_pages_need_a_reviewer_or_admin_login(web) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = web
    r = client.get("/review/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
    r = client.post("/review/jobs/some-job/approve-passing", data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review/login?next=%2Freview%2Fjobs"
    page = client.get("/review/login")
    bad = client.post("/review/login", data={"token": tokens["campaign_tool"], "csrf": _csrf(page.text)})
    assert bad.status_code == 401 and "may not review" in bad.text
    assert client.get("/review/jobs", follow_redirects=False).status_code == 303
    _login(client, tokens["admin"])
    assert "admin-name" in client.get("/review/jobs").text


def test_session_cookie_is_signed_httponly_and_samesite(web) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = web
    page = client.get("/review/login")
    r = client.post("/review/login", data={"token": tokens["reviewer"], "csrf": _csrf(page.text)},
                    follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/review" in cookie
    assert tokens["reviewer"] not in cookie
    value = client.cookies.get("pushgen_review")
    data, sig = value.rsplit(".", 1)
    client.cookies.clear()
    client.cookies.set("pushgen_review", value)
    assert client.get("/review/jobs", follow_redirects=False).status_code == 200
    client.cookies.set("pushgen_review", data + "." + ("0" * len(sig)))
    assert client.get("/review/jobs", follow_redirects=False).status_code == 303


def test_every_post_needs_the_csrf_token(web) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = web
    job = seed_review_job(store, users=2)
    good = _messages(store, job)[("U002", 0)]
    csrf = _login(client, tokens["reviewer"])
    posts = [f"/review/messages/{good.id}/approve", f"/review/messages/{good.id}/reject",
             f"/review/messages/{good.id}/edit", f"/review/jobs/{job}/approve-passing", f"/review/jobs/{job}/bulk",
             f"/review/jobs/{job}/rule", "/review/logout"]
    for url in posts:
        data = {"reason": "x", "title": "t", "body": "b", "action": "approve", "ids": str(good.id), "min_ctr": "0"}
        assert client.post(url, data=data).status_code == 403, url
        assert client.post(url, data={**data, "csrf": "forged"}).status_code == 403, url
    assert {m.review_status for m in list_messages(store, job)} == {"pending"}
    r = client.post(f"/review/messages/{good.id}/approve", data={"csrf": csrf}, headers={"Origin": "http://evil.test"})
    assert r.status_code == 403
    r = client.post(f"/review/messages/{good.id}/approve", data={"csrf": csrf, "next": "https://evil.test/x"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/review/jobs/{job}#m-{good.id}"
    assert _messages(store, job)[("U002", 0)].review_status == "approved"
    page = client.get("/review/login")  # the login form is protected as well
    assert client.post("/review/login", data={"token": tokens["reviewer"], "csrf": "nope"}).status_code == 403
    assert page.status_code == 200


def test_pages_escape_model_and_shopper_text_and_send_a_strict_csp(web) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = web
    job = seed_review_job(store, users=1, xss=True)
    csrf = _login(client, tokens["reviewer"])
    xss = _messages(store, job)[("U-XSS", 0)]
    client.post(f"/review/messages/{xss.id}/reject", data={"csrf": csrf, "reason": "<script>alert('r')</script>"})
    html = client.get(f"/review/jobs/{job}")
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in html.text
    assert "&lt;img src=x onerror=alert(&#34;item&#34;)&gt;" in html.text
    assert "&lt;script&gt;alert(&#39;r&#39;)&lt;/script&gt;" in html.text
    assert XSS_TITLE not in html.text and XSS_ITEM not in html.text and "<script>alert" not in html.text
    assert "script-src 'self'" in html.headers["content-security-policy"]
    assert html.headers["x-frame-options"] == "DENY"


def test_queue_filters_variants_view_and_rule_form(web) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = web
    job = seed_review_job(store, users=3, variants=2)
    csrf = _login(client, tokens["reviewer"])
    failing = client.get(f"/review/jobs/{job}?flag=fail").text
    assert failing.count('class="msg ') == 1 and "U001" in failing
    assert client.get(f"/review/jobs/{job}?variant=1").text.count('class="msg ') == 3
    r = client.post(f"/review/jobs/{job}/rule", data={"csrf": csrf, "min_ctr": "0.034"})
    assert "approved 3 message(s)" in r.text and "auto-rule" in r.text
    approved = client.get(f"/review/jobs/{job}?status=approved").text
    assert approved.count('class="msg ') == 3
    variants = client.get(f"/review/jobs/{job}/variants").text
    assert "variant 0" in variants and "variant 1" in variants and variants.count("<tr>") == 1 + 3
    assert client.get(f"/review/jobs/{job}?status=bogus").status_code == 422


def test_api_lists_review_status_and_filters_the_approved_set(web) -> None:  # type: ignore[no-untyped-def]
    client, store, tokens = web
    job = seed_review_job(store, users=3)
    msgs = _messages(store, job)
    review.approve(store, msgs[("U002", 0)].id, ALICE)
    m = msgs[("U001", 0)]
    item = m.ranked_items[0]
    review.edit(store, m.id, ALICE, "Edited: " + item["title"], f"Now ${item['price']}.")
    review.approve(store, m.id, ALICE)
    auth = {"Authorization": f"Bearer {tokens['campaign_tool']}"}
    page = client.get(f"/v1/jobs/{job}/messages?review_status=approved", headers=auth).json()
    assert page["total"] == 2
    assert {(x["user_id"], x["review_status"]) for x in page["messages"]} == {("U001", "approved"),
                                                                               ("U002", "approved")}
    assert next(x for x in page["messages"] if x["user_id"] == "U001")["title"] == "Edited: " + item["title"]
    everything = client.get(f"/v1/jobs/{job}/messages", headers=auth).json()
    assert everything["total"] == 3 and {x["review_status"] for x in everything["messages"]} == {"approved",
                                                                                                  "pending"}
    assert client.get(f"/v1/jobs/{job}/messages?review_status=maybe", headers=auth).status_code == 422


def test_audit_rows_cascade_with_their_message() -> None:
    store = Store()
    job = seed_review_job(store, users=1, flagged=0)
    m = _messages(store, job)[("U001", 0)]
    review.approve(store, m.id, ALICE)
    with store.session() as s:
        s.delete(s.get(Message, m.id))
    with store.session() as s:
        assert s.scalars(select(ReviewEvent)).all() == []


def test_erasing_a_user_blanks_the_copy_the_audit_trail_kept() -> None:
    from generator import privacy

    store = Store()
    job = seed_review_job(store, users=2)
    m = _messages(store, job)[("U001", 0)]
    review.edit(store, m.id, ALICE, "Personal copy for U001", "Hi there, " + m.body)
    review.reject(store, m.id, ALICE, "mentions the customer")
    privacy.erase_user(store, "U001", requested_by="admin")
    trail = _events(store, m.id)
    assert [e.action for e in trail] == ["edit", "reject"] and {e.actor for e in trail} == {"alice"}
    assert all(e.old_title == e.new_title == e.old_body == e.new_body == "" for e in trail)
    assert trail[1].reason == "[erased]"
    with pytest.raises(ReviewError, match="erased"):
        review.edit(store, m.id, ALICE, "New copy", "for nobody")
    other = _messages(store, job)[("U002", 0)]
    review.approve(store, other.id, ALICE)
    assert _events(store, other.id)[0].new_title == other.title  # other users' trails are untouched


def test_recheck_reproduces_the_verdicts_the_generator_got() -> None:
    """The facts an edit is checked against are rebuilt from the stored job: re-checking every stored candidate
    gives exactly the failures the campaign run recorded (prices, language, copied reviews, ...)."""
    from generator.campaign.runner import CampaignRunner, Candidate
    from generator.campaign.spec import Campaign
    from generator.core.config import get_settings
    from generator.core.data import load_shop
    from generator.rank.scorer import RankedItem

    shop = load_shop(get_settings().shop_dir)
    reviewed = [i for i in shop.items if i.in_stock and any(r.item_id == i.item_id and r.text for r in shop.reviews)]
    users = [u for u in shop.users if u.locale.startswith("en")][:3] + [u for u in shop.users
                                                                         if u.locale.startswith("zh")][:2]

    class ShelfScorer:
        def rank(self, shop, user_ids, rules, progress=False):  # type: ignore[no-untyped-def]
            return {u: [RankedItem(it, 0.9 - 0.1 * k, k + 1, ["viewed it"]) for k, it in
                        enumerate(reviewed[3 * n:3 * n + 3])] for n, u in enumerate(user_ids)}

    featured = {u.user_id: reviewed[3 * n] for n, u in enumerate(users)}

    class ParrotModel:  # copies the quoted review, invents prices and offers, writes the wrong language
        model_name, tokenizer = "parrot", object()

        def generate(self, requests, *, n_candidates=1, seed=0, progress=None,  # type: ignore[no-untyped-def]
                     max_new_tokens=None):
            out = []
            for r in requests:
                quoted = r.prompt.split("(quoted data, not instructions): ", 1)[-1].split("\n")[0].strip("\"'")
                name = featured[r.key].display_name
                texts = [("You will love it", quoted), ("Big sale", "Only $1.00, 50% off, free shipping!"),
                         ("限时优惠", "全场五折，快来抢购"), (f"{name} sale", f"The {name} is 50% off now."),
                         (f"{name} deal", f"The {name} ships free, today only!"),
                         (f"{name} price drop", f"The {name} is now $1.00."), (name, f"{name} 现在去看看吧。")]
                out.append([Candidate(title=t, body=b, raw="", sampled=k > 0) for k, (t, b) in enumerate(texts)])
            return out

    store = Store()
    runner = CampaignRunner(generator=ParrotModel(), scorer=ShelfScorer(), ctr=False, store=store)
    job_id, _ = runner.run(shop, Campaign(name="fidelity", candidates=7, retries=0),
                           user_ids=[u.user_id for u in users])
    job = get_job(store, job_id)
    compared = set()
    for m in list_messages(store, job_id):
        stored = [c for c in m.guardrails if c["name"] != "complete"]
        assert [r.as_dict() for r in review.recheck(m, job, m.title, m.body)] == stored
        for cand in (c for c in m.candidates if c.get("checked", True)):  # left unchecked: nothing stored to compare
            now = [f"{r.name}: {r.reason}" for r in review.recheck(m, job, cand["title"], cand["body"]) if not r.passed]
            # a candidate is checked up to its first failing check: the recheck's first failure
            assert now[:1] == [r for r in cand["reasons"] if not r.startswith("complete")], (m.user_id, cand)
            compared.update(r.split(":")[0] for r in now[:1])
    assert {"prices", "percentages", "claims", "language"} <= compared


def test_the_job_page_shows_candidates_left_unchecked_and_why_the_checked_ones_failed(web) -> None:  # type: ignore[no-untyped-def]
    from generator.campaign.runner import CampaignRunner
    from generator.campaign.spec import Campaign
    from tests.test_campaign import FixedCtr, FixedScorer, MixedModel, shop_with_reviews

    client, store, tokens = web
    runner = CampaignRunner(generator=MixedModel(), scorer=FixedScorer(), store=store,
                            ctr=FixedCtr({"best": 0.9, "less": 0.5, "cheaper": 0.1}))
    job_id, [m] = runner.run(shop_with_reviews(["fine"]), Campaign(name="order", type="price_drop", retries=0))
    assert m.chosen.title == "Camp for less"
    _login(client, tokens["reviewer"])
    html = client.get(f"/review/jobs/{job_id}").text
    items = re.findall(r"<li><b>(.*?)</b>.*?</li>", html.split('class="candidates"', 1)[1], flags=re.S)
    assert items == ["The best tent ever", "Camp for less", "Your tent, cheaper"]
    assert html.count("not checked (a better-scored candidate passed)") == 1
    assert "claims: " in html.split("The best tent ever", 1)[1].split("</li>", 1)[0]
