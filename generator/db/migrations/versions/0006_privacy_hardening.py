"""Privacy hardening: the suppression list (erased users, by keyed hash), server-side review sessions (revocable
on logout), and erasures made unlinkable after the fact: plain SHA-256 user hashes become keyed ones, the
uuid5(job/experiment + user) pseudonyms of erased messages, assignments and sends become random, and the
idempotency keys of erased sends (a plain hash of experiment and user id) random too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
KEY_NAME = "user_ref_key"  # generator.db.suppression.KEY_NAME


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("user_ref", sa.String(64), primary_key=True),  # keyed hash of the user id, never the id
        sa.Column("erased_at", TS, nullable=False),
    )
    op.create_table(
        "review_sessions",
        sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the session id the cookie carries
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    _rekey_erasures()


def _rekey_erasures() -> None:
    conn = op.get_bind()
    erasures = conn.execute(sa.text("SELECT id, user_hash FROM erasures")).fetchall()
    erased = {t: conn.execute(sa.text(f"SELECT {key} FROM {t} WHERE user_id LIKE 'erased:%'")).fetchall()
              for t, key in (("messages", "id"), ("experiment_assignments", "experiment_id, user_id"),
                             ("sends", "id"))}
    if not erasures and not any(erased.values()):
        return
    key = conn.execute(sa.text("SELECT value FROM app_secrets WHERE name = :n"), {"n": KEY_NAME}).scalar()
    if key is None:
        key = secrets.token_hex(32)
        conn.execute(sa.text("INSERT INTO app_secrets (name, value, created_at) VALUES (:n, :v, :t)"),
                     {"n": KEY_NAME, "v": key, "t": datetime.now(UTC)})
    for row_id, plain in erasures:  # generator.db.suppression.keyed: HMAC over the SHA-256 the record kept
        ref = hmac.new(key.encode(), plain.encode(), hashlib.sha256).hexdigest()
        conn.execute(sa.text("UPDATE erasures SET user_hash = :h WHERE id = :i"), {"h": ref, "i": row_id})
        if conn.execute(sa.text("SELECT 1 FROM suppressions WHERE user_ref = :h"), {"h": ref}).first() is None:
            conn.execute(sa.text("INSERT INTO suppressions (user_ref, erased_at) VALUES (:h, :t)"),
                         {"h": ref, "t": datetime.now(UTC)})
    for (message_id,) in erased["messages"]:
        conn.execute(sa.text("UPDATE messages SET user_id = :u, item_ids = '[]', ranked_items = '[]', "
                             "guardrails = '[]', review_status = 'erased' WHERE id = :i"),
                     {"u": f"erased:{uuid.uuid4().hex}", "i": message_id})
    for experiment_id, user_id in erased["experiment_assignments"]:
        conn.execute(sa.text("UPDATE experiment_assignments SET user_id = :u WHERE experiment_id = :e AND "
                             "user_id = :o"), {"u": f"erased:{uuid.uuid4().hex}", "e": experiment_id, "o": user_id})
    for (send_id,) in erased["sends"]:
        conn.execute(sa.text("UPDATE sends SET user_id = :u, idempotency_key = :k, provider_id = NULL, error = NULL "
                             "WHERE id = :i"),
                     {"u": f"erased:{uuid.uuid4().hex}", "k": f"erased:{uuid.uuid4().hex[:32]}", "i": send_id})


def downgrade() -> None:
    op.drop_table("review_sessions")
    op.drop_table("suppressions")
