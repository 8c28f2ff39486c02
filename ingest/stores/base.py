"""The VectorStore seam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: the embedded engine's own refusal is the only check there
    fcntl = None  # type: ignore[assignment]

MetadataValue = str | int | float | bool


@dataclass(frozen=True)
class VectorRecord:
    """One vector to write: deterministic id, values, flat metadata (the chunk text under ``text``)."""

    id: str
    vector: np.ndarray
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryHit:
    """One query result; ``score`` is a similarity (higher is closer)."""

    id: str
    score: float
    metadata: Mapping[str, Any]


@runtime_checkable
class VectorStore(Protocol):
    """A vector collection/namespace. Implementations are registered by ``store.kind``.

    Every write is an upsert by deterministic id, so repeating a batch after a crash converges.
    """

    @property
    def target(self) -> str:
        """Stable description of where vectors go (kind, location, collection/namespace); no secrets."""
        ...

    def check(self) -> None:
        """Fail fast, before any crawl, when the store cannot work (missing key, missing extra)."""
        ...

    def ensure(self, dimension: int, metric: str = "cosine", labels: Mapping[str, str] | None = None) -> None:
        """Create the collection/index when missing; DimensionMismatchError if it exists otherwise.

        ``labels`` describe the vectors (``webvec_model``, ``webvec_model_key``...); stores that keep
        collection metadata record them, so a client knows how to embed its queries."""
        ...

    def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Write records (batched to the vendor's limits); returns how many were written."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id (missing ids are ignored); returns how many ids were asked for."""
        ...

    def list_ids(self, prefix: str | None = None) -> list[str]:
        """Ids in the store, optionally only those starting with ``prefix`` (a page's ``doc_id#``)."""
        ...

    def query(
        self, vector: np.ndarray, k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[QueryHit]:
        """The ``k`` nearest records, closest first; ``filter`` is an equality match on metadata."""
        ...

    def count(self) -> int:
        """Number of records."""
        ...

    def drop(self) -> None:
        """Remove the whole collection/namespace (used when pruning old versions)."""
        ...


def lock_free(lock: Path) -> bool:
    """Whether no other process holds an flock on the file ``lock`` (an embedded engine's lock:
    Qdrant local mode's ``.lock``, Milvus Lite's ``LOCK``); True when there is no such file. Asked
    before opening, because a refused open leaves files open or logs a traceback."""
    if fcntl is None or not lock.is_file():
        return True
    with lock.open("r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True
