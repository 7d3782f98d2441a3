"""Brand guidelines: the object (in the campaign or brand.yaml beside the adapter), its lines in the prompt, the
``brand`` guardrail (emoji, required and banned phrases per locale, disclaimer, capitalisation), reviewers' edits
held to it, and bad guidelines refused naming the field."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from generator.campaign.runner import CampaignRunner, Candidate
from generator.campaign.spec import Campaign
from generator.check import brand
from generator.check.brand import BrandGuidelines, check_brand, emoji_count
from generator.check.guardrails import DEFAULT_CHECKS, BrandPolicy, GuardContext, run_checks
from generator.core.config import get_settings
from generator.core.data import Item, Shop, User
from generator.core.errors import DataError
from generator.db.messages import list_messages
from generator.db.store import Store
from generator.db.tables import Job
from generator.db.tokens import create_token
from generator.rank.scorer import RankedItem

LAMP = Item(item_id="L1", title="Aurora LED Desk Lamp", brand="Aurora", price=Decimal("40.00"),
            sale_price=Decimal("30.00"), currency="USD", in_stock=True, url="https://shop.example.com/p/L1")
RULES = {"tone": ["warm", "playful"], "emoji": 1, "capitalisation": "sentence",
         "locales": {"*": {"banned": ["cheap"]},
                     "en": {"required": ["made to last"], "disclaimer": "T&Cs apply."},
                     "zh_CN": {"required": ["包邮"], "banned": ["便宜"]}}}
GOOD = ("Your Aurora desk lamp is 25% off", "Light up the evening with made to last 💡 T&Cs apply.")


def ctx(locale: str = "en_US", rules: dict | None = None, **facts: object) -> GuardContext:
    return GuardContext(items=[LAMP], locale=locale, facts=dict(facts),
                        policy=BrandPolicy(guidelines=BrandGuidelines.model_validate(rules or RULES)))


def reason(title: str, body: str, c: GuardContext | None = None) -> str:
    r = check_brand(title, body, c or ctx())
    return "" if r.passed else r.reason


def test_copy_within_the_guidelines_passes_and_the_check_is_a_default_guardrail() -> None:
    assert reason(*GOOD) == ""
    assert check_brand in DEFAULT_CHECKS
    names = [r.name for r in run_checks(*GOOD, ctx())]
    assert "brand" in names
    no_rules = GuardContext(items=[LAMP])
    assert check_brand("ANY 🎉🎉🎉 copy", "cheap", no_rules).passed


@pytest.mark.parametrize(("title", "body", "why"), [
    (GOOD[0], "Light up 💡💡 with made to last. T&Cs apply.", "2 emoji; the brand allows at most 1"),
    (GOOD[0], "So cheap! Made to last. T&Cs apply.", "banned phrase 'cheap'"),
    (GOOD[0], "Light up the evening. T&Cs apply.", "missing the required phrase 'made to last'"),
    (GOOD[0], "Light up the evening with made to last.", "missing the disclaimer 'T&Cs apply.'"),
    ("your Aurora desk lamp is on sale", GOOD[1], "does not start with a capital"),
    ("Your Desk Lamp Deal Is Here Today", GOOD[1], "Title Case"),
    ("Your lamp deal is HUGE", GOOD[1], "shouts 'HUGE'"),
])
def test_each_rule_is_enforced_with_a_reason(title, body, why) -> None:  # type: ignore[no-untyped-def]
    assert why in reason(title, body)


def test_names_codes_and_the_brands_phrases_may_be_capitalised() -> None:
    c = ctx(coupon_code="LAMP25")
    assert reason("Your Aurora LED Desk Lamp is 25% off", "Use LAMP25 with made to last. T&Cs apply.", c) == ""


def test_rules_differ_per_locale_and_merge_star_language_and_locale() -> None:
    zh = ctx("zh_CN")
    assert reason("台灯特惠", "全场包邮，T&Cs apply.", zh) == ""
    assert "banned phrase '便宜'" in reason("台灯特惠", "超便宜，包邮", zh)
    assert "missing the required phrase '包邮'" in reason("台灯特惠", "快来看看", zh)
    assert "'cheap'" in reason("台灯特惠", "包邮 cheap", zh)  # the '*' rules hold in every locale
    g = BrandGuidelines.model_validate(RULES)
    assert g.rules_for("en_GB").required == ["made to last"] and g.rules_for("de_DE").required == []
    off = ctx(rules={**RULES, "emoji": "off"})
    assert "1 emoji; the brand allows none" in reason(*GOOD, off)
    assert emoji_count("👨‍👩‍👧 🇩🇪 ok ✨") == 3  # a family and a flag are one emoji each


def test_title_case_brands_are_checked_the_other_way() -> None:
    c = ctx(rules={"capitalisation": "title"})
    assert reason("Your Desk Lamp Deal Is Here", "Now 30.00.", c) == ""
    assert "not in Title Case" in reason("Your desk lamp deal is here", "Now 30.00.", c)


@pytest.mark.parametrize(("rules", "field"), [({"emoji": "sometimes"}, "emoji"), ({"emoji": 11}, "emoji"),
                                              ({"capitalisation": "shouty"}, "capitalisation"),
                                              ({"tone": ["warm!!", "x"]}, "tone"),
                                              ({"locales": {"en": {"required": [""]}}}, "required"),
                                              ({"locales": {"en": {"musts": ["x"]}}}, "musts"),
                                              ({"colour": "blue"}, "colour")])
def test_bad_guidelines_are_refused_naming_the_field(rules, field, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as err:
        Campaign(policy={"guidelines": rules})
    assert field in str(err.value)
    path = tmp_path / "brand.yaml"
    path.write_text(json.dumps(rules))
    with pytest.raises(DataError) as derr:
        brand.load_guidelines(path)
    assert str(path) in str(derr.value) and field in str(derr.value)
    from workers.api import create_app

    store = Store()
    client = TestClient(create_app(store))
    auth = {"Authorization": f"Bearer {create_token(store, 't', 'campaign_tool')}"}
    r = client.post("/v1/jobs", json={"campaign": {"type": "price_drop", "policy": {"guidelines": rules}}},
                    headers=auth)
    assert r.status_code == 422 and field in json.dumps(r.json()["detail"])
    with store.session() as s:
        assert s.query(Job).count() == 0


def test_brand_yaml_beside_the_adapter_applies_unless_the_campaign_has_its_own() -> None:
    folder = Path(get_settings().adapters_dir) / "brand-en"
    folder.mkdir(parents=True)
    (folder / "brand.yaml").write_text("tone: [calm]\nemoji: off\nlocales:\n  en:\n    banned: [hurry]\n")
    policy = brand.policy_with_guidelines(BrandPolicy(), "brand-en")
    assert policy.guidelines.tone == ["calm"] and policy.guidelines.max_emoji == 0
    own = BrandPolicy(guidelines=BrandGuidelines(tone=["bold"]))
    assert brand.policy_with_guidelines(own, "brand-en") is own
    per_language = brand.policy_with_guidelines(BrandPolicy(), {"en": "brand-en", "zh": "brand-zh"}, "en_US")
    assert per_language.guidelines.tone == ["calm"]
    assert brand.policy_with_guidelines(BrandPolicy(), {"zh": "brand-zh"}, "zh_CN").guidelines is None
    assert brand.policy_with_guidelines(BrandPolicy(), None).guidelines is None


class RecordingModel:
    """Records the prompts it is given and writes copy that breaks the brand's emoji rule (first) and keeps it."""

    model_name = "recording"
    tokenizer = object()

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, requests, *, n_candidates=1, seed=0, progress=None, max_new_tokens=None):  # type: ignore[no-untyped-def]
        self.prompts += [f"{r.prefix}{r.prompt}" for r in requests]
        return [[Candidate(title="Your Aurora desk lamp is 25% off", body="Made to last 🎉🎉🎉 T&Cs apply.", raw="",
                           sampled=False),
                 Candidate(title="Your Aurora desk lamp is 25% off", body="Now $30.00, made to last. T&Cs apply.",
                           raw="", sampled=True)][:max(n_candidates, 1)] for _ in requests]


class OneItemScorer:
    def rank(self, shop, user_ids, rules, progress=False):  # type: ignore[no-untyped-def]
        return {u: [RankedItem(LAMP, 0.9, 1, ["viewed it"])] for u in user_ids}


def test_the_guidelines_reach_the_prompt_and_choose_the_copy_that_keeps_them() -> None:
    model = RecordingModel()
    shop = Shop(items=[LAMP], users=[User(user_id="U1", locale="en_US")], events=[], reviews=[], pushes=[])
    campaign = Campaign(type="price_drop", candidates=2, retries=0, policy={"guidelines": RULES})
    _, [msg] = CampaignRunner(generator=model, scorer=OneItemScorer(), ctr=False).run(shop, campaign)
    prompt = model.prompts[0]
    assert "Brand guidelines:" in prompt and "Voice: warm, playful." in prompt and "Use at most 1 emoji." in prompt
    assert "Always include: 'made to last'." in prompt and "End the message body with: T&Cs apply." in prompt
    assert msg.chosen.body == "Now $30.00, made to last. T&Cs apply."
    emoji_one = next(c for c in msg.candidates if "🎉" in c.body)
    assert any(k["name"] == "brand" and not k["passed"] and "3 emoji" in k["reason"] for k in emoji_one.checks)
    plain = RecordingModel()
    CampaignRunner(generator=plain, scorer=OneItemScorer(), ctr=False).run(shop, Campaign(type="price_drop"))
    assert "Brand guidelines" not in plain.prompts[0]  # additive: nothing changes without guidelines


def test_a_reviewers_edit_is_held_to_the_guidelines() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from review_fixtures import seed_review_job
    from rich_fixtures import enable_rich

    from generator import review

    store = Store()
    job_id = seed_review_job(store, users=1, flagged=0)
    enable_rich(store, job_id, policy={"guidelines": {"emoji": "off", "locales": {"*": {"banned": ["hurry"]}}}})
    m = list_messages(store, job_id)[0]
    who = review.Reviewer(name="alice", role="reviewer", token_id=None)
    _, results = review.edit(store, m.id, who, m.title, m.body + " Hurry!")
    assert any(r.name == "brand" and not r.passed and "hurry" in r.reason for r in results)
    _, results = review.edit(store, m.id, who, m.title, m.body)
    assert all(r.passed for r in results if r.name == "brand")
