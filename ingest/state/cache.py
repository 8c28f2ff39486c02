"""The embedding cache: (model_key, text_hash) → float32 vector, so a text is embedded once per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.state.schema import chunked, embeddings, utcnow


class CacheMixin:
    """Embedding cache (part of :class:`ingest.state.StateDB`)."""

    engine: Engine

    def cached_vectors(self, model_key: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the given text hashes under one model_key."""
        out: dict[str, np.ndarray] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(dict.fromkeys(text_hashes))):
                rows = conn.execute(
                    sa.select(embeddings.c.text_hash, embeddings.c.vector).where(
                        embeddings.c.model_key == model_key, embeddings.c.text_hash.in_(part)
                    )
                )
                for r in rows:
                    out[r.text_hash] = np.frombuffer(r.vector, dtype=np.float32)
        return out

    def cache_vectors(self, model_key: str, vectors: Mapping[str, np.ndarray], replace: bool = False) -> None:
        """Add vectors to the embedding cache (existing entries are kept unless ``replace``)."""
        if not vectors:
            return
        keys = list(vectors)
        with self.engine.begin() as conn:
            if replace:
                for part in chunked(keys):
                    conn.execute(
                        embeddings.delete().where(
                            embeddings.c.model_key == model_key, embeddings.c.text_hash.in_(part)
                        )
                    )
                have: set[str] = set()
            else:
                have = set()
                for part in chunked(keys):
                    have.update(
                        r.text_hash
                        for r in conn.execute(
                            sa.select(embeddings.c.text_hash).where(
                                embeddings.c.model_key == model_key, embeddings.c.text_hash.in_(part)
                            )
                        )
                    )
            now = utcnow()
            rows = [
                {
                    "model_key": model_key,
                    "text_hash": h,
                    "dim": int(v.shape[0]),
                    "vector": np.asarray(v, dtype=np.float32).tobytes(),
                    "created_at": now,
                }
                for h, v in vectors.items()
                if h not in have
            ]
            if rows:
                conn.execute(embeddings.insert(), rows)
