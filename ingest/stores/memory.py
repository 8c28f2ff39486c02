"""An in-memory VectorStore for tests and experiments: ``store: {kind: memory}``. Not persistent.

Where vectors live
    In a registry in this process, keyed by the current ``$WEBVEC_HOME`` and the collection name:
    every :class:`MemoryStore` made with the same name under the same home shares one collection, so a
    run followed by a query in one process sees the vectors, while the ledger (also under
    ``$WEBVEC_HOME``) and the vectors never get out of step when the home changes (each test gets
    its own). Everything is gone when the process exits: the CLI runs each command in its own
    process, so ``webvec run`` then ``webvec query`` on a memory store finds nothing.

How strict it is
    At least as strict as the real stores, so that the fast tier catches what they would refuse:
    writes need :meth:`MemoryStore.ensure` first (like Chroma); vectors must have the collection's
    dimension, finite values, and not be all zeros (Pinecone refuses those); metadata values must be
    ``str``, ``int``, ``float`` or ``bool`` (the seam's :data:`~ingest.stores.base.MetadataValue`);
    ``ensure`` with another dimension or metric raises :class:`DimensionMismatchError`.

Scores (higher is closer)
    ``cosine``: cosine similarity (Chroma's 1 - cosine distance); ``dotproduct``: the dot product;
    ``euclidean``: minus the squared L2 distance, which is what Chroma's ``l2`` space and Pinecone's
    ``euclidean`` metric report, negated. Search is exact (brute force), ties broken by id.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ingest.config import MemoryStoreConfig, webvec_home
from ingest.errors import ConfigError, DimensionMismatchError, PermanentError
from ingest.stores.base import MetadataValue, QueryHit, VectorRecord

METRICS = ("cosine", "dotproduct", "euclidean")


@dataclass
class _Collection:
    """One named collection: its shape, and id → (vector, metadata)."""

    dimension: int
    metric: str
    vectors: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    metadata: dict[str, dict[str, MetadataValue]] = field(default_factory=dict)


# (resolved $WEBVEC_HOME, collection name) -> collection; one lock guards the registry and every
# collection, since flows may write from several threads.
_COLLECTIONS: dict[tuple[str, str], _Collection] = {}
_LOCK = threading.RLock()


def clear_memory_stores() -> None:
    """Forget every in-memory collection of this process."""
    with _LOCK:
        _COLLECTIONS.clear()


class MemoryStore:
    """One in-memory collection (see the module docstring); ``name`` defaults to the crawl's name."""

    def __init__(self, cfg: MemoryStoreConfig, name: str) -> None:
        if not name:
            raise ConfigError("a memory store collection name is required")
        self.cfg = cfg
        self.name = name
        self._key = (str(webvec_home()), name)

    @classmethod
    def for_crawl(cls, cfg: MemoryStoreConfig, crawl: str, version: int = 1) -> MemoryStore:
        """The collection of one version of a crawl: ``collection`` (default: the crawl's name), then
        ``<collection>__vN`` for version N>1 (as Chroma)."""
        name = cfg.collection or crawl
        return cls(cfg, name if version == 1 else f"{name}__v{version}")

    @property
    def target(self) -> str:
        """``memory:<collection>`` (in this process, under the current ``$WEBVEC_HOME``)."""
        return f"memory:{self.name}"

    def check(self) -> None:
        """Nothing can be missing: the memory store needs no package, server or key."""

    def _existing(self) -> _Collection | None:
        return _COLLECTIONS.get(self._key)

    def _collection(self) -> _Collection:
        coll = self._existing()
        if coll is None:
            raise PermanentError(f"memory collection {self.name!r} does not exist yet (nothing ingested)")
        return coll

    def ensure(self, dimension: int, metric: str = "cosine", labels: Mapping[str, str] | None = None) -> None:
        """Create the collection, or check that an existing one has this dimension and metric
        (``labels`` are not kept: nothing outside this process reads the collection)."""
        if metric not in METRICS:
            raise ConfigError(f"store.metric: {metric!r} is not one of {', '.join(METRICS)}")
        if dimension < 1:
            raise PermanentError(f"a vector needs at least 1 dimension, not {dimension}")
        with _LOCK:
            coll = self._existing()
            if coll is None:
                _COLLECTIONS[self._key] = _Collection(dimension, metric)
            elif (coll.dimension, coll.metric) != (dimension, metric):
                raise DimensionMismatchError(
                    f"memory collection {self.name!r} holds {coll.dimension}-dimensional vectors with "
                    f"metric {coll.metric!r}, the embedder makes {dimension}-dimensional vectors with "
                    f"metric {metric!r}: use another collection name or re-embed into a new version"
                )

    def _checked(self, record: VectorRecord, dimension: int) -> NDArray[np.float32]:
        vector = np.asarray(record.vector, dtype=np.float32).ravel()
        if vector.shape[0] != dimension:
            raise DimensionMismatchError(
                f"record {record.id!r} has {vector.shape[0]} dimensions, the collection {dimension}"
            )
        if not np.isfinite(vector).all():
            raise PermanentError(f"record {record.id!r} has non-finite values (NaN or inf)")
        if not vector.any():
            raise PermanentError(f"record {record.id!r} is an all-zero vector (Pinecone refuses those)")
        for key, value in record.metadata.items():
            if not isinstance(value, str | int | float | bool):
                raise PermanentError(
                    f"record {record.id!r}: metadata {key!r} is a {type(value).__name__}; "
                    "values must be str, int, float or bool"
                )
        return vector.copy()  # the caller may reuse its array

    def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Insert or replace records by id; every record is checked before any is written."""
        with _LOCK:
            coll = self._collection()
            checked = [(r, self._checked(r, coll.dimension)) for r in records]
            for record, vector in checked:
                coll.vectors[record.id] = vector
                coll.metadata[record.id] = dict(record.metadata)
        return len(records)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id; unknown ids (and a missing collection) are ignored. Returns ``len(ids)``."""
        with _LOCK:
            coll = self._existing()
            if coll is not None:
                for record_id in ids:
                    coll.vectors.pop(record_id, None)
                    coll.metadata.pop(record_id, None)
        return len(ids)

    def list_ids(self, prefix: str | None = None) -> list[str]:
        """Ids in sorted order, optionally only those starting with ``prefix``."""
        with _LOCK:
            coll = self._existing()
            ids = list(coll.vectors) if coll is not None else []
        return sorted(i for i in ids if not prefix or i.startswith(prefix))

    def query(
        self, vector: np.ndarray, k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[QueryHit]:
        """The ``k`` nearest records, closest first (exact search); ``filter`` is an equality match."""
        for key, value in (filter or {}).items():
            if isinstance(value, Mapping):
                raise PermanentError(f"memory store filters are equality matches; {key!r} has an operator")
        with _LOCK:
            coll = self._existing()
            if coll is None or k < 1:
                return []
            ids = sorted(
                i
                for i, meta in coll.metadata.items()
                if all(key in meta and meta[key] == want for key, want in (filter or {}).items())
            )
            if not ids:
                return []
            matrix = np.stack([coll.vectors[i] for i in ids]).astype(np.float64)
            metadata = [dict(coll.metadata[i]) for i in ids]
            metric, dimension = coll.metric, coll.dimension
        q = np.asarray(vector, dtype=np.float64).ravel()
        if q.shape[0] != dimension:
            raise DimensionMismatchError(
                f"query vector has {q.shape[0]} dimensions, the collection {dimension}"
            )
        scores = _scores(matrix, q, metric)
        # Stable sort on -score: equal scores keep the sorted-id order.
        order = np.argsort(-scores, kind="stable")[:k]
        return [QueryHit(ids[j], float(scores[j]), metadata[j]) for j in order]

    def count(self) -> int:
        """Number of records (0 when the collection does not exist)."""
        with _LOCK:
            coll = self._existing()
            return len(coll.vectors) if coll is not None else 0

    def drop(self) -> None:
        """Forget the collection and its records."""
        with _LOCK:
            _COLLECTIONS.pop(self._key, None)


def _scores(matrix: NDArray[np.float64], q: NDArray[np.float64], metric: str) -> NDArray[np.float64]:
    """Similarity of each row of ``matrix`` to ``q`` under ``metric`` (higher is closer)."""
    if metric == "euclidean":
        diff = matrix - q
        return -np.einsum("ij,ij->i", diff, diff)  # type: ignore[no-any-return]
    dots = matrix @ q
    if metric == "dotproduct":
        return dots
    q_norm = float(np.linalg.norm(q))
    if q_norm == 0.0:
        raise PermanentError("the query vector is all zeros: its cosine similarity is undefined")
    return dots / (np.linalg.norm(matrix, axis=1) * q_norm)  # type: ignore[no-any-return]
