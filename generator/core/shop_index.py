"""What a campaign derives from a whole shop, made once per shop instead of once per chunk or per user.

A worker runs many chunks of one job against the same loaded shop (:func:`generator.jobs.cached_shop`), and a
campaign renders a prompt per user: scanning a million events or every review for each of them is what made
ranking and prompt rendering slow at scale. :func:`per_shop` keeps the derived data while the shop's lists it reads
(events and reviews, or users) are the same objects of the same lengths (a changed shop is loaded as a new object).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from generator.core.data import Shop, User

T = TypeVar("T")
_DERIVED: OrderedDict[tuple[int, str], tuple[list[Any], list[int], Any]] = OrderedDict()


def per_shop(shop: Shop, name: str, make: Callable[[], T], of: tuple[str, ...] = ("events", "reviews")) -> T:
    """``make()``, made once per shop and ``name`` while the shop's lists ``of`` (by default its events and reviews)
    are the same objects of the same lengths (a few shops are kept)."""
    key, lists = (id(shop), name), [getattr(shop, f) for f in of]
    hit = _DERIVED.get(key)
    if hit is None or any(a is not b for a, b in zip(hit[0], lists, strict=True)) \
            or hit[1] != [len(x) for x in lists]:
        hit = _DERIVED[key] = (lists, [len(x) for x in lists], make())
        while len(_DERIVED) > 16:
            _DERIVED.popitem(last=False)
    return hit[2]


def user_ids_of(shop: Shop) -> frozenset[str]:
    """The ids of the shop's users, made once per shop while its user list is the same object of the same length."""
    return _users(shop)[0]


def users_by_id(shop: Shop) -> Mapping[str, User]:
    """The shop's users by id (the last of a repeated id), made and kept as :func:`user_ids_of` is: a campaign asks
    for each chunk."""
    return _users(shop)[1]


def _users(shop: Shop) -> tuple[frozenset[str], dict[str, User]]:
    def make() -> tuple[frozenset[str], dict[str, User]]:
        by_id = {u.user_id: u for u in shop.users}
        return frozenset(by_id), by_id

    return per_shop(shop, "users", make, of=("users",))


def best_reviews(shop: Shop) -> dict[str, str]:
    """Per item, the text of its best-rated review (highest rating, then oldest, then by user id; the first in
    file order among equals): what the sorted scan of every review per item found."""
    def make() -> dict[str, str]:
        best: dict[str, tuple[tuple[Any, ...], str]] = {}
        for r in shop.reviews:
            if not r.text:
                continue
            key = (-r.rating, r.timestamp, r.user_id)
            if r.item_id not in best or key < best[r.item_id][0]:
                best[r.item_id] = (key, r.text)
        return {item_id: text for item_id, (_, text) in best.items()}

    return per_shop(shop, "best_reviews", make)
