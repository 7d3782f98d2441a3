"""The one builder of a message's facts: the prompt its user's featured item renders, the shopper review it quotes,
and the :class:`~generator.check.guardrails.GuardContext` its copy is checked against. The campaign runner builds them
before writing; review rebuilds them from a stored message to re-check an edit; both call :func:`message_facts`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generator.check.brand import apply_to_prompt
from generator.check.guardrails import BrandPolicy, GuardContext
from generator.core.data import Item, Shop
from generator.core.shop_index import best_reviews
from generator.write.prompts import PromptLibrary, RenderedPrompt, generic_copy, item_facts


@dataclass
class MessageFacts:
    """What one user's message is written from and held to."""

    rendered: RenderedPrompt
    """The template rendered for the featured item, with the brand's guidelines in its system message."""
    declared: frozenset[str]
    """The variables the template uses (``review`` among them: the prompt quotes a shopper)."""
    context: GuardContext
    """What the copy may claim."""

    @property
    def quoted(self) -> list[str]:
        return list(self.context.quoted_texts)


def message_facts(prompts: PromptLibrary, template: str, *, items: Sequence[Item], locale: str,
                  campaign_type: str, brand: str, facts: Mapping[str, Any], policy: BrandPolicy,
                  shop: Shop | None) -> MessageFacts:
    """Render ``template`` for ``items[0]`` (the featured item) and build the guard context of copy about
    ``items``: the campaign's ``facts`` and ``policy`` (its guidelines already resolved), the best review of the
    featured item when the template quotes one, the template's example answers, the brand's template-only copy
    and the prompt's user turn. ``shop`` (None: gone) gives the review and the catalog."""
    featured = items[0]
    review = best_reviews(shop).get(featured.item_id) if shop is not None else None
    available = {"brand": brand, "item": item_facts(featured, locale), "campaign": facts, "review": review,
                 "campaign_type": campaign_type, "locale": locale}
    declared = frozenset(prompts.get(template).variables)
    rendered = apply_to_prompt(prompts.render(template, **{k: available.get(k) for k in declared}),
                               policy.guidelines, locale)
    quoted = [review] if review and "review" in declared else []
    context = GuardContext(items=list(items), locale=locale, facts=dict(facts),
                           catalog=shop.items if shop is not None else (), quoted_texts=quoted, policy=policy,
                           example_texts=[a for _, a in rendered.examples],
                           generic_texts=generic_copy(prompts, locale, campaign_type, featured, dict(facts)),
                           prompt_text=rendered.user, campaign_type=campaign_type)
    return MessageFacts(rendered, declared, context)
