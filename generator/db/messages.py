"""Queries of generated messages: save (idempotent), list, count.

Writes are keyed by ``(job_id, user_id, variant)``: writing the same message twice (a retried task, a redelivered
chunk) leaves one row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Column, Connection, Dialect, func, select
from sqlalchemy.orm import Session

from generator.db.store import Store
from generator.db.suppression import suppressed
from generator.db.tables import Message

MESSAGE_FIELDS = ("title", "body", "deep_link", "item_ids", "prompt", "template", "adapter", "status",
                  "guardrails", "candidates", "ranked_items", "ctr_score")


def save_messages(store: Store, job_id: str, messages: Iterable[dict[str, Any]]) -> int:
    """Insert or replace messages keyed by (job_id, user_id, variant) in one transaction; returns count.
    A message updates only the fields it has (the others keep their values, or their defaults when new). On
    SQLite and PostgreSQL the rows go in as batched ``INSERT .. ON CONFLICT DO UPDATE`` statements (one round
    trip per set of fields given, not a query and a write per message): on PostgreSQL by COPY. Users erased
    while their chunk ran are skipped (not counted)."""
    messages = list(messages)
    erased = suppressed(store, {m["user_id"] for m in messages})  # erased while their chunk ran
    messages = [m for m in messages if m["user_id"] not in erased]
    if store.engine.dialect.name in ("sqlite", "postgresql"):
        return _upsert(store, job_id, messages)
    with store.session() as s:
        _save_rows(s, job_id, messages)
    return len(messages)


def list_messages(store: Store, job_id: str, *, offset: int = 0, limit: int | None = None) -> list[Message]:
    """A job's messages by user and variant (a page of them with ``offset`` and ``limit``)."""
    with store.session() as s:
        q = select(Message).where(Message.job_id == job_id).order_by(Message.user_id, Message.variant)
        if offset:
            q = q.offset(offset)
        if limit is not None:
            q = q.limit(limit)
        return list(s.scalars(q))


def count_messages(store: Store, job_id: str) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Message).where(Message.job_id == job_id)) or 0)


def _save_rows(s: Session, job_id: str, messages: Iterable[dict[str, Any]]) -> None:
    """Insert or update messages one by one (a query and a write each)."""
    for m in messages:
        variant = int(m.get("variant", 0))
        row = s.scalar(select(Message).where(Message.job_id == job_id, Message.user_id == m["user_id"],
                                             Message.variant == variant))
        if row is None:
            row = Message(job_id=job_id, user_id=m["user_id"], variant=variant)
            s.add(row)
        for f in MESSAGE_FIELDS:
            if f in m:
                setattr(row, f, m[f])


def _upsert(store: Store, job_id: str, messages: Iterable[dict[str, Any]]) -> int:
    """``INSERT .. ON CONFLICT DO UPDATE`` of the fields given, one statement per set of fields: on PostgreSQL
    from a temporary table the rows are COPYed into, on SQLite one executemany."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}  # a message given twice: the later fields win, as before
    n = 0
    for m in messages:
        key = (m["user_id"], int(m.get("variant", 0)))
        rows.setdefault(key, {"job_id": job_id, "user_id": key[0], "variant": key[1]}).update(
            {f: m[f] for f in MESSAGE_FIELDS if f in m})
        n += 1
    by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows.values():
        by_fields.setdefault(tuple(row), []).append(row)
    required = {c.name for c in _TABLE.columns
                if not c.nullable and c.default is None and c.server_default is None and not c.primary_key}
    with store.session() as s:
        conn = s.connection()
        for fields, batch in by_fields.items():
            if not required <= set(fields):  # not insertable as given: update row by row, as before
                _save_rows(s, job_id, batch)
                continue
            columns, values = _insert_values(conn.dialect, fields, batch)
            if conn.dialect.name == "postgresql":
                _copy_upsert(conn, columns, fields, values)
            else:
                conn.exec_driver_sql(_upsert_sql(conn.dialect, columns, fields,
                                                 f"VALUES ({', '.join('?' * len(columns))})"), values)
    return n


_TABLE = Message.__table__
_KEY = ("job_id", "user_id", "variant")
_ABSENT = object()


def _insert_values(dialect: Dialect, fields: tuple[str, ...], batch: list[dict[str, Any]]
                   ) -> tuple[list[Column[Any]], list[tuple[Any, ...]]]:
    """The columns an insert of ``batch`` names (the fields given, then the others that have a default) and each
    row's values as the database takes them: what the ORM's bulk insert wrote (a field given None takes its
    column's default, save a JSON column's, which stores null; a column not given takes its default; each value
    converted by its type for ``dialect``: JSON to text by :func:`generator.db.store.json_text`, a time to SQLite's
    text)."""
    columns = [_TABLE.c[f] for f in fields]
    columns += [c for c in _TABLE.columns if c.name not in fields and c.default is not None]
    convert = [(c.name, _column_value(c, dialect)) for c in columns]
    return columns, [tuple(row[name] if f is None else f(row.get(name, _ABSENT)) for name, f in convert)
                     for row in batch]


def _column_value(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """One column's value as an insert writes it (see :func:`_insert_values`), from what was given (``_ABSENT`` for
    a column not given); None for a column that takes what was given as it is (no default, no conversion)."""
    default, keeps_none = column.default, column.type.should_evaluate_none
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if default is None and process is None:
        return None

    def value(v: Any) -> Any:
        if v is _ABSENT or (v is None and not keeps_none):
            v = None if default is None else default.arg(None) if default.is_callable else default.arg
        return v if process is None else process(v)

    return value


def _upsert_sql(dialect: Dialect, columns: Sequence[Column[Any]], fields: tuple[str, ...], rows: str) -> str:
    """``INSERT INTO messages (columns) <rows> ON CONFLICT (job, user, variant)`` updating the fields given."""
    q = dialect.identifier_preparer.quote
    updated = [q(f) for f in fields if f not in _KEY]
    action = f"DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in updated)}" if updated else "DO NOTHING"
    return (f"INSERT INTO {q(_TABLE.name)} ({', '.join(q(c.name) for c in columns)}) {rows} "
            f"ON CONFLICT ({', '.join(map(q, _KEY))}) {action}")


def _copy_upsert(conn: Connection, columns: Sequence[Column[Any]], fields: tuple[str, ...],
                 values: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: the rows COPYed (in their order, ``n``) into a temporary table of the columns' types, then
    inserted from it in one statement (COPY sends rows as a stream; an INSERT per row, even pipelined, costs the
    client a parse and a bind each)."""
    q = conn.dialect.identifier_preparer.quote
    names = ", ".join(q(c.name) for c in columns)
    with conn.connection.cursor() as cur:
        cur.execute(f"CREATE TEMPORARY TABLE messages_in ON COMMIT DROP AS "
                    f"SELECT {names}, 0 AS n FROM {q(_TABLE.name)} WITH NO DATA")
        with cur.copy(f"COPY messages_in ({names}, n) FROM STDIN") as copy:
            for i, row in enumerate(values):
                copy.write_row((*row, i))
        cur.execute(_upsert_sql(conn.dialect, columns, fields, f"SELECT {names} FROM messages_in ORDER BY n"))
        cur.execute("DROP TABLE messages_in")
