"""The process's :class:`~generator.db.store.Store` per database URL, shared by its Celery tasks."""

from __future__ import annotations

from generator.core.config import get_settings
from generator.db.store import Store

_STORES: dict[str, Store] = {}


def store() -> Store:
    url = get_settings().database_url
    if url not in _STORES:
        _STORES[url] = Store(url)
    return _STORES[url]
