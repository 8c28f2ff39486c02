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

from ingest.state.schema import chunked, embeddings, projections, utcnow


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


def _insert_new(
    conn: sa.Connection, table: sa.Table, row: dict[str, Any], keys: list[sa.Column[Any]]
) -> None:
    """Insert ``row`` unless a row with its key exists (then leave that one), in one statement."""
    from sqlalchemy.dialects import postgresql, sqlite

    if conn.dialect.name in ("postgresql", "sqlite"):
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
        conn.execute(insert.on_conflict_do_nothing(index_elements=keys), [row])
        return
    try:
        with conn.begin_nested():
            conn.execute(table.insert().values(**row))
    except sa.exc.IntegrityError:
        pass


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

    def sample_cached_vectors(self, model_key: str, limit: int) -> np.ndarray:
        """Up to ``limit`` cached vectors of one model_key, as rows of a float32 matrix. The rows are
        the first by text hash: a sample as good as random, and the same one every time."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(embeddings.c.vector)
                .where(embeddings.c.model_key == model_key)
                .order_by(embeddings.c.text_hash)
                .limit(limit)
            ).all()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(r.vector, dtype=np.float32) for r in rows])

    def projection(self, fit_key: str) -> bytes | None:
        """The stored projection of ``fit_key`` (``embedder.reduce``), or None."""
        with self.engine.connect() as conn:
            data = conn.execute(
                sa.select(projections.c.data).where(projections.c.fit_key == fit_key)
            ).scalar_one_or_none()
        return None if data is None else bytes(data)

    def save_projection(self, fit_key: str, sha: str, data: bytes) -> bytes:
        """Keep a fitted projection; when another process stored one for ``fit_key`` first, that one
        is kept and returned, so every process of a crawl projects with the same matrix."""
        row = {"fit_key": fit_key, "sha": sha, "data": data, "created_at": utcnow()}
        with self.engine.begin() as conn:
            _insert_new(conn, projections, row, [projections.c.fit_key])
        stored = self.projection(fit_key)
        assert stored is not None  # just written, and projections are never deleted
        return stored
