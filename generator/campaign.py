"""Run a campaign end to end: rank items per user, render prompts, generate in batches, check, choose, store.

This is the one path every entry point uses (``pushgen demo``, ``pushgen generate``, the workers). For each user:
the scorer ranks items under the campaign's rules; the featured item (rank 1, or the user's abandoned cart
item) fills the campaign's template; the model writes N candidates; every candidate is checked; passing ones
are ranked by predicted click-through. Users with no passing candidate are retried (bounded, with fresh
samples); after that they get the deterministic template-only message, flagged as a fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from generator.brand import apply_to_prompt, policy_with_guidelines
from generator.config import get_settings
from generator.ctr import CtrModel, push_text
from generator.data import EventType, Item, Shop, User, language_of
from generator.errors import DataError, ModelNotAvailable, PushgenError
from generator.generate import Candidate, GenerationRequest, Generator, gc_paused
from generator.guard_index import NearDuplicates
from generator.guardrails import BrandPolicy, CheckResult, GuardContext, run_checks
from generator.inputs import MAX_INT, STRICT, check_locale, check_value, load_yaml_mapping
from generator.links import deep_link
from generator.payloads import RichPush
from generator.prompts import PromptLibrary, default_library, item_facts, prompt_parts
from generator.scorer import RankedItem, RankRules, Scorer
from generator.shop_index import best_reviews
from generator.store import Store

log = logging.getLogger(__name__)
AUTO = "auto"
CAMPAIGN_TYPES = ("back_in_stock", "price_drop", "abandoned_cart", "new_arrivals", "coupon",
                  "content_recommendation", "re_engagement")


class Audience(BaseModel):
    """Who gets the campaign: explicit user ids, or every opted-in user matching the filters."""

    model_config = STRICT
    user_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, min_length=1, max_length=100_000, description="Only these users; leave it out for every "
        "opted-in user (an empty list is an error, never 'everyone').")
    locales: list[Annotated[str, AfterValidator(check_locale)]] | None = Field(
        default=None, min_length=1, max_length=200, description="e.g. ['zh_CN']; None = every locale")
    limit: int | None = Field(default=None, ge=1, le=MAX_INT, description="At most this many users (sorted by id).")


class Campaign(BaseModel):
    """A campaign as the campaign tool describes it (the YAML of ``pushgen generate --campaign``)."""

    model_config = STRICT
    name: str = Field(default="campaign", min_length=1, max_length=200)
    type: str = Field(default=AUTO, description=f"One of {', '.join(CAMPAIGN_TYPES)}, or 'auto' (price_drop "
                                                "for discounted featured items, else content_recommendation).")
    template: str | None = Field(default=None, max_length=200,
                                 description="Template name; default: by type and user locale.")
    adapter: str | dict[str, str] | None = Field(
        default=None, description="LoRA brand adapter: one registered name, or one per language "
        "(e.g. {en: shop-en, zh: shop-zh}); each must be trained on the model that writes that language.")
    locale: Annotated[str, AfterValidator(check_locale)] | None = Field(
        default=None, description="Force one locale's template for every user.")
    brand: str = Field(default="Northwind Home & Outdoor", max_length=200)
    facts: dict[str, Any] = Field(default_factory=dict, max_length=100,
                                  description="Campaign facts the copy may state, e.g. coupon_code, coupon_pct.")
    item_ids: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=100_000, description="Only these items (back in stock, new arrivals).")
    audience: Audience = Field(default_factory=Audience)
    variants: int = Field(default=1, ge=1, le=8, description="Distinct messages per user (A/B variants).")
    candidates: int = Field(default=3, ge=1, le=16, description="Generated candidates per user and round.")
    retries: int = Field(default=1, ge=0, le=5, description="Extra rounds for users with no passing candidate.")
    top_k: int = Field(default=5, ge=1, le=50)
    policy: BrandPolicy = Field(default_factory=BrandPolicy)
    utm_source: str = Field(default="push", min_length=1, max_length=100)
    rich: RichPush | None = Field(default=None, description="Rich push: the item's image, buttons, app links.")

    @model_validator(mode="before")
    @classmethod
    def _within_limits(cls, data: Any) -> Any:
        return check_value(data)

    @model_validator(mode="after")
    def _known_type(self) -> Campaign:
        if self.type != AUTO and self.type not in CAMPAIGN_TYPES:
            raise ValueError(f"type: unknown campaign type {self.type!r}; use one of {', '.join(CAMPAIGN_TYPES)}")
        if self.type == "coupon" and not {"coupon_code", "coupon_pct"} <= set(self.facts):
            raise ValueError("facts: a coupon campaign needs facts.coupon_code and facts.coupon_pct")
        return self


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML file; errors name the file and the field."""
    raw = load_yaml_mapping(path, "campaign")
    try:
        return Campaign.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        if loc is None and ":" in msg:
            loc, _, msg = msg.partition(": ")
        raise DataError(str(path), None, loc, msg) from None


@dataclass
class UserMessage:
    """The outcome for one user and variant: the chosen copy, every candidate, and what the scorer ranked."""

    user: User
    ranked: list[RankedItem]
    campaign_type: str
    template: str
    prompt: str
    variant: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    fallback: bool = False
    deep_link: str = ""
    quoted: list[str] = field(default_factory=list)
    adapter: str | None = None
    """The LoRA adapter that wrote the model copy (None: the base model; a fallback has none)."""

    @property
    def status(self) -> str:
        if self.chosen is None or not self.chosen.passed:
            return "flagged"
        return "fallback" if self.fallback else "passed"

    @property
    def reasons(self) -> list[str]:
        if self.chosen is None:
            return ["no item to talk about (nothing ranked for this user)"]
        return [f"{c['name']}: {c['reason']}" for c in self.chosen.checks if not c["passed"]]

    def as_record(self) -> dict[str, Any]:
        c = self.chosen
        return {
            "user_id": self.user.user_id,
            "variant": self.variant,
            "title": c.title if c else "",
            "body": c.body if c else "",
            "deep_link": self.deep_link,
            "item_ids": [r.item.item_id for r in self.ranked],
            "prompt": self.prompt,
            "template": self.template,
            "adapter": None if self.fallback else self.adapter,
            "status": self.status,
            "guardrails": c.checks if c else [],
            "ctr_score": c.ctr if c else None,
            "candidates": [{"title": x.title, "body": x.body, "sampled": x.sampled, "passed": x.passed,
                            "ctr": x.ctr, "reasons": [f"{k['name']}: {k['reason']}" for k in x.checks
                                                      if not k["passed"]]}
                           for x in self.candidates],
            "ranked_items": [r.to_dict() for r in self.ranked],
        }


def message_records(messages: Sequence[UserMessage]) -> list[dict[str, Any]]:
    """The store's records of a chunk's messages."""
    return [m.as_record() for m in messages]


def campaign_type_for(campaign: Campaign, featured: RankedItem) -> str:
    if campaign.type != AUTO:
        return campaign.type
    return "price_drop" if featured.item.discount_pct else "content_recommendation"


def _progress(enabled: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)


def choose(candidates: Sequence[Candidate], taken: Sequence[str] | NearDuplicates = ()) -> Candidate | None:
    """The best candidate: passing ones first, then not a near-duplicate of copy already chosen for another
    user (``taken``: those texts, or their :class:`NearDuplicates` index), then by predicted click-through (when
    known), then greedy before sampled."""
    if not candidates:
        return None
    seen = taken if isinstance(taken, NearDuplicates) else NearDuplicates(taken)

    passed = [c.passed for c in candidates]

    def key(i: int) -> tuple[Any, ...]:  # the order but for near-duplicates
        c = candidates[i]
        return (not passed[i], sum(not k["passed"] for k in c.checks), -(c.ctr or 0.0), i)

    # the best of the best-passing group that is no near-duplicate, else that group's best: the minimum of
    # (not passed, near-duplicate, failures, -click-through, i), asking the index about as few texts as it can
    order = sorted(range(len(candidates)), key=key)
    group = [i for i in order if passed[i] == passed[order[0]]]
    fresh = next((i for i in group if not seen.near(f"{candidates[i].title} {candidates[i].body}")), group[0])
    return candidates[fresh]


def select_audience(shop: Shop, campaign: Campaign, user_ids: Sequence[str] | None = None) -> list[str]:
    """User ids to message: the given ones (or the campaign's), else opted-in users matching its filters."""
    by_id = {u.user_id: u for u in shop.users}
    given = user_ids if user_ids is not None else campaign.audience.user_ids
    if given is not None:  # explicit ids, even an empty list, are never widened to everyone
        ids = list(given)
        unknown = [u for u in ids if u not in by_id]
        if unknown:
            raise PushgenError(f"unknown user ids: {unknown[:5]}")
        return ids
    users = [u for u in shop.users if u.push_opt_in]
    if campaign.audience.locales:
        users = [u for u in users if u.locale in campaign.audience.locales]
    out = sorted(u.user_id for u in users)
    return out[:campaign.audience.limit] if campaign.audience.limit else out


def _abandoned_cart_items(shop: Shop) -> dict[str, str]:
    """Per user, the most recent carted item not purchased afterwards."""
    last_cart: dict[str, tuple[Any, str]] = {}
    bought_after: set[tuple[str, str]] = set()
    for e in sorted(shop.events, key=lambda e: (e.timestamp, e.user_id, e.item_id)):
        if e.event_type == EventType.cart:
            last_cart[e.user_id] = (e.timestamp, e.item_id)
            bought_after.discard((e.user_id, e.item_id))
        elif e.event_type == EventType.purchase:
            bought_after.add((e.user_id, e.item_id))
    return {u: item for u, (_, item) in last_cart.items() if (u, item) not in bought_after}


def _review_for(shop: Shop, item: Item) -> str | None:
    """The best-rated review of an item (social proof; enters prompts only quoted); indexed once per shop."""
    return best_reviews(shop).get(item.item_id)


def generic_copy(prompts: PromptLibrary, locale: str, campaign_type: str, item: Item,
                 facts: dict[str, Any]) -> list[str]:
    """The brand's template-only copy (title, body) for a user's featured item: the fallback message, and the
    phrasing the example-copy check never counts as lifted from an example."""
    r = prompts.render(prompts.resolve("fallback", locale), campaign_type=campaign_type,
                       item=item_facts(item, locale), campaign=facts, locale=locale)
    return [r.title, r.user]


def adapter_for(campaign: Campaign, locale: str) -> str | None:
    """The campaign's adapter for a user's locale (a per-language mapping may leave a language without one)."""
    if isinstance(campaign.adapter, dict):
        return campaign.adapter.get(language_of(locale))
    return campaign.adapter


def adapter_label(campaign: Campaign) -> str | None:
    """How a job records its adapter(s): the name, or ``en=shop-en,zh=shop-zh``."""
    if isinstance(campaign.adapter, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(campaign.adapter.items())) or None
    return campaign.adapter


class CampaignRunner:
    """Holds the loaded models so many campaigns (or chunks of one) reuse them."""

    def __init__(self, *, generator: Generator | None = None, scorer: Scorer | None = None,
                 prompts: PromptLibrary | None = None, store: Store | None = None, ctr: Any = None,
                 locale_models: dict[str, str] | None = None):
        self.store = store
        self.prompts = prompts or default_library()
        self._generator, self._scorer, self._ctr = generator, scorer, ctr
        self._generators: dict[str, Generator] = {}
        # an injected generator serves every language (tests, benchmarks); else the per-language settings
        self.locale_models = {} if generator is not None and locale_models is None else \
            (locale_models if locale_models is not None else get_settings().locale_models)

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = Generator()
        return self._generator

    def generator_for(self, locale: str) -> Generator:
        """The generator of a locale's language (e.g. a multilingual model for Chinese), else the default."""
        name = self.locale_models.get(language_of(locale))
        if not name or name == self.generator.model_name:
            return self.generator
        if name not in self._generators:
            try:
                self._generators[name] = Generator(name)
            except ModelNotAvailable as exc:
                log.warning("%s; using %s for locale %s", exc, self.generator.model_name, locale)
                self._generators[name] = self.generator
        return self._generators[name]

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = Scorer.load(store=self.store)
        return self._scorer

    def _score_ctr(self, candidates: Sequence[Candidate]) -> None:
        """Predicted click-through of the passing candidates, when a click-through model is trained."""
        if self._ctr is None:
            self._ctr = CtrModel.load() or False
        passing = [c for c in candidates if c.passed]
        if self._ctr is False or not passing:
            return
        for c, s in zip(passing, self._ctr.score([push_text(c.title, c.body) for c in passing]), strict=True):
            c.ctr = float(s)

    def _check(self, m: UserMessage, ctx: GuardContext) -> None:
        verdicts: dict[tuple[str, str], list[CheckResult]] = {}  # a user's candidates of the same copy: once
        for cand in m.candidates:
            if cand.checks:
                continue
            key = (cand.title, cand.body)
            if key not in verdicts:
                verdicts[key] = run_checks(cand.title, cand.body, ctx)
            results = list(verdicts[key])
            if not cand.finished:
                results.append(CheckResult("complete", False, "cut off at the generation length limit"))
            cand.checks = [r.as_dict() for r in results]

    def _fallback(self, m: UserMessage, campaign: Campaign, ctx: GuardContext) -> Candidate:
        title, body = generic_copy(self.prompts, campaign.locale or m.user.locale, m.campaign_type,
                                   m.ranked[0].item, campaign.facts)
        cand = Candidate(title=title, body=body, raw="", sampled=False)
        cand.checks = [x.as_dict() for x in run_checks(cand.title, cand.body, ctx)]
        return cand

    def run(self, shop: Shop, campaign: Campaign, *, user_ids: Sequence[str] | None = None,
            job_kind: str = "campaign", job_id: str | None = None, show_progress: bool = True,
            seed: int = 0) -> tuple[str | None, list[UserMessage]]:
        """Generate, check, choose and (with a store) save ``variants`` messages per user.
        Returns the job id (None without a store) and the messages, in audience order. With ``job_id`` the
        messages are added to that job (a chunk of a queued job), whose status the caller manages."""
        with gc_paused():  # thousands of messages, candidates and check results, no cycles
            return self._run(shop, campaign, user_ids=user_ids, job_kind=job_kind, job_id=job_id,
                             show_progress=show_progress, seed=seed)

    def _run(self, shop: Shop, campaign: Campaign, *, user_ids: Sequence[str] | None, job_kind: str,
             job_id: str | None, show_progress: bool, seed: int) -> tuple[str | None, list[UserMessage]]:
        t0 = time.perf_counter()
        audience = select_audience(shop, campaign, user_ids)
        if self.store is not None:  # erased users are never messaged again (the suppression list)
            audience = self.store.targetable(audience)
        users = {u.user_id: u for u in shop.users}
        items = shop.items_by_id
        carts = _abandoned_cart_items(shop) if campaign.type == "abandoned_cart" else {}
        rules = RankRules(k=campaign.top_k, campaign_type=None if campaign.type == AUTO else campaign.type,
                          only_item_ids=frozenset(campaign.item_ids) if campaign.item_ids else None)
        ranked = self.scorer.rank(shop, list(audience), rules, progress=show_progress)
        messages: list[UserMessage] = []
        contexts: dict[str, GuardContext] = {}
        model_of: dict[str, tuple[Generator, int | None]] = {}  # generator and token cap of each user's language
        requests: list[GenerationRequest] = []
        for uid in audience:
            user, top = users[uid], list(ranked.get(uid, []))
            if uid in carts and items[carts[uid]].in_stock:
                cart_item = items[carts[uid]]
                top = [RankedItem(cart_item, 1.0, 1, ["left in the cart"])] + [
                    r for r in top if r.item.item_id != cart_item.item_id][:campaign.top_k - 1]
            elif campaign.type == "abandoned_cart":
                top = []
            if not top:
                messages.append(UserMessage(user=user, ranked=[], campaign_type=campaign.type, template="", prompt=""))
                continue
            featured = top[0]
            ctype = campaign_type_for(campaign, featured)
            locale = campaign.locale or user.locale
            template = campaign.template or self.prompts.resolve(ctype, locale)
            review = _review_for(shop, featured.item)
            available = {"brand": campaign.brand, "item": item_facts(featured.item, locale),
                         "campaign": campaign.facts, "review": review, "campaign_type": ctype, "locale": locale}
            declared = self.prompts.get(template).variables
            policy = policy_with_guidelines(campaign.policy, campaign.adapter, locale)  # or brand.yaml's
            rendered = apply_to_prompt(self.prompts.render(template, **{k: available.get(k) for k in declared}),
                                       policy.guidelines, locale)
            gen = self.generator_for(locale)
            adapter = adapter_for(campaign, locale)
            if adapter:
                gen.use_adapters([adapter])
            # an adapter learnt the brand from its past pushes and was trained without the example turns
            shared, own = prompt_parts(gen.tokenizer, rendered, with_examples=adapter is None)
            link = deep_link(featured.item, utm_source=campaign.utm_source, utm_campaign=campaign.name)
            quoted = [review] if review and "review" in declared else []
            for v in range(campaign.variants):
                messages.append(UserMessage(user=user, ranked=top, campaign_type=ctype, template=template,
                                            prompt=shared + own, variant=v, deep_link=link, quoted=quoted,
                                            adapter=adapter))
            generic = generic_copy(self.prompts, locale, ctype, featured.item, campaign.facts)
            contexts[uid] = GuardContext(items=[r.item for r in top], locale=locale, facts=campaign.facts,
                                         catalog=shop.items, quoted_texts=quoted, policy=policy,
                                         example_texts=[a for _, a in rendered.examples],
                                         generic_texts=generic, prompt_text=rendered.user, campaign_type=ctype)
            requests.append(GenerationRequest(key=uid, prompt=own, prefix=shared, adapter=adapter))
            model_of[uid] = (gen, get_settings().language_max_new_tokens.get(language_of(locale)))

        by_user: dict[str, list[UserMessage]] = {}
        for m in messages:
            by_user.setdefault(m.user.user_id, []).append(m)
        n_cand = max(campaign.candidates, campaign.variants)
        pending = requests
        with _progress(show_progress) as bar:
            for attempt in range(campaign.retries + 1):
                if not pending:
                    break
                task = bar.add_task("generating" if attempt == 0 else f"retry {attempt}", total=len(pending))
                outputs: dict[str, list[Candidate]] = {}
                for gen, limit in dict.fromkeys(model_of[r.key] for r in pending):  # one run per model and cap
                    mine = [r for r in pending if model_of[r.key] == (gen, limit)]
                    outs = gen.generate(mine, n_candidates=n_cand, seed=seed + 1000 * attempt,
                                        progress=lambda n, t=task: bar.advance(t, n), max_new_tokens=limit)
                    outputs.update({r.key: o for r, o in zip(mine, outs, strict=True)})
                for req in pending:
                    cands = outputs[req.key]
                    if attempt:  # a retry's greedy candidate repeats the first round's: keep the samples
                        cands = [c for c in cands if c.sampled]
                    for m in by_user[req.key]:
                        m.candidates.extend(cands)
                        self._check(m, contexts[req.key])
                # one click-through call for the round (the encoder works in batches), not one per user
                self._score_ctr([c for req in pending for c in by_user[req.key][0].candidates])
                pending = [r for r in pending
                           if sum(c.passed for c in by_user[r.key][0].candidates) < campaign.variants]

        taken = NearDuplicates()  # copy chosen so far in this run, indexed
        for uid, ms in by_user.items():
            if not ms[0].ranked:
                continue
            pool = list(ms[0].candidates)
            for m in ms:
                m.candidates = list(pool) if m.variant == 0 else []
                best = choose(pool, taken)
                if best is None or not best.passed:
                    m.chosen, m.fallback = self._fallback(m, campaign, contexts[uid]), True
                else:
                    m.chosen = best
                    pool.remove(best)
                    taken.add(f"{best.title} {best.body}")

        if self.store is not None:
            own_job = job_id is None
            if own_job:
                job = self.store.create_job(kind=job_kind, campaign_type=campaign.type,
                                            template=campaign.template or AUTO, adapter=adapter_label(campaign),
                                            locale=campaign.locale, status="running",
                                            model=",".join(dict.fromkeys(g.model_name for g, _ in model_of.values()))
                                            or self.generator.model_name,
                                            total=len(messages), params=campaign.model_dump(mode="json"))
                job_id = job.id
            self.store.save_messages(job_id, message_records(messages))
            if own_job:
                self.store.set_job_status(job_id, "done")
        counts = {s: sum(m.status == s for m in messages) for s in ("passed", "fallback", "flagged")}
        log.info("campaign %s: %d messages %s in %.1f s", campaign.name, len(messages), counts,
                 time.perf_counter() - t0)
        return job_id, messages


def run_campaign(shop: Shop, campaign: Campaign, *, user_ids: Sequence[str] | None = None,
                 store: Store | None = None, generator: Generator | None = None, scorer: Scorer | None = None,
                 prompts: PromptLibrary | None = None, job_kind: str = "campaign",
                 show_progress: bool = True) -> tuple[str | None, list[UserMessage]]:
    """One-shot convenience over :class:`CampaignRunner`."""
    runner = CampaignRunner(generator=generator, scorer=scorer, prompts=prompts, store=store)
    return runner.run(shop, campaign, user_ids=user_ids, job_kind=job_kind, show_progress=show_progress)
