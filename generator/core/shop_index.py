"""What a campaign derives from a whole shop, made once per shop instead of once per chunk or per user.

A worker runs many chunks of one job against the same loaded shop (:func:`generator.jobs.cached_shop`), and a
campaign renders a prompt per user: scanning a million events or every review for each of them is what made
ranking and prompt rendering slow at scale. :func:`per_shop` keeps the derived data while the shop's event and
review lists are the same objects of the same lengths (a changed shop is loaded as a new object).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from generator.core.data import Shop, User

T = TypeVar("T")
_DERIVED: OrderedDict[tuple[int, str], tuple[tuple[Any, ...], Any]] = OrderedDict()


def per_shop(shop: Shop, name: str, make: Callable[[], T]) -> T:
    """``make()``, made once per shop and ``name`` (a few shops are kept)."""
    key, stamp = (id(shop), name), (shop.events, len(shop.events), shop.reviews, len(shop.reviews))
    hit = _DERIVED.get(key)
    if hit is None or hit[0][0] is not stamp[0] or hit[0][2] is not stamp[2] or hit[0][1::2] != stamp[1::2]:
        hit = _DERIVED[key] = (stamp, make())
        while len(_DERIVED) > 16:
            _DERIVED.popitem(last=False)
    return hit[1]


_USERS: OrderedDict[int, tuple[list[User], int, frozenset[str], dict[str, User]]] = OrderedDict()


def user_ids_of(shop: Shop) -> frozenset[str]:
    """The ids of the shop's users, made once per shop while its user list is the same object of the same length
    (a few shops are kept)."""
    return _users(shop)[2]


def users_by_id(shop: Shop) -> Mapping[str, User]:
    """The shop's users by id (the last of a repeated id), made and kept as :func:`user_ids_of` is: a campaign asks
    for each chunk."""
    return _users(shop)[3]


def _users(shop: Shop) -> tuple[list[User], int, frozenset[str], dict[str, User]]:
    hit = _USERS.get(id(shop))
    if hit is None or hit[0] is not shop.users or hit[1] != len(shop.users):
        by_id = {u.user_id: u for u in shop.users}
        hit = _USERS[id(shop)] = (shop.users, len(shop.users), frozenset(by_id), by_id)
        while len(_USERS) > 16:
            _USERS.popitem(last=False)
    return hit


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
