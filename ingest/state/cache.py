"""The embedding cache: (model_key, text_hash) → float32 vector, so a text is embedded once per model.

Runs of different crawls that share a ledger may cache the same text at the same time, so writes
are "insert, or leave the row that is there" (``replace``: "insert, or overwrite") in one statement,
never a read followed by an insert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.state.schema import chunked, embeddings, utcnow


def _upsert(conn: sa.Connection, rows: list[dict[str, Any]], replace: bool) -> None:
    """Insert rows, keeping (or with ``replace``, overwriting) rows whose key exists, atomically."""
    dialect = conn.dialect.name
    if dialect not in ("postgresql", "sqlite"):  # another database: row by row, losing races politely
        for row in rows:
            key = (embeddings.c.model_key == row["model_key"]) & (embeddings.c.text_hash == row["text_hash"])
            if replace:
                conn.execute(embeddings.delete().where(key))
            try:
                with conn.begin_nested():
                    conn.execute(embeddings.insert().values(**row))
            except sa.exc.IntegrityError:
                pass
        return
    # Imported here: the dialects cost a tenth of a second at start-up, and `webvec status` must be fast.
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert(embeddings) if dialect == "postgresql" else sqlite.insert(embeddings)
    keys = [embeddings.c.model_key, embeddings.c.text_hash]
    if replace:
        stmt = insert.on_conflict_do_update(
            index_elements=keys,
            set_={
                "dim": insert.excluded.dim,
                "vector": insert.excluded.vector,
                "created_at": insert.excluded.created_at,
            },
        )
    else:
        stmt = insert.on_conflict_do_nothing(index_elements=keys)
    conn.execute(stmt, rows)


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
        ]
        with self.engine.begin() as conn:
            for part in chunked(rows):
                _upsert(conn, part, replace)
