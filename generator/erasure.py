"""Erasure of a user's personal data from the database (GDPR Art. 17), and the suppression list.

What an erasure leaves behind holds nothing that leads back to the person:

- their messages keep only counts-worthy facts (job, variant, template, adapter, timestamps) under a *random*
  id per job (``erased:<hex>``): copy, prompt, deep link, candidates, ranked items, item ids and guardrail
  reasons are blanked, and the message is ``erased`` for review (never approvable, editable or sendable, never
  listed as approved);
- their experiment assignments and sends keep their arm under a random id per experiment; a send's idempotency
  key (a plain hash of experiment and user id) is replaced by a random one, and the client's ids of its outcome
  events by keyed hashes;
- the user id is removed from jobs (``params``, an idempotency key that carries it), chunks (``user_ids``,
  ``error``); their device tokens are deleted;
- the erasure record and the suppression list keep only a *keyed* hash of the id (HMAC-SHA256 under a random
  key of this installation, kept in ``app_secrets``), so nobody without the database can test an id against
  them. The suppression list keeps an erased user out of every audience until :func:`restore_user`
  (the person signed up again and was imported anew);
- SQLite keeps old page images in its write-ahead log and deleted cells in free pages: after the erasure the
  database is VACUUMed and the log checkpointed and truncated (``secure_delete`` is on for every connection).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, cast, delete, select
from sqlalchemy.orm import Session

from generator.db.suppression import ERASED, PLACEHOLDER, installation_key, keyed
from generator.db.tables import DeviceToken, Erasure, Job, JobChunk, Message, Suppression
from generator.experiments import ab as experiments
from generator.review import erase_review_texts

if TYPE_CHECKING:
    from generator.db.store import Store

log = logging.getLogger(__name__)




# --- keyed references ---------------------------------------------------------------------------------------







# --- the suppression list -----------------------------------------------------------------------------------





# --- the erasure --------------------------------------------------------------------------------------------

def erase(store: Store, user_id: str, *, requested_by: str, counts: dict[str, int] | None = None) -> Erasure:
    """Erase ``user_id`` from the database in one transaction (see the module doc), then compact SQLite."""
    key = installation_key(store)
    ref = keyed(key, user_id)
    with store.session() as s:
        messages = _erase_messages(s, user_id)
        erase_review_texts(s, [m.id for m in messages])
        experiment_rows = experiments.pseudonymise_user(s, user_id, key)
        tokens = s.execute(delete(DeviceToken).where(DeviceToken.user_id == user_id)).rowcount
        scrubbed = _scrub_jobs(s, user_id) + _scrub_chunks(s, user_id)
        if s.get(Suppression, ref) is None:
            s.add(Suppression(user_ref=ref))
        record = Erasure(user_hash=ref, requested_by=requested_by,
                         counts={**(counts or {}), "messages": len(messages), "device_tokens": tokens,
                                 **({"experiment_rows": experiment_rows} if experiment_rows else {}),
                                 **({"job_rows": scrubbed} if scrubbed else {})})
        s.add(record)
    compact(store)
    return record


def _erase_messages(s: Session, user_id: str) -> list[Message]:
    rows = list(s.scalars(select(Message).where(Message.user_id == user_id)))
    pseudonyms: dict[str, str] = {}
    for m in rows:
        m.title = m.body = m.prompt = ""
        m.deep_link, m.ctr_score = None, None
        m.candidates, m.ranked_items, m.item_ids, m.guardrails = [], [], [], []
        m.user_id = pseudonyms.setdefault(m.job_id, ERASED + secrets.token_hex(16))  # one per job: unlinkable
        m.status = m.review_status = "erased"
    return rows


def _mentions(column: Any, user_id: str) -> Any:
    """Rows whose JSON/text column holds ``user_id`` (as JSON encodes it), for a cheap first filter."""
    return cast(column, Text).contains(json.dumps(user_id)[1:-1])


def _scrub(value: Any, user_id: str) -> Any:
    """``value`` with every string equal to ``user_id`` replaced by a placeholder (lists, dicts, nested)."""
    if isinstance(value, str):
        return PLACEHOLDER if value == user_id else value
    if isinstance(value, list):
        return [_scrub(v, user_id) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, user_id) for k, v in value.items()}
    return value


def _scrub_jobs(s: Session, user_id: str) -> int:
    n = 0
    for job in s.scalars(select(Job).where(_mentions(Job.params, user_id) | Job.idempotency_key.contains(user_id))):
        job.params = _scrub(job.params, user_id)
        if job.idempotency_key and user_id in job.idempotency_key:
            job.idempotency_key = ERASED + secrets.token_hex(16)
        n += 1
    return n


def _scrub_chunks(s: Session, user_id: str) -> int:
    n = 0
    for chunk in s.scalars(select(JobChunk).where(_mentions(JobChunk.user_ids, user_id)
                                                  | JobChunk.error.contains(user_id))):
        chunk.user_ids = [u for u in chunk.user_ids if u != user_id]  # a chunk never generates for them again
        if chunk.error:
            chunk.error = chunk.error.replace(user_id, PLACEHOLDER)
        n += 1
    return n


def compact(store: Store, attempts: int = 5) -> bool:
    """SQLite only: VACUUM (no freed page keeps old rows) and checkpoint the write-ahead log into the database
    and truncate it (no old page image stays in the log). Returns False if another connection kept the log
    busy through every attempt (the next erasure, or any checkpoint, finishes the job); PostgreSQL: True."""
    if store.engine.dialect.name != "sqlite":
        return True
    for attempt in range(attempts):
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                conn.exec_driver_sql("VACUUM")
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except Exception:  # noqa: BLE001 - locked by another process: try again shortly
                busy = 1
        if not busy:
            return True
        time.sleep(0.2 * (attempt + 1))
    log.warning("erasure: the SQLite write-ahead log is in use by another process; it is truncated at the "
                "next checkpoint")
    return False
