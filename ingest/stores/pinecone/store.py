"""The Pinecone store itself: setup, writes, reads and retries (see :mod:`ingest.stores.pinecone` for
where vectors go, the limits kept and the errors raised)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ingest.config import PineconeStoreConfig
from ingest.errors import (
    ConfigError,
    DimensionMismatchError,
    PermanentError,
    TransientError,
    WebvecError,
)
from ingest.sparse import SparseVector, encode_document
from ingest.stores.base import QueryHit, VectorRecord
from ingest.stores.pinecone.sdk import disable_sdk_retries, map_error, sdk, sdk_orjson
from ingest.stores.pinecone.wire import (
    LIST_PAGE_SIZE,
    MAX_DELETE_IDS,
    MAX_DIMENSION,
    MAX_TOP_K,
    METRICS,
    index_name_for,
    pack,
    query_filter,
    wire_record,
)
from ingest.vendor import (
    Backoff,
    RetryBudget,
    api_key_from_env,
    call_with_retries,
    fan_out,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class PineconeStore:
    """One namespace of one Pinecone serverless index (see :mod:`ingest.stores.pinecone`).

    The keyword arguments exist mostly so tests can keep delays small: ``retry_budget_s`` and
    ``request_timeout_s`` override ``store.retry_budget_s`` / ``store.timeout_s``; ``max_attempts``
    also caps the attempts of one request (default: only the budget does); ``backoff_*`` default to
    :meth:`Backoff.for_budget`; ``ready_*`` pace the wait for a new index.
    """

    def __init__(
        self,
        cfg: PineconeStoreConfig,
        name: str,
        *,
        retry_budget_s: float | None = None,
        max_attempts: int | None = None,
        backoff_initial_s: float | None = None,
        backoff_max_s: float | None = None,
        ready_timeout_s: float = 300.0,
        ready_poll_s: float = 1.0,
        request_timeout_s: float | None = None,
    ) -> None:
        if not name:
            raise ConfigError("a Pinecone namespace name is required")
        self.cfg = cfg
        self.namespace = name
        self.index_name = cfg.index or index_name_for(name)
        self._retry_budget_s = cfg.retry_budget_s if retry_budget_s is None else retry_budget_s
        self._max_attempts = max_attempts
        default = Backoff.for_budget(self._retry_budget_s)
        self._backoff = Backoff(
            initial_s=default.initial_s if backoff_initial_s is None else backoff_initial_s,
            max_s=default.max_s if backoff_max_s is None else backoff_max_s,
        )
        self._ready_timeout_s = ready_timeout_s
        self._ready_poll_s = ready_poll_s
        self._request_timeout_s = cfg.timeout_s if request_timeout_s is None else request_timeout_s
        self._lock = threading.RLock()
        self._pc: Any = None  # pinecone.Pinecone (control plane)
        self._index: Any = None  # pinecone.Index (data plane)
        self._dimension: int | None = None
        self._metric: str | None = None

    # -- setup -----------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """``pinecone:<control-plane host or 'cloud'>/<index>/<namespace>``."""
        where = urlsplit(self.cfg.host).netloc if self.cfg.host else "cloud"
        return f"pinecone:{where}/{self.index_name}/{self.namespace}"

    def check(self) -> None:
        """The SDK must be installed and ``$<store.api_key_env>`` set; no request is made."""
        sdk()
        self._api_key()

    def _api_key(self) -> str:
        return api_key_from_env(self.cfg.api_key_env, setting="store.api_key_env", vendor="Pinecone")

    def _control(self) -> Any:
        with self._lock:
            if self._pc is None:
                pc_mod = sdk()
                self._pc = pc_mod.Pinecone(
                    api_key=self._api_key(),
                    host=self.cfg.host or None,
                    timeout=self._request_timeout_s,
                    retry_config=pc_mod.RetryConfig(max_retries=0),
                    source_tag="webvec",
                )
            return self._pc

    def _describe(self) -> Any | None:
        """The index's IndexModel, or None when it does not exist."""
        pc_mod = sdk()

        def describe() -> Any | None:
            try:
                return self._control().indexes.describe(self.index_name)
            except pc_mod.NotFoundError:
                return None

        return self._call("describe index", describe)

    def ensure(self, dimension: int, metric: str = "cosine", labels: Mapping[str, str] | None = None) -> None:
        """Create the serverless index when missing and wait until it is ready; check an existing one.

        Raises DimensionMismatchError when the index exists with another dimension or metric, before
        anything is written. ``labels`` are not kept: every record's metadata names its model_key.
        """
        if metric not in METRICS:
            raise ConfigError(f"store.metric: {metric!r} is not one of {', '.join(METRICS)}")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise PermanentError(f"Pinecone dense vectors have 1-{MAX_DIMENSION} dimensions, not {dimension}")
        pc_mod = sdk()
        with self._lock:
            model = self._describe()
            if model is None:
                log.info("creating Pinecone index %s (%d, %s)", self.index_name, dimension, metric)

                def create() -> None:
                    # ConflictError: created meanwhile by another run; checked like any existing index.
                    with contextlib.suppress(pc_mod.ConflictError):
                        self._control().indexes.create(
                            name=self.index_name,
                            dimension=dimension,
                            metric=metric,
                            spec=pc_mod.ServerlessSpec(cloud=self.cfg.cloud, region=self.cfg.region),
                            timeout=-1,  # we poll below, at our own pace
                        )

                self._call("create index", create)
                model = self._describe()
                if model is None:
                    raise TransientError(f"Pinecone index {self.index_name!r} vanished right after creation")
            have_dim, have_metric = self._shape(model)
            if have_dim != dimension or have_metric != metric:
                raise DimensionMismatchError(
                    f"Pinecone index {self.index_name!r} holds {have_dim}-dimensional vectors with metric "
                    f"{have_metric!r}, but this crawl makes {dimension}-dimensional vectors with metric "
                    f"{metric!r}: set store.index to another index (or delete this one)"
                )
            model = self._wait_ready(model)
            self._open(model)

    def _shape(self, model: Any) -> tuple[int, str]:
        pc_mod = sdk()
        dense = [f for f in model.schema.fields.values() if isinstance(f, pc_mod.DenseVectorField)]
        if len(dense) != 1:
            raise PermanentError(
                f"Pinecone index {self.index_name!r} is not a plain dense-vector index "
                f"({len(dense)} dense vector fields): set store.index to another index"
            )
        return int(dense[0].dimension), str(dense[0].metric).lower()

    def _wait_ready(self, model: Any) -> Any:
        deadline = time.monotonic() + self._ready_timeout_s
        while not model.status.ready:
            if model.status.state in ("InitializationFailed", "Terminating", "Disabled"):
                raise PermanentError(f"Pinecone index {self.index_name!r} is {model.status.state}")
            if time.monotonic() > deadline:
                raise TransientError(
                    f"Pinecone index {self.index_name!r} not ready after {self._ready_timeout_s:.0f} s"
                )
            time.sleep(self._ready_poll_s)
            model = self._describe()
            if model is None:
                raise PermanentError(f"Pinecone index {self.index_name!r} was deleted while starting")
        return model

    def _open(self, model: Any) -> None:
        """Open the data-plane client on the index's host."""
        host = model.host
        if not host:
            raise TransientError(f"Pinecone index {self.index_name!r} has no host yet")
        if self.cfg.host and urlsplit(self.cfg.host).scheme == "http":
            host = "http://" + re.sub(r"^https?://", "", host)
        index = self._control().index(host=host)
        disable_sdk_retries(index)
        self._dimension, self._metric = self._shape(model)
        self._index = index

    def _data(self, required: bool = True) -> Any | None:
        """The data-plane client, opened on first use; None when the index does not exist and not
        ``required`` (an index that is not there holds no vectors)."""
        with self._lock:
            if self._index is None:
                model = self._describe()
                if model is None:
                    if not required:
                        return None
                    raise PermanentError(
                        f"Pinecone index {self.index_name!r} does not exist: ensure() creates it"
                    )
                self._open(self._wait_ready(model))
            return self._index

    def close(self) -> None:
        """Release HTTP connections (the store reopens them when used again)."""
        with self._lock:
            for client in (self._index, self._pc):
                if client is not None:
                    client.close()
            self._index = self._pc = None

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Upsert in requests of ≤1000 records and ≤2 MB, several in flight; returns records written.

        Records with the same id are written once (the last one wins).
        """
        if not records:
            return 0
        index: Any = self._data()  # required: never None
        orjson = sdk_orjson()
        unique = list({r.id: r for r in records}.values())
        scheme = self.cfg.sparse
        sized = [
            wire_record(
                r,
                orjson,
                dimension=self._dimension,
                index_name=self.index_name,
                # What the ledger's lexical index reads of a chunk: its heading path and its text.
                sparse=encode_document(
                    f"{r.metadata.get('heading', '')} {r.metadata.get('text', '')}", scheme
                ).as_dict()
                if scheme
                else None,
            )
            for r in unique
        ]
        batches = pack(sized, self.namespace, orjson)
        log.debug("upserting %d records to %s in %d requests", len(unique), self.target, len(batches))
        budget = self._budget()

        def send(batch: list[dict[str, Any]]) -> None:
            self._call(
                f"upsert of {len(batch)} records",
                lambda: index.upsert(vectors=batch, namespace=self.namespace),
                budget,
            )

        self._run_all(send, batches, budget)
        return len(unique)

    def _run_all(self, fn: Callable[[T], None], items: list[T], budget: RetryBudget) -> None:
        """``fn`` over ``items``, ``store.max_concurrency`` at a time; the first error stops the rest."""
        workers = self.cfg.max_concurrency
        fan_out(fn, items, max_workers=workers, cancel=budget.cancel, thread_name="webvec-pinecone")

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id, ≤1000 ids per request; unknown ids are ignored. Returns how many were asked."""
        if not ids:
            return 0
        index = self._data(required=False)
        if index is None:
            return len(ids)
        pc_mod = sdk()
        unique = list(dict.fromkeys(ids))
        batches = [unique[i : i + MAX_DELETE_IDS] for i in range(0, len(unique), MAX_DELETE_IDS)]
        budget = self._budget()

        def send(batch: list[str]) -> None:
            def op() -> None:
                with contextlib.suppress(pc_mod.NotFoundError):  # no such namespace: nothing to delete
                    index.delete(ids=batch, namespace=self.namespace)

            self._call(f"delete of {len(batch)} ids", op, budget)

        self._run_all(send, batches, budget)
        return len(ids)

    def drop(self) -> None:
        """Delete the namespace and every record in it (nothing happens when it does not exist)."""
        index = self._data(required=False)
        if index is None:
            return
        pc_mod = sdk()

        def op() -> None:
            try:
                index.delete_namespace(name=self.namespace)
                return
            except pc_mod.NotFoundError:
                pass  # no such namespace, or a server without namespace management (Pinecone Local)
            with contextlib.suppress(pc_mod.NotFoundError):
                index.delete(delete_all=True, namespace=self.namespace)

        self._call("drop namespace", op)

    # -- reads -----------------------------------------------------------------------------------

    def list_ids(self, prefix: str | None = None) -> list[str]:
        """All ids of the namespace (or those starting with ``prefix``), following list pagination."""
        index = self._data(required=False)
        if index is None:
            return []
        ids: list[str] = []
        token: str | None = None
        while True:
            page = self._call(
                "list ids",
                lambda token=token: index.list_paginated(  # type: ignore[misc]
                    prefix=prefix or None,
                    limit=LIST_PAGE_SIZE,
                    pagination_token=token,
                    namespace=self.namespace,
                ),
            )
            ids.extend(item.id for item in page.vectors if item.id)
            token = page.pagination.next if page.pagination is not None else None
            if not token:
                return ids

    @property
    def sparse(self) -> str | None:
        """The sparse scheme its records carry (``store.sparse``), if any: hybrid search is then one
        sparse-dense query (:meth:`hybrid_query`)."""
        return self.cfg.sparse

    def hybrid_query(
        self,
        vector: np.ndarray,
        sparse: SparseVector,
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        dense_weight: float = 0.5,
    ) -> list[QueryHit]:
        """One sparse-dense query: Pinecone scores ``dense·q_d + sparse·q_s``, so the two parts are
        weighted by scaling the query's (``dense_weight`` and ``1 - dense_weight``, Pinecone's convex
        combination); both parts are unit vectors, so each side's score is a cosine."""
        if not sparse.indices:  # no word to match: the dense part alone
            return self.query(vector, k, filter)
        weighted = SparseVector(sparse.indices, [v * (1 - dense_weight) for v in sparse.values])
        return self.query(np.asarray(vector, dtype=np.float64) * dense_weight, k, filter, weighted)

    def query(
        self,
        vector: np.ndarray,
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        sparse: SparseVector | None = None,
    ) -> list[QueryHit]:
        """The ``k`` nearest records with their metadata, closest first.

        ``score`` is Pinecone's similarity for cosine and dotproduct; for euclidean, where Pinecone
        returns the squared distance, it is minus that distance so that higher is closer.
        ``filter`` is an equality match (``{"field": value}``); a value that is already an operator
        expression (``{"$in": [...]}``) is passed through.
        """
        if k < 1:
            return []
        index = self._data(required=False)
        if index is None:
            return []
        values = np.asarray(vector, dtype=np.float64).ravel()
        if not values.any():
            raise PermanentError("the query vector is all zeros, which Pinecone rejects")
        pinecone_filter = query_filter(filter)
        result = self._call(
            "query",
            lambda: index.query(
                vector=values.tolist(),
                sparse_vector=sparse.as_dict() if sparse is not None else None,
                top_k=min(k, MAX_TOP_K),
                namespace=self.namespace,
                filter=pinecone_filter,
                include_metadata=True,
                include_values=False,
            ),
        )
        sign = -1.0 if self._metric == "euclidean" else 1.0
        return [QueryHit(m.id, sign * float(m.score), dict(m.metadata or {})) for m in result.matches]

    def count(self) -> int:
        """Records in the namespace, from describe_index_stats (0 when index or namespace is absent)."""
        index = self._data(required=False)
        if index is None:
            return 0
        stats = self._call("describe index stats", index.describe_index_stats)
        summary = stats.namespaces.get(self.namespace)
        return int(summary.vector_count) if summary is not None else 0

    # -- retries and error mapping ---------------------------------------------------------------

    def _budget(self) -> RetryBudget:
        return RetryBudget(self._retry_budget_s, setting="store.retry_budget_s")

    def _call(self, what: str, fn: Callable[[], T], budget: RetryBudget | None = None) -> T:
        """Run one request: transient failures retried within ``budget`` (a new one when not given:
        the operation is this one request), SDK errors mapped."""

        def attempt() -> T:
            try:
                return fn()
            except WebvecError:
                raise
            except Exception as exc:
                raise map_error(
                    f"Pinecone {what} ({self.index_name}/{self.namespace})", exc, self.cfg.api_key_env
                ) from exc

        return call_with_retries(
            attempt, budget or self._budget(), backoff=self._backoff, max_attempts=self._max_attempts
        )


def for_crawl(cfg: PineconeStoreConfig, crawl: str, version: int = 1) -> PineconeStore:
    """The store of one version of a crawl: namespace ``store.namespace`` (default: the crawl's name)
    in index ``store.index`` (default: derived from the namespace) for version 1; a Pinecone index has
    one dimension, so version N>1 (another model) uses the index ``<index>-vN``."""
    namespace = cfg.namespace or crawl
    index = cfg.index or index_name_for(namespace)
    if version > 1:
        index = f"{index[:40].rstrip('-')}-v{version}"
    return PineconeStore(cfg.model_copy(update={"index": index}), namespace)
