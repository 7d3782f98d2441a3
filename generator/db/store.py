"""The database: an engine and its sessions, migrated by Alembic. SQLite by default, PostgreSQL via
PUSHGEN_DATABASE_URL.

The queries live beside it, one module per kind of row, each a set of functions taking the store:
:mod:`~generator.db.jobs`, :mod:`~generator.db.chunks`, :mod:`~generator.db.messages`,
:mod:`~generator.db.tokens`, :mod:`~generator.db.embeddings`, :mod:`~generator.db.suppression` (erased users and
erasure records); every table is in :mod:`generator.db.tables`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from generator.core.config import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free space (erasure)
    cur.close()


def json_text(value: Any) -> str:
    """The text of a JSON column's value, by orjson (compact UTF-8; a message's candidates and verdicts in a fifth
    of json.dumps's time). What orjson refuses, json.dumps writes (or refuses) as it did before: keys that are not
    strings, integers past 64 bits, and dataclasses and datetimes, which json.dumps refuses. NaN and infinities,
    which JSON has no word for, are written null (json.dumps wrote ``NaN``, which PostgreSQL refused)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except TypeError:
        return json.dumps(value)


class Store:
    """One database: its engine, transactions and migrations."""

    def __init__(self, url: str | None = None, *, migrate: bool = True):
        self.url = url or get_settings().database_url
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(self.url, future=True, pool_pre_ping=True, json_serializer=json_text)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as s:
            yield s
