"""A campaign as the campaign tool describes it, and the decisions that need no model: who gets it, which
adapter writes for a locale, what type a user's push is. Torch-free: the API and the job queue import only this."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from generator.check.guardrails import BrandPolicy
from generator.core.config import DEFAULT_BRAND
from generator.core.data import Item, Shop, language_of
from generator.core.errors import DataError, PushgenError
from generator.core.inputs import MAX_INT, STRICT, check_locale, check_value, load_yaml_mapping
from generator.core.payload import RichPush
from generator.core.shop_index import user_ids_of

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
    brand: str = Field(default=DEFAULT_BRAND, max_length=200)
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


def campaign_type_for(campaign: Campaign, featured: Item) -> str:
    """The campaign's type; for ``auto``, price_drop when the featured item is discounted, else
    content_recommendation."""
    if campaign.type != AUTO:
        return campaign.type
    return "price_drop" if featured.discount_pct else "content_recommendation"


def select_audience(shop: Shop, campaign: Campaign, user_ids: Sequence[str] | None = None) -> list[str]:
    """User ids to message: the given ones (or the campaign's), else opted-in users matching its filters."""
    given = user_ids if user_ids is not None else campaign.audience.user_ids
    if given is not None:  # explicit ids, even an empty list, are never widened to everyone
        ids, known = list(given), user_ids_of(shop)
        unknown = [u for u in ids if u not in known]
        if unknown:
            raise PushgenError(f"unknown user ids: {unknown[:5]}")
        return ids
    users = [u for u in shop.users if u.push_opt_in]
    if campaign.audience.locales:
        users = [u for u in users if u.locale in campaign.audience.locales]
    out = sorted(u.user_id for u in users)
    return out[:campaign.audience.limit] if campaign.audience.limit else out


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
