"""Pinecone serverless adapter, over the REST client of the ``pinecone`` SDK (10.x).

Where vectors go
    The namespace is the ``name`` the caller passes. The index is ``store.index``; when that is unset
    it is derived from ``name`` by :func:`index_name_for` (lowercase, ``[a-z0-9-]``, at most 45
    characters, a hash suffix when shortened), so by default one crawl gets one index. Set
    ``store.index`` to share one index between crawls or versions; an index has one dimension and one
    metric, so :meth:`PineconeStore.ensure` raises :class:`DimensionMismatchError` before anything is
    written when they differ.

``store.host``
    Points the control plane elsewhere (Pinecone Local, a test server). The data-plane host still
    comes from ``describe``; since Pinecone answers it without a scheme and the SDK then assumes
    https, a plain-``http`` control plane makes the data plane plain http too.

Limits (Pinecone operation limits, docs.pinecone.io/reference/api/database-limits)
    Upserts are packed under both 1000 records and 2 MB of JSON per request (measured with the
    SDK's own encoder, orjson), and run ``store.max_concurrency`` at a time. Metadata is kept under
    40 KB per record by shortening ``text`` (and setting ``text_trimmed: true``). Deletes go 1000 ids
    per request. All-zero vectors are refused before sending: Pinecone rejects them.

Errors
    One retry layer, :func:`ingest.vendor.call_with_retries` (the same as the OpenAI embedder's):
    429, 408, 5xx, timeouts and dropped connections are retried with jittered exponential backoff
    within one budget of ``store.retry_budget_s`` seconds per operation (one ``upsert`` of many
    requests shares one), then :class:`TransientError`. A ``Retry-After`` is honoured as asked, with
    no cap; when it asks for more than is left of the budget, the operation gives up at once with a
    TransientError saying so. 400/401/403/404/413 become :class:`PermanentError` at once. The SDK's
    own retries are switched off so that budgets do not multiply. Each request may take
    ``store.timeout_s``. The API key is read from ``store.api_key_env`` and never appears in
    messages, logs or :attr:`PineconeStore.target`; server messages are scrubbed of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
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
from ingest.stores.base import QueryHit, VectorRecord
from ingest.vendor import (
    Backoff,
    RetryBudget,
    api_key_from_env,
    call_with_retries,
    env_secret,
    fan_out,
    import_extra,
    retry_after_from_headers,
    scrub,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Pinecone operation limits (docs.pinecone.io/reference/api/database-limits/operation-limits).
MAX_UPSERT_RECORDS = 1000  # records per upsert request
MAX_REQUEST_BYTES = 2_000_000  # "2 MB" per upsert request; the decimal reading is the stricter one
MAX_METADATA_BYTES = 40_000  # "40 KB" of metadata per record (Pinecone counts 40960); kept below
MAX_DELETE_IDS = 1000  # ids per delete request
MAX_ID_LENGTH = 512  # record ids are 1-512 characters
MAX_TOP_K = 10_000  # query top_k
MAX_DIMENSION = 20_000  # dense vectors
LIST_PAGE_SIZE = 100  # ids per list page (Pinecone's maximum)
MAX_INDEX_NAME = 45  # index names: lowercase letters, digits, '-'
METRICS = ("cosine", "dotproduct", "euclidean")

_INDEX_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?$")


def index_name_for(name: str) -> str:
    """A valid Pinecone index name derived from ``name`` (used when ``store.index`` is unset).

    Lowercased, characters outside ``[a-z0-9-]`` become ``-``, ends trimmed of ``-``; a name still too
    long is cut to 36 characters plus ``-`` and 8 hex digits of its SHA-256, so distinct long names
    stay distinct.
    """
    clean = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    if len(clean) > MAX_INDEX_NAME:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
        clean = f"{clean[:36].rstrip('-')}-{digest}"
    if not _INDEX_NAME_RE.match(clean):
        raise ConfigError(f"cannot derive a Pinecone index name from {name!r}: set store.index")
    return clean


class PineconeStore:
    """One namespace of one Pinecone serverless index (see the module docstring).

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
        _sdk()
        self._api_key()

    def _api_key(self) -> str:
        return api_key_from_env(self.cfg.api_key_env, setting="store.api_key_env", vendor="Pinecone")

    def _control(self) -> Any:
        with self._lock:
            if self._pc is None:
                pc_mod = _sdk()
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
        pc_mod = _sdk()

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
        pc_mod = _sdk()
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
        pc_mod = _sdk()
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
        _disable_sdk_retries(index)
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
        orjson = _orjson()
        unique = list({r.id: r for r in records}.values())
        sized = [self._wire_record(r, orjson) for r in unique]
        batches = self._pack(sized, orjson)
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

    def _wire_record(self, record: VectorRecord, orjson: Any) -> tuple[dict[str, Any], int]:
        """The record as the SDK sends it, and its JSON size in bytes."""
        if not record.id or len(record.id) > MAX_ID_LENGTH:
            raise PermanentError(
                f"record id {record.id[:80]!r}: Pinecone ids are 1-{MAX_ID_LENGTH} characters"
            )
        vector = np.asarray(record.vector)
        if vector.ndim != 1:
            raise PermanentError(f"record {record.id!r}: a 1-D vector is expected, got shape {vector.shape}")
        if self._dimension is not None and vector.shape[0] != self._dimension:
            raise DimensionMismatchError(
                f"record {record.id!r} has {vector.shape[0]} dimensions, Pinecone index "
                f"{self.index_name!r} has {self._dimension}"
            )
        if not np.isfinite(vector).all():
            raise PermanentError(f"record {record.id!r}: the vector holds NaN or infinity")
        if not vector.any():
            raise PermanentError(
                f"record {record.id!r}: the vector is all zeros, which Pinecone rejects "
                "(dense vectors need a non-zero value)"
            )
        item: dict[str, Any] = {"id": record.id, "values": vector.tolist()}
        metadata = self._metadata(record, orjson)
        if metadata:
            item["metadata"] = metadata
        return item, len(orjson.dumps(item))

    def _metadata(self, record: VectorRecord, orjson: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        for key, value in record.metadata.items():
            if isinstance(value, np.generic):
                value = value.item()
            if value is None:
                continue  # Pinecone does not store nulls
            if not isinstance(value, str | bool | int | float):
                raise PermanentError(
                    f"record {record.id!r}: metadata {key!r} is a {type(value).__name__}; "
                    "Pinecone metadata values here are str, int, float or bool"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise PermanentError(f"record {record.id!r}: metadata {key!r} is {value}")
            meta[key] = value
        size = len(orjson.dumps(meta))
        if size <= MAX_METADATA_BYTES:
            return meta
        text = meta.get("text")
        trimmed = {**meta, "text": "", "text_trimmed": True}
        budget = MAX_METADATA_BYTES - len(orjson.dumps(trimmed)) + 2  # bytes for the quoted text
        if not isinstance(text, str) or budget <= 2:
            raise PermanentError(
                f"record {record.id!r}: metadata is {size} bytes, over Pinecone's 40 KB per record, "
                "and shortening its text cannot fix that"
            )
        # Longest prefix whose JSON (escapes included) fits: a binary search over characters.
        lo, hi = 0, min(len(text), budget)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(orjson.dumps(text[:mid])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        trimmed["text"] = text[:lo]
        log.info("record %s: metadata of %d bytes trimmed to fit Pinecone's 40 KB", record.id, size)
        return trimmed

    def _pack(self, sized: list[tuple[dict[str, Any], int]], orjson: Any) -> list[list[dict[str, Any]]]:
        """Greedy packing under MAX_UPSERT_RECORDS and MAX_REQUEST_BYTES of request body."""
        envelope = len(orjson.dumps({"vectors": [], "namespace": self.namespace}))
        batches: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        used = envelope
        for item, size in sized:
            if envelope + size > MAX_REQUEST_BYTES:
                raise PermanentError(
                    f"record {item['id']!r} alone is {size} bytes, over Pinecone's 2 MB per request"
                )
            extra = size + (1 if current else 0)  # the comma between records
            if current and (len(current) >= MAX_UPSERT_RECORDS or used + extra > MAX_REQUEST_BYTES):
                batches.append(current)
                current, used, extra = [], envelope, size
            current.append(item)
            used += extra
        if current:
            batches.append(current)
        return batches

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
        pc_mod = _sdk()
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
        pc_mod = _sdk()

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

    def query(
        self, vector: np.ndarray, k: int = 5, filter: Mapping[str, Any] | None = None
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
        pinecone_filter = _filter(filter)
        result = self._call(
            "query",
            lambda: index.query(
                vector=values.tolist(),
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
                raise self._map_error(what, exc) from exc

        return call_with_retries(
            attempt, budget or self._budget(), backoff=self._backoff, max_attempts=self._max_attempts
        )

    def _map_error(self, what: str, exc: Exception) -> WebvecError:
        """One WebvecError for an SDK (or transport) exception; the message never holds the key."""
        pc_mod = _sdk()
        where = f"Pinecone {what} ({self.index_name}/{self.namespace})"
        status = getattr(exc, "status_code", None)
        text = str(getattr(exc, "message", None) or exc)
        message = self._scrub(text.splitlines()[0] if text else "")
        if isinstance(exc, pc_mod.PineconeTimeoutError | pc_mod.PineconeConnectionError):
            return TransientError(f"{where}: {type(exc).__name__}: {message}")
        if isinstance(status, int):
            # The SDK parses only a Retry-After in seconds; the shared parser also reads HTTP dates.
            headers = getattr(exc, "headers", None)
            retry_after = retry_after_from_headers(headers if isinstance(headers, Mapping) else None)
            if retry_after is None:
                retry_after = getattr(exc, "retry_after", None)
            if status == 429:
                return TransientError(f"{where}: rate limited (429): {message}", retry_after=retry_after)
            if status == 408 or status >= 500:
                return TransientError(f"{where}: server error {status}: {message}", retry_after=retry_after)
            if status == 401:
                return PermanentError(
                    f"{where}: 401 unauthorized: the API key in ${self.cfg.api_key_env} was rejected"
                )
            if status == 403:
                return PermanentError(
                    f"{where}: 403 forbidden (quota, deletion protection or key scope): {message}"
                )
            if status == 404:
                return PermanentError(f"{where}: 404 not found: {message}")
            return PermanentError(f"{where}: {status}: {message}")
        if isinstance(exc, pc_mod.PineconeError):
            return PermanentError(f"{where}: {type(exc).__name__}: {message}")
        return PermanentError(f"{where}: unexpected {type(exc).__name__}: {message}")

    def _scrub(self, text: str) -> str:
        return scrub(text, env_secret(self.cfg.api_key_env))


def _filter(flt: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{"a": 1, "b": "x"}`` → ``{"$and": [{"a": {"$eq": 1}}, {"b": {"$eq": "x"}}]}``."""
    if not flt:
        return None
    clauses = [
        {key: dict(value) if isinstance(value, Mapping) else {"$eq": value}} for key, value in flt.items()
    ]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _sdk() -> Any:
    return import_extra("pinecone", "pinecone")


def _orjson() -> Any:
    # The SDK encodes request bodies with orjson (a dependency of pinecone 10); measuring with the
    # same encoder makes the 2 MB packing exact.
    return import_extra("orjson", "pinecone")


def _disable_sdk_retries(index: Any) -> None:
    """Give the REST Index an HTTP client that does not retry.

    The SDK's REST Index takes no retry policy (10.x): its transport retries 429/5xx on its own, up to
    3 times with jitter up to 60 s, under a process-wide budget. Stacked under our retries that would
    multiply attempts and make the budget meaningless, so the client is rebuilt with max_retries=0 using
    the SDK's own HTTPClient and config. Private names: if they move, the SDK's retries simply stay.
    """
    try:
        from pinecone import RetryConfig
        from pinecone._internal.constants import DATA_PLANE_API_VERSION
        from pinecone._internal.http_client import HTTPClient

        config = dataclasses.replace(index._config, retry_config=RetryConfig(max_retries=0))
        old = index._http
        index._http = HTTPClient(config, DATA_PLANE_API_VERSION)
        old.close()
    except (ImportError, AttributeError, TypeError) as exc:
        log.debug("could not switch off the Pinecone SDK's own retries: %s", type(exc).__name__)


def for_crawl(cfg: PineconeStoreConfig, crawl: str, version: int = 1) -> PineconeStore:
    """The store of one version of a crawl: namespace ``store.namespace`` (default: the crawl's name)
    in index ``store.index`` (default: derived from the namespace) for version 1; a Pinecone index has
    one dimension, so version N>1 (another model) uses the index ``<index>-vN``."""
    namespace = cfg.namespace or crawl
    index = cfg.index or index_name_for(namespace)
    if version > 1:
        index = f"{index[:40].rstrip('-')}-v{version}"
    return PineconeStore(cfg.model_copy(update={"index": index}), namespace)
