"""Run a campaign end to end: rank items per user, render prompts, generate in batches, check, store.

This is the one path every entry point uses (``pushgen demo``, ``pushgen generate``, the workers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from generator.data import Shop, User
from generator.errors import PushgenError
from generator.generate import Candidate, GenerationRequest, Generator
from generator.guardrails import CheckResult, GuardContext, run_checks
from generator.prompts import PromptLibrary, default_library, item_facts, prompt_parts
from generator.scorer import RankedItem, RankRules, Scorer
from generator.store import Store

log = logging.getLogger(__name__)
AUTO = "auto"


class Campaign(BaseModel):
    """What to send: the campaign type (``auto`` picks price_drop for discounted items, else a
    recommendation), template (default: by type and the user's locale), adapter, and candidates per user."""

    name: str = "demo"
    type: str = AUTO
    template: str | None = None
    adapter: str | None = None
    locale: str | None = None
    brand: str = "Northwind Home & Outdoor"
    candidates: int = Field(default=3, ge=1, le=16)
    top_k: int = Field(default=5, ge=1, le=50)
    utm_source: str = "push"


@dataclass
class UserMessage:
    """The outcome for one user: the chosen copy, every candidate, and what the scorer ranked."""

    user: User
    ranked: list[RankedItem]
    template: str
    prompt: str
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    deep_link: str = ""

    @property
    def status(self) -> str:
        return "passed" if self.chosen is not None and self.chosen.passed else "flagged"

    @property
    def reasons(self) -> list[str]:
        if self.chosen is None:
            return ["no candidate was generated"]
        return [f"{c['name']}: {c['reason']}" for c in self.chosen.checks if not c["passed"]]

    def as_record(self) -> dict[str, Any]:
        c = self.chosen
        return {
            "user_id": self.user.user_id,
            "variant": 0,
            "title": c.title if c else "",
            "body": c.body if c else "",
            "deep_link": self.deep_link,
            "item_ids": [r.item.item_id for r in self.ranked],
            "prompt": self.prompt,
            "template": self.template,
            "status": self.status,
            "guardrails": c.checks if c else [],
            "candidates": [{"title": x.title, "body": x.body, "sampled": x.sampled, "passed": x.passed,
                            "reasons": [f"{k['name']}: {k['reason']}" for k in x.checks if not k["passed"]]}
                           for x in self.candidates],
            "ranked_items": [r.to_dict() for r in self.ranked],
        }


def campaign_type_for(campaign: Campaign, featured: RankedItem) -> str:
    if campaign.type != AUTO:
        return campaign.type
    return "price_drop" if featured.item.discount_pct else "content_recommendation"


def _progress(enabled: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)


def choose(candidates: Sequence[Candidate]) -> Candidate | None:
    """The best candidate: passing ones first (by predicted click-through when known, else greedy first),
    then the one with the fewest failed checks."""
    if not candidates:
        return None
    order = sorted(range(len(candidates)), key=lambda i: (
        not candidates[i].passed,
        sum(not c["passed"] for c in candidates[i].checks),
        -(candidates[i].ctr or 0.0),
        i,
    ))
    return candidates[order[0]]


def run_campaign(shop: Shop, campaign: Campaign, *, user_ids: Sequence[str] | None = None,
                 store: Store | None = None, generator: Generator | None = None, scorer: Scorer | None = None,
                 prompts: PromptLibrary | None = None, job_kind: str = "campaign",
                 show_progress: bool = True) -> tuple[str | None, list[UserMessage]]:
    """Generate, check and (when ``store`` is given) store one message per user. Returns (job id, messages)."""
    users_by_id = {u.user_id: u for u in shop.users}
    if user_ids is None:
        user_ids = sorted(u.user_id for u in shop.users if u.push_opt_in)
    unknown = [u for u in user_ids if u not in users_by_id]
    if unknown:
        raise PushgenError(f"unknown user ids: {unknown[:5]}")
    prompts = prompts or default_library()
    t0 = time.perf_counter()
    scorer = scorer or Scorer.load(store=store)
    rules = RankRules(k=campaign.top_k, campaign_type=None if campaign.type == AUTO else campaign.type)
    ranked = scorer.rank(shop, list(user_ids), rules, progress=show_progress)
    generator = generator or Generator()

    messages: list[UserMessage] = []
    requests: list[GenerationRequest] = []
    for uid in user_ids:
        user, top = users_by_id[uid], ranked.get(uid, [])
        if not top:
            messages.append(UserMessage(user=user, ranked=[], template="", prompt=""))
            continue
        featured = top[0]
        locale = campaign.locale or user.locale
        template = campaign.template or prompts.resolve(campaign_type_for(campaign, featured), locale)
        rendered = prompts.render(template, brand=campaign.brand, item=item_facts(featured.item))
        shared, own = prompt_parts(generator.tokenizer, rendered)
        prompt = shared + own
        sep = "&" if "?" in featured.item.url else "?"
        link = f"{featured.item.url}{sep}utm_source={campaign.utm_source}&utm_campaign={campaign.name}"
        messages.append(UserMessage(user=user, ranked=top, template=template, prompt=prompt, deep_link=link))
        requests.append(GenerationRequest(key=uid, prompt=own, prefix=shared, adapter=campaign.adapter))

    with _progress(show_progress) as bar:
        task = bar.add_task("generating", total=len(requests))
        outputs = generator.generate(requests, n_candidates=campaign.candidates,
                                     progress=lambda n: bar.advance(task, n))
    by_user = {r.key: out for r, out in zip(requests, outputs, strict=True)}
    for m in messages:
        if not m.ranked:
            continue
        ctx = GuardContext(items=[r.item for r in m.ranked], locale=m.user.locale)
        m.candidates = by_user[m.user.user_id]
        for cand in m.candidates:
            results = run_checks(cand.title, cand.body, ctx)
            if not cand.finished:
                results.append(CheckResult("complete", False, "cut off at the generation length limit"))
            cand.checks = [r.as_dict() for r in results]
        m.chosen = choose(m.candidates)

    job_id = None
    if store is not None:
        job = store.create_job(kind=job_kind, campaign_type=campaign.type, template=campaign.template or AUTO,
                               adapter=campaign.adapter, locale=campaign.locale, model=generator.model_name,
                               status="running", total=len(messages), params=campaign.model_dump())
        store.save_messages(job.id, [m.as_record() for m in messages])
        store.set_job_status(job.id, "done")
        job_id = job.id
    passed = sum(m.status == "passed" for m in messages)
    log.info("campaign %s: %d users, %d passed, %.1f s", campaign.name, len(messages), passed,
             time.perf_counter() - t0)
    return job_id, messages


__all__ = ["Campaign", "UserMessage", "run_campaign", "choose"]
