"""Deep links: the item's URL with the campaign's tracking parameters, built with :mod:`urllib.parse` (every
parameter percent-encoded, so campaign text can never add parameters or markup) and only to an allow-listed host
(``PUSHGEN_LINK_HOSTS``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from generator.core.config import get_settings
from generator.core.data import Item
from generator.core.errors import PushgenError
from generator.core.inputs import show

TRACKING = ("utm_source", "utm_campaign")


class LinkError(PushgenError):
    """An item's URL cannot become a deep link (not http(s), credentials in it, a host not allowed)."""


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """``host`` equals a pattern, or is a subdomain of a ``*.domain`` pattern (case-insensitive)."""
    host = host.lower().rstrip(".")
    for p in (p.lower().rstrip(".") for p in patterns):
        if host == p or (p.startswith("*.") and host.endswith(p[1:])):
            return True
    return False


def deep_link(item: Item, *, utm_source: str, utm_campaign: str, hosts: Sequence[str] | None = None) -> str:
    """``item.url`` with ``utm_source`` and ``utm_campaign`` set (replacing any the URL had), encoded."""
    hosts = get_settings().link_hosts if hosts is None else hosts
    return _deep_link(item.item_id, item.url, utm_source, utm_campaign, tuple(hosts))


@lru_cache(maxsize=1 << 14)  # a campaign links each of its items for thousands of users
def _deep_link(item_id: str, url: str, utm_source: str, utm_campaign: str, hosts: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise LinkError(f"item {show(item_id)}: url {show(url)!r} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise LinkError(f"item {show(item_id)}: url {show(url)!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise LinkError(f"item {show(item_id)}: url {show(url)!r} carries credentials")
    if not host_allowed(host, hosts):
        raise LinkError(f"item {show(item_id)}: link host {show(host)!r} is not allowed; add it to "
                        f"PUSHGEN_LINK_HOSTS (now {list(hosts)})")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in TRACKING]
    query += [("utm_source", utm_source), ("utm_campaign", utm_campaign)]
    path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")
    return urlunsplit((parts.scheme, parts.netloc.lower(), path, urlencode(query), quote(parts.fragment, safe="")))
