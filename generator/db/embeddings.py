"""The embedding cache: item vectors (float32) by encoder and content hash, so a catalogue is encoded once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select

from generator.db.store import Store
from generator.db.tables import ItemEmbedding


def get_embeddings(store: Store, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
    """Cached vectors for those content hashes that have one (queried in chunks)."""
    out: dict[str, np.ndarray] = {}
    with store.session() as s:
        for i in range(0, len(hashes), 500):
            chunk = list(hashes[i:i + 500])
            q = select(ItemEmbedding).where(ItemEmbedding.model == model, ItemEmbedding.content_hash.in_(chunk))
            for row in s.scalars(q):
                out[row.content_hash] = np.frombuffer(row.vector, dtype=np.float32).copy()
    return out


def put_embeddings(store: Store, model: str, vectors: dict[str, np.ndarray]) -> None:
    """Store vectors (float32) by content hash; existing ones are left alone."""
    if not vectors:
        return
    have = get_embeddings(store, model, list(vectors))
    with store.session() as s:
        for h, v in vectors.items():
            if h not in have:
                v32 = np.asarray(v, dtype=np.float32)
                s.add(ItemEmbedding(model=model, content_hash=h, dim=int(v32.shape[-1]), vector=v32.tobytes()))
