"""Run a campaign end to end: rank items per user, render prompts, generate in batches, check, choose, store.

This is the one path every entry point uses (``pushgen demo``, ``pushgen generate``, the workers). For each user:
the scorer ranks items under the campaign's rules; the featured item (rank 1, or the user's abandoned cart
item) fills the campaign's template; the model writes N candidates; they are ranked by predicted click-through and
checked in that order, as far as choosing needs (the best passing candidate is the one chosen; those after it are
left unchecked). Users with no passing candidate are retried (bounded, with fresh samples); after that they get the
deterministic template-only message, flagged as a fallback.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from operator import itemgetter
from typing import Any

from generator.campaign.spec import (
    AUTO,
    Campaign,
    adapter_for,
    adapter_label,
    campaign_type_for,
    select_audience,
)
from generator.check.brand import policy_with_guidelines
from generator.check.ctr import CtrModel, push_text
from generator.check.facts import message_facts
from generator.check.guard_index import NearDuplicates, memo
from generator.check.guardrails import GuardContext, run_checks
from generator.check.result import CheckResult
from generator.check.result import passing as passing_result
from generator.core.config import get_settings
from generator.core.data import EventType, Shop, User, language_of
from generator.core.errors import ModelNotAvailable
from generator.core.forked import forked_map
from generator.core.links import deep_link
from generator.core.names import brandless, ends_plural, plural_agreement, with_article
from generator.core.shop_index import users_by_id
from generator.db.jobs import create_job, set_job_status
from generator.db.messages import save_messages
from generator.db.store import Store
from generator.db.suppression import targetable
from generator.rank.scorer import RankedItem, RankRules, Scorer, item_record
from generator.write.generate import Draft, GenerationRequest, Generator, gc_paused
from generator.write.prompts import PromptLibrary, default_library, prompt_parts

ProgressHook = Callable[[str, int, int], None]
"""Hears ``(stage, done, total)``: ``done`` more users ranked or written in ``stage`` (0 when it starts)."""


@dataclass
class Candidate(Draft):
    """A draft (:class:`generator.write.generate.Draft`) as checked: the guardrails' verdicts and the predicted
    click-through, filled in by the runner. ``checked`` is False for a model's draft the guardrails have not read
    (the runner checks candidates in choosing order and stops once the choice is settled): it does not pass."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    ctr: float | None = None
    checked: bool = True

    @property
    def passed(self) -> bool:
        return self.checked and all(map(_PASSED, self.checks))

    @classmethod
    def of(cls, draft: Draft) -> Candidate:
        return cls(**{name: getattr(draft, name) for name in _DRAFT_FIELDS}, checked=False)


_PASSED = itemgetter("passed")
_DRAFT_FIELDS = tuple(f.name for f in fields(Draft))


log = logging.getLogger(__name__)


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

    def as_record(self, items: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The store's record; ``items``: ranked items' :func:`item_record` by ``id`` of the item, filled and
        shared by the records of a chunk (whose users share items)."""
        c = self.chosen
        items = {} if items is None else items
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
                            "checked": x.checked, "ctr": x.ctr,
                            "reasons": [f"{k['name']}: {k['reason']}" for k in x.checks if not k["passed"]]}
                           for x in self.candidates],
            "ranked_items": [r.to_dict(items.get(id(r.item)) or items.setdefault(id(r.item), item_record(r.item)))
                             for r in self.ranked],
        }


def message_records(messages: Sequence[UserMessage]) -> list[dict[str, Any]]:
    """The store's records of a chunk's messages (each item's part made once: the messages hold the items, so
    no ``id`` is reused meanwhile)."""
    items: dict[int, dict[str, Any]] = {}
    return [m.as_record(items) for m in messages]


def choose(candidates: Sequence[Candidate], taken: Sequence[str] | NearDuplicates = (),
           verify: Callable[[Candidate], None] | None = None) -> Candidate | None:
    """The best candidate: passing ones first, then not a near-duplicate of copy already chosen for another
    user (``taken``: those texts, or their :class:`NearDuplicates` index), then by predicted click-through (when
    known), then greedy before sampled. Candidates not yet checked are checked with ``verify`` in that order, only
    until the choice is settled (without ``verify`` they count as failing)."""
    if not candidates:
        return None
    seen = taken if isinstance(taken, NearDuplicates) else NearDuplicates(taken)
    order = sorted(candidates, key=_choosing_order(candidates))
    best_passing = None
    for c in order:
        if not c.checked and verify is not None:
            verify(c)
        if c.passed:
            if not seen.near(f"{c.title} {c.body}"):
                return c
            best_passing = best_passing or c
    if best_passing is not None:
        return best_passing
    # none passes: the fewest failures first (a stable sort keeps the order above among equals), a fresh text first
    failing = sorted(order, key=lambda c: sum(not k["passed"] for k in c.checks))
    return next((c for c in failing if not seen.near(f"{c.title} {c.body}")), failing[0])


def _as_dicts(results: Iterable[CheckResult]) -> list[dict[str, Any]]:
    """The results as a candidate keeps them (:meth:`CheckResult.as_dict`); a plain pass (:func:`passing`'s, one
    result per check name) as one dict per check name, shared by every candidate that passes the check: a verdict's
    dicts are read (and stored as JSON), never changed, and most of a passing candidate's are plain passes."""
    return [_pass_dict(r.name) if r.passed and not r.reason and r is passing_result(r.name) else r.as_dict()
            for r in results]


@cache
def _pass_dict(name: str) -> dict[str, Any]:
    return passing_result(name).as_dict()


def _choosing_order(candidates: Sequence[Candidate]) -> Callable[[Candidate], tuple[float, int]]:
    """Higher predicted click-through first, then the model's order (greedy first)."""
    position = {id(c): i for i, c in enumerate(candidates)}
    return lambda c: (-(c.ctr or 0.0), position[id(c)])


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


class CampaignRunner:
    """Holds the loaded models so many campaigns (or chunks of one) reuse them."""

    def __init__(self, *, generator: Generator | None = None, scorer: Scorer | None = None,
                 prompts: PromptLibrary | None = None, store: Store | None = None, ctr: Any = None,
                 locale_models: dict[str, str] | None = None, check_processes: int | None = None):
        self.store = store
        self.check_processes = get_settings().check_processes if check_processes is None else check_processes
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
        """Predicted click-through of the candidates, when a click-through model is trained: scored before they
        are checked, so that they are checked in choosing order."""
        if self._ctr is None:
            self._ctr = CtrModel.load() or False
        if self._ctr is False or not candidates:
            return
        for c, s in zip(candidates, self._ctr.score([push_text(c.title, c.body) for c in candidates]), strict=True):
            c.ctr = float(s)

    @staticmethod
    def _verify(cand: Candidate, ctx: GuardContext) -> None:
        """Run the guardrails on one model candidate up to its first failing check (``fail_fast``): a candidate that
        fails is never chosen, and one that passes has run every check. A draft cut off at the generation length
        limit fails as incomplete, its text unchecked (a cut text says nothing worth checking)."""
        if not cand.finished:
            cand.checks = [CheckResult("complete", False, "cut off at the generation length limit").as_dict()]
        else:
            cand.checks = _as_dicts(run_checks(cand.title, cand.body, ctx, fail_fast=True))
        cand.checked = True

    def _settle(self, candidates: Sequence[Candidate], ctx: GuardContext, need: int) -> int:
        """Check candidates in choosing order until ``need`` of them pass; how many pass."""
        passing = 0
        for c in sorted(candidates, key=_choosing_order(candidates)):
            if passing >= need:
                break
            if not c.checked:
                self._verify(c, ctx)
            passing += c.passed
        return passing

    @staticmethod
    def _fallback(ctx: GuardContext) -> Candidate:
        """The user's template-only message, checked in full (a failing fallback is flagged with every reason): the
        context's generic copy, which the prompt stage rendered (``generic_copy`` of the user's featured item)."""
        title, body = ctx.generic_texts
        checks = _as_dicts(run_checks(title, body, ctx.for_template_copy()))
        return Candidate(title=title, body=body, raw="", sampled=False, checks=checks)

    def run(self, shop: Shop, campaign: Campaign, *, user_ids: Sequence[str] | None = None,
            job_kind: str = "campaign", job_id: str | None = None, progress: ProgressHook | None = None,
            seed: int = 0) -> tuple[str | None, list[UserMessage]]:
        """Generate, check, choose and (with a store) save ``variants`` messages per user, stage by stage:
        audience -> rank -> prompt -> write and check (rounds of retries) -> choose -> save.
        Returns the job id (None without a store) and the messages, in audience order. With ``job_id`` the
        messages are added to that job (a chunk of a queued job), whose status the caller manages. ``progress``
        hears ``(stage, done, total)`` as users are ranked and written."""
        t0 = time.perf_counter()
        with gc_paused():  # thousands of messages, candidates and check results, no cycles
            audience = self.audience(shop, campaign, user_ids)
            ranked = self.rank(shop, campaign, audience, progress)
            plan = self.prompt(shop, campaign, audience, ranked)
            self.write_and_check(campaign, plan, seed, progress)
            self.choose_copy(campaign, plan)
            job_id = self.save(campaign, plan, job_kind, job_id)
            messages = plan.messages
            del plan, ranked  # the guard contexts, and all the checks derived from them, freed before the collector
            # is back: its first collection walks every object the run left alive
        statuses = Counter(m.status for m in messages)
        counts = {s: statuses[s] for s in ("passed", "fallback", "flagged")}
        log.info("campaign %s: %d messages %s in %.1f s", campaign.name, len(messages), counts,
                 time.perf_counter() - t0)
        return job_id, messages

    # -- the stages, in order --------------------------------------------------------------------------------
    def audience(self, shop: Shop, campaign: Campaign, user_ids: Sequence[str] | None) -> list[str]:
        """Who gets it: the campaign's audience, less erased users (the suppression list) when there is a store."""
        audience = select_audience(shop, campaign, user_ids)
        return targetable(self.store, audience) if self.store is not None else audience

    def rank(self, shop: Shop, campaign: Campaign, audience: Sequence[str],
             progress: ProgressHook | None) -> dict[str, list[RankedItem]]:
        """Each user's top items under the campaign's rules; the user's abandoned cart item first in a cart
        campaign (a user with none gets no item)."""
        rules = RankRules(k=campaign.top_k, campaign_type=None if campaign.type == AUTO else campaign.type,
                          only_item_ids=frozenset(campaign.item_ids) if campaign.item_ids else None)
        ranked = self.scorer.rank(shop, list(audience), rules, progress=progress is not None)
        if campaign.type != "abandoned_cart":
            return ranked
        items, carts = shop.items_by_id, _abandoned_cart_items(shop)
        out: dict[str, list[RankedItem]] = {}
        for uid in audience:
            if uid in carts and items[carts[uid]].in_stock:
                cart_item = items[carts[uid]]
                out[uid] = [RankedItem(cart_item, 1.0, 1, ["left in the cart"])] + [
                    r for r in ranked.get(uid, []) if r.item.item_id != cart_item.item_id][:campaign.top_k - 1]
        return out

    def prompt(self, shop: Shop, campaign: Campaign, audience: Sequence[str],
               ranked: dict[str, list[RankedItem]]) -> Plan:
        """Per user: the featured item's prompt, the facts its copy is held to (:func:`message_facts`), the
        generation request, and one :class:`UserMessage` per variant (one without items for an unranked user)."""
        plan = Plan()
        users = users_by_id(shop)
        for uid in audience:
            user, top = users[uid], list(ranked.get(uid, []))
            if not top:
                plan.messages.append(UserMessage(user=user, ranked=[], campaign_type=campaign.type, template="",
                                                 prompt=""))
                continue
            self._plan_user(plan, shop, campaign, user, top)
        return plan

    def _plan_user(self, plan: Plan, shop: Shop, campaign: Campaign, user: User, top: list[RankedItem]) -> None:
        locale = campaign.locale or user.locale
        ctype = campaign_type_for(campaign, top[0].item)
        template = campaign.template or self.prompts.resolve(ctype, locale)
        policy = policy_with_guidelines(campaign.policy, campaign.adapter, locale)  # or brand.yaml's
        facts = message_facts(self.prompts, template, items=[r.item for r in top], locale=locale,
                              campaign_type=ctype, brand=campaign.brand, facts=campaign.facts, policy=policy,
                              shop=shop)
        gen = self.generator_for(locale)
        adapter = adapter_for(campaign, locale)
        if adapter:
            gen.use_adapters([adapter])
        # an adapter learnt the brand from its past pushes and was trained without the example turns
        shared, own = prompt_parts(gen.tokenizer, facts.rendered, with_examples=adapter is None)
        link = deep_link(top[0].item, utm_source=campaign.utm_source, utm_campaign=campaign.name)
        for v in range(campaign.variants):
            plan.messages.append(UserMessage(user=user, ranked=top, campaign_type=ctype, template=template,
                                             prompt=shared + own, variant=v, deep_link=link, quoted=facts.quoted,
                                             adapter=adapter))
        plan.contexts[user.user_id] = facts.context
        plan.requests.append(GenerationRequest(key=user.user_id, prompt=own, prefix=shared, adapter=adapter))
        plan.model_of[user.user_id] = (gen, get_settings().language_max_new_tokens.get(language_of(locale)))

    def write_and_check(self, campaign: Campaign, plan: Plan, seed: int, progress: ProgressHook | None) -> None:
        """Rounds of writing and checking: every user's candidates are written (one run per model and token cap),
        scored, and checked in choosing order until ``variants`` pass; users short of that go again with fresh
        samples, up to ``retries`` times."""
        by_user = plan.by_user()
        n_cand = max(campaign.candidates, campaign.variants)
        pending = plan.requests
        for attempt in range(campaign.retries + 1):
            if not pending:
                break
            outputs = self.write(pending, plan, n_cand, seed + 1000 * attempt,
                                 _stage_hook(progress, "generating" if attempt == 0 else f"retry {attempt}",
                                             len(pending)))
            fresh: list[Candidate] = []
            for req in pending:
                cands = outputs[req.key]
                if attempt:  # a retry's greedy candidate repeats the first round's: keep the samples
                    cands = [c for c in cands if c.sampled]
                fresh.extend(cands)
                for m in by_user[req.key]:
                    m.candidates.extend(cands)
            self._score_ctr(fresh)  # one call for the round (the encoder works in batches), not one per user
            pending = self.check(pending, by_user, plan, campaign, last=attempt == campaign.retries)

    def check(self, pending: Sequence[GenerationRequest], by_user: dict[str, list[UserMessage]], plan: Plan,
              campaign: Campaign, *, last: bool) -> list[GenerationRequest]:
        """Each pending user's candidates checked in choosing order until ``variants`` pass (:meth:`_settle`),
        the users spread over ``check_processes`` forked processes (their verdicts come back here); after the
        ``last`` round, the fallback of each user still short, checked too (``plan.fallbacks``). The users still
        short."""
        def settle(req: GenerationRequest) -> tuple[int, list[tuple[int, list[dict[str, Any]]]], Candidate | None]:
            m, ctx = by_user[req.key][0], plan.contexts[req.key]
            unchecked = [i for i, c in enumerate(m.candidates) if not c.checked]
            passing = self._settle(m.candidates, ctx, campaign.variants)
            fallback = self._fallback(ctx) if last and passing < campaign.variants else None
            return passing, [(i, m.candidates[i].checks) for i in unchecked if m.candidates[i].checked], fallback

        short = []
        for req, (passing, verdicts, fallback) in zip(pending, forked_map(settle, pending, self.check_processes),
                                                      strict=True):
            cands = by_user[req.key][0].candidates
            for i, checks in verdicts:  # a forked process's verdicts (the same objects where checked here)
                cands[i].checks, cands[i].checked = checks, True
            if fallback is not None:
                plan.fallbacks[req.key] = fallback
            if passing < campaign.variants:
                short.append(req)
        return short

    def write(self, pending: Sequence[GenerationRequest], plan: Plan, n_cand: int, seed: int,
              advance: Callable[[int], None] | None) -> dict[str, list[Candidate]]:
        """One round of drafts for ``pending`` users, as candidates to check (keyed by user)."""
        outputs: dict[str, list[Candidate]] = {}
        for gen, limit in dict.fromkeys(plan.model_of[r.key] for r in pending):  # one run per model and cap
            mine = [r for r in pending if plan.model_of[r.key] == (gen, limit)]
            drafts = gen.generate(mine, n_candidates=n_cand, seed=seed, progress=advance, max_new_tokens=limit)
            outputs.update({r.key: [_agreed(Candidate.of(d), plan.contexts[r.key]) for d in o]
                            for r, o in zip(mine, drafts, strict=True)})
        return outputs

    def choose_copy(self, campaign: Campaign, plan: Plan) -> None:
        """Each variant's copy: the best remaining candidate not near another user's chosen copy, else the
        template-only fallback."""
        taken = NearDuplicates()  # copy chosen so far in this run, indexed
        for uid, ms in plan.by_user().items():
            if not ms[0].ranked:
                continue
            pool = list(ms[0].candidates)
            for m in ms:
                m.candidates = list(pool) if m.variant == 0 else []
                best = choose(pool, taken, verify=lambda c, ctx=plan.contexts[uid]: self._verify(c, ctx))
                if best is None or not best.passed:  # the fallback checked with the last round's, else now
                    m.chosen = plan.fallbacks.pop(uid, None) or self._fallback(plan.contexts[uid])
                    m.fallback = True
                else:
                    m.chosen = best
                    pool.remove(best)
                    taken.add(f"{best.title} {best.body}")

    def save(self, campaign: Campaign, plan: Plan, job_kind: str, job_id: str | None) -> str | None:
        """With a store: the messages, into ``job_id`` or into a job of their own (created here, then done)."""
        if self.store is None:
            return job_id
        own_job = job_id is None
        if own_job:
            models = ",".join(dict.fromkeys(g.model_name for g, _ in plan.model_of.values()))
            job = create_job(self.store, kind=job_kind, campaign_type=campaign.type,
                             template=campaign.template or AUTO, adapter=adapter_label(campaign),
                             locale=campaign.locale, status="running",
                             model=models or self.generator.model_name,
                             total=len(plan.messages), params=campaign.model_dump(mode="json"))
            job_id = job.id
        save_messages(self.store, job_id, message_records(plan.messages))
        if own_job:
            set_job_status(self.store, job_id, "done")
        return job_id


@dataclass
class Plan:
    """What the prompt stage decided, per user: messages (one per variant), guard contexts, generation requests,
    and the generator and token cap of each user's language; what checking adds: fallbacks."""

    messages: list[UserMessage] = field(default_factory=list)
    contexts: dict[str, GuardContext] = field(default_factory=dict)
    requests: list[GenerationRequest] = field(default_factory=list)
    model_of: dict[str, tuple[Generator, int | None]] = field(default_factory=dict)
    fallbacks: dict[str, Candidate] = field(default_factory=dict)
    """Users short of passing candidates after the last round: their fallback, checked (one variant's)."""

    def by_user(self) -> dict[str, list[UserMessage]]:
        out: dict[str, list[UserMessage]] = {}
        for m in self.messages:
            out.setdefault(m.user.user_id, []).append(m)
        return out


def _agreed(cand: Candidate, ctx: GuardContext) -> Candidate:
    """English copy's verb after a plural product name made plural ("The Bostitch Brads are $12.49") and a
    sentence that opens on a brandless name given its article; ``raw`` keeps what the model wrote."""
    if language_of(ctx.locale) == "en":
        names, subjects = memo(ctx, "agreement", lambda: _agreement_names(ctx))  # once per user, not per candidate
        cand.title, cand.body = plural_agreement(cand.title, names), plural_agreement(cand.body, names)
        cand.body = with_article(cand.body, subjects)
    return cand


def _agreement_names(ctx: GuardContext) -> tuple[list[str], list[tuple[str, str]]]:
    """The names :func:`_agreed` makes the verb agree with (the plural ones of the items' display names and
    titles: ``plural_agreement`` passes over the others), and the (display name, brand) pairs it may give an
    article (those ``with_article`` finds brandless)."""
    names = [t for it in ctx.items for t in (it.display_name, it.title)]
    pairs = [(it.display_name, it.brand) for it in ctx.items]
    return ([n for n in names if n and ends_plural(n)],
            [(n, b) for n, b in pairs if brandless(n, b) and n])


def _stage_hook(progress: ProgressHook | None, stage: str, total: int) -> Callable[[int], None] | None:
    """The generator's ``progress(n)`` as the runner's ``progress(stage, n, total)``."""
    if progress is None:
        return None
    progress(stage, 0, total)
    return lambda n: progress(stage, n, total)


def run_campaign(shop: Shop, campaign: Campaign, *, user_ids: Sequence[str] | None = None,
                 store: Store | None = None, generator: Generator | None = None, scorer: Scorer | None = None,
                 prompts: PromptLibrary | None = None, job_kind: str = "campaign",
                 progress: ProgressHook | None = None) -> tuple[str | None, list[UserMessage]]:
    """One-shot convenience over :class:`CampaignRunner`."""
    runner = CampaignRunner(generator=generator, scorer=scorer, prompts=prompts, store=store)
    return runner.run(shop, campaign, user_ids=user_ids, job_kind=job_kind, progress=progress)
