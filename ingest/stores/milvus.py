"""Milvus adapter over pymilvus' ``MilvusClient``: Milvus Lite (a local ``.db``, in this process) by
default, a Milvus server when ``store.uri`` is http(s). Both go through the same :class:`MilvusStore`.

Where vectors go
    ``store.uri`` (default ``$WEBVEC_HOME/milvus.db``; :attr:`MilvusStore.target` records a file under
    $WEBVEC_HOME relative to it), collection ``store.collection`` for version 1 of a crawl and
    ``<collection>__vN`` for later versions. Milvus names hold only letters, digits and ``_``: the
    default collection, the crawl's name, has ``-`` and ``.`` mapped to ``_`` plus 8 hex digits of the
    name's SHA-256 so that ``a-b`` and ``a_b`` stay apart (:func:`collection_name_for`).

Schema (one collection per version)
    ``id`` VARCHAR(512) primary key holding the webvec id itself, ``doc_id`` VARCHAR(512), ``vector``
    FLOAT_VECTOR(dimension), ``text`` VARCHAR(65535) and ``metadata`` JSON (every other metadata key).
    The vector index is ``store.index_type`` (AUTOINDEX by default) with metric COSINE, IP or L2; the
    metric and the labels of :meth:`MilvusStore.ensure` are collection properties. Listing a page's ids
    is the filter ``doc_id == "…"``; another prefix is ``id like "…%"`` (checked again on the client);
    string literals are escaped (``\\`` and ``"``).

Limits (milvus.io/docs/limitations.md and use-json-fields.md)
    A VARCHAR holds at most 65,535 bytes (Milvus counts UTF-8 bytes): a longer ``text`` is shortened
    and ``text_trimmed: true`` is set in its metadata, as the Pinecone adapter does. JSON values are at
    most 65,536 bytes, vectors at most 32,768 dimensions, one request at most 64 MB (upserts are
    packed under a quarter of it), ``limit`` + ``offset`` of a query at most 16,384 (longer listings
    use a query iterator).

Milvus Lite
    One process per ``.db``: Milvus Lite locks its file, so another process holding it is a
    :class:`TransientError` saying so (use a Milvus server for concurrent access). In this process
    every store of one file shares pymilvus' one Milvus Lite instance, released by
    :meth:`MilvusStore.close` once the last store of that file closes. Every upsert and delete is
    flushed (Milvus Lite scans unflushed rows on every read: ~10x slower reads without). Counting uses
    ``count(*)`` with strong consistency, which sees unflushed writes on a server too (collection
    statistics would need a flush first).

Errors
    Requests go through :func:`ingest.vendor.call_with_retries` within one budget of
    ``store.retry_budget_s`` per operation: rate limits, unavailable servers, deadlines and dropped
    connections are retried, then raise :class:`TransientError`; everything else is
    :class:`PermanentError` at once. pymilvus' own retries on rate limits are switched off; it still
    re-sends a request whose connection failed, but only within that request's ``store.timeout_s``.
    The token comes from ``store.token_env`` and is scrubbed from every message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ingest.config import MilvusStoreConfig, webvec_home
from ingest.config.store import MILVUS_COLLECTION_RE
from ingest.errors import (
    ConfigError,
    DimensionMismatchError,
    PermanentError,
    TransientError,
    WebvecError,
)
from ingest.paths import home_relative
from ingest.stores.base import QueryHit, VectorRecord, lock_free
from ingest.vendor import (
    Backoff,
    RetryBudget,
    api_key_from_env,
    call_with_retries,
    env_secret,
    import_extra,
    scrub,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

METRICS = ("cosine", "dotproduct", "euclidean")
_METRIC_TYPES = {"cosine": "COSINE", "dotproduct": "IP", "euclidean": "L2"}
# Milvus limits (milvus.io/docs/limitations.md, milvus.io/docs/use-json-fields.md).
MAX_NAME = 255  # collection names
MAX_VARCHAR_BYTES = 65_535  # a VARCHAR field's largest max_length, counted in UTF-8 bytes
MAX_JSON_BYTES = 65_536  # a JSON field's value
MAX_DIMENSION = 32_768
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # one insert/upsert/search/query RPC
MAX_QUERY_WINDOW = 16_384  # limit + offset of one query, top-k of one search
# webvec's own choices: ids are "{doc_id}#{hash}" (well under 512); requests stay far below the limits.
MAX_ID_BYTES = 512
MAX_UPSERT_ROWS = 1000
MAX_DELETE_IDS = 1000  # one `id in [...]` expression
LIST_PAGE_SIZE = 5000  # ids per query-iterator page
FIELDS = ("id", "doc_id", "vector", "text", "metadata")

# A whole collection name, "__vN" included (store.collection itself is kept shorter to leave room).
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_AUTH_WORDS = ("authenticat", "unauthori", "permission denied", "credential")
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"}
_AUTH_GRPC = {"UNAUTHENTICATED", "PERMISSION_DENIED"}


def collection_name_for(name: str) -> str:
    """A valid Milvus collection name for a crawl's name: itself when valid; else ``-``, ``.`` and any
    other character outside ``[A-Za-z0-9_]`` become ``_``, a leading digit gets a ``_`` before it, and
    ``_`` plus 8 hex digits of the name's SHA-256 follow, so that distinct names stay distinct."""
    if MILVUS_COLLECTION_RE.match(name):
        return name
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name)[:200]
    if not clean or not (clean[0].isalpha() or clean[0] == "_"):
        clean = "_" + clean
    mapped = f"{clean}_{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"
    if not MILVUS_COLLECTION_RE.match(mapped):  # only ASCII letters pass; isalpha() accepts more
        raise ConfigError(f"cannot derive a Milvus collection name from {name!r}: set store.collection")
    return mapped


def quote(value: str) -> str:
    """A Milvus expression string literal: double-quoted, ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    raise PermanentError(f"query filter value {value!r}: str, int, float or bool expected")


def filter_expression(flt: Mapping[str, Any] | None) -> str:
    """An equality filter as a Milvus boolean expression: schema fields by name, every other key inside
    the ``metadata`` JSON field; a list or tuple value matches any of its items."""
    if not flt:
        return ""
    clauses = []
    for key, value in flt.items():
        field = key if key in ("id", "doc_id", "text") else f"metadata[{quote(key)}]"
        if isinstance(value, list | tuple):
            clauses.append(f"{field} in [{', '.join(_literal(v) for v in value)}]")
        else:
            clauses.append(f"{field} == {_literal(value)}")
    return " and ".join(clauses)


def prefix_expression(prefix: str) -> str:
    """The expression that lists ids starting with ``prefix``: ``doc_id == "…"`` for a page's prefix
    (``{doc_id}#``), else ``id like "…%"``, cut before the first ``%``, ``_`` or ``\\`` (LIKE wildcards
    and escapes differ between Milvus versions; the caller compares every id with the prefix again)."""
    if prefix.endswith("#") and "#" not in prefix[:-1]:
        return f"doc_id == {quote(prefix[:-1])}"
    plain = re.split(r"[%_\\]", prefix, maxsplit=1)[0]
    return f"id like {quote(plain + '%')}" if plain else ""


def trim_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``max_bytes`` (no broken character)."""
    data = text.encode("utf-8")
    return text if len(data) <= max_bytes else data[:max_bytes].decode("utf-8", "ignore")


def _sdk() -> Any:
    return import_extra("pymilvus", "milvus")


# -- Milvus Lite: one instance per file in this process ------------------------------------------------

_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def _release_lite(path: str) -> None:
    with _LITE_LOCK:
        _LITE_USERS[path] = _LITE_USERS.get(path, 1) - 1
        if _LITE_USERS[path] > 0:
            return
        del _LITE_USERS[path]
    manager = import_extra("milvus_lite.server_manager", "milvus").server_manager_instance
    manager.release_server(path)  # unlocks the file for other processes


class MilvusStore:
    """One Milvus collection (see :mod:`ingest.stores.milvus`).

    ``retry_budget_s`` overrides ``store.retry_budget_s`` (tests keep delays small with it).
    """

    def __init__(self, cfg: MilvusStoreConfig, name: str, *, retry_budget_s: float | None = None) -> None:
        if not _NAME_RE.match(name):
            raise ConfigError(f"invalid Milvus collection name {name!r}: set store.collection")
        self.cfg = cfg
        self.name = name
        self._retry_budget_s = cfg.retry_budget_s if retry_budget_s is None else retry_budget_s
        self._backoff = Backoff.for_budget(self._retry_budget_s)
        self._lock = threading.RLock()
        self._client: Any = None
        self._known = False  # the collection was seen to exist
        self._metric: str | None = None

    @classmethod
    def for_crawl(cls, cfg: MilvusStoreConfig, crawl: str, version: int = 1) -> MilvusStore:
        """The collection of one version of a crawl: ``store.collection`` (default: the crawl's name,
        mapped by :func:`collection_name_for`) for version 1; ``<collection>__vN`` after."""
        name = cfg.collection or collection_name_for(crawl)
        return cls(cfg, name if version == 1 else f"{name}__v{version}")

    # -- setup -----------------------------------------------------------------------------------

    @property
    def local(self) -> bool:
        """True for Milvus Lite (``store.uri`` is a ``.db`` file)."""
        return not self._uri().startswith(("http://", "https://"))

    def _uri(self) -> str:
        return self.cfg.uri if self.cfg.uri is not None else str(webvec_home() / "milvus.db")

    @property
    def target(self) -> str:
        """``milvus:<server host:port or .db file>/<collection>``; a file under $WEBVEC_HOME is recorded
        relative to it (``milvus:$WEBVEC_HOME/milvus.db/docs``)."""
        if self.local:
            where = home_relative(self._uri())
        else:
            parts = urlsplit(self._uri())
            where = f"{parts.scheme}://{parts.hostname}:{parts.port or 19530}"
        return f"milvus:{where}/{self.name}"

    def check(self) -> None:
        """pymilvus (and milvus-lite for a .db) must be installed; a server must answer, with the
        token in ``$<store.token_env>`` when that is named. A Milvus Lite file is not opened here:
        opening creates and locks it, and a dry run creates nothing."""
        _sdk()
        if self.local:
            if importlib.util.find_spec("milvus_lite") is None:
                import_extra("milvus_lite", "milvus")
            return
        self._call(
            "list collections", lambda c: c.list_collections(timeout=self.cfg.timeout_s), max_attempts=1
        )

    def _token(self) -> str:
        if self.cfg.token_env is None:
            return ""
        return api_key_from_env(self.cfg.token_env, setting="store.token_env", vendor="Milvus")

    def _open(self, create: bool) -> Any | None:
        """The client, opened on first use; for Milvus Lite None when the file does not exist and not
        ``create`` (looking at a store that was never written must not create it)."""
        with self._lock:
            if self._client is not None:
                return self._client
            sdk = _sdk()
            uri = self._uri()
            if self.local:
                if not create and not Path(uri).exists():
                    return None
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
                with _LITE_LOCK:  # open here already: this process holds the lock, not another one
                    mine = _LITE_USERS.get(os.path.abspath(uri), 0) > 0
                # Milvus Lite 3's flock on its folder's LOCK file, asked first: a refused open logs a
                # traceback. Other layouts (Milvus Lite 2's single file) are left to its own refusal.
                if not mine and not lock_free(Path(uri) / "LOCK"):
                    raise self._held_elsewhere(uri)
            try:
                client = sdk.MilvusClient(uri=uri, token=self._token(), timeout=self.cfg.timeout_s)
            except WebvecError:
                raise
            except Exception as exc:
                if self.local and "Open local milvus failed" in str(exc):
                    raise self._held_elsewhere(uri) from None
                raise map_error(f"Milvus connect ({self.target})", exc, self.cfg.token_env) from exc
            if self.local:
                key = os.path.abspath(uri)  # pymilvus' Milvus Lite manager keys its instances so
                with _LITE_LOCK:
                    _LITE_USERS[key] = _LITE_USERS.get(key, 0) + 1
            self._client = client
            return client

    @staticmethod
    def _held_elsewhere(uri: str) -> TransientError:
        return TransientError(
            f"Milvus Lite file {home_relative(uri)} could not be opened; most likely another process "
            "holds it (Milvus Lite allows one process per file): wait for it to finish, or run a Milvus "
            "server and set store.uri"
        )

    def close(self) -> None:
        """Close the client; Milvus Lite's file is released (for other processes) once no store of it
        is open in this process. The store opens it again when used."""
        with self._lock:
            client, self._client, self._known = self._client, None, False
        if client is None:
            return
        client.close()
        if self.local:
            _release_lite(os.path.abspath(self._uri()))

    def _exists(self, create: bool = False) -> bool:
        if self._known:
            return True
        if self._open(create) is None:
            return False
        if not self._call(
            "has collection", lambda c: c.has_collection(self.name, timeout=self.cfg.timeout_s)
        ):
            return False
        # A collection is searchable only while loaded: a server may have released it, and Milvus Lite
        # opens every collection of a file released. Loading a loaded one does nothing.
        self._call("load collection", lambda c: c.load_collection(self.name, timeout=self.cfg.timeout_s))
        self._known = True
        return True

    def ensure(self, dimension: int, metric: str = "cosine", labels: Mapping[str, str] | None = None) -> None:
        """Create the collection (schema, vector index, properties) or check an existing one:
        DimensionMismatchError when its dimension or metric differ, before anything is written."""
        if metric not in METRICS:
            raise ConfigError(f"store.metric: {metric!r} is not one of {', '.join(METRICS)}")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise PermanentError(f"Milvus vectors have 1-{MAX_DIMENSION} dimensions, not {dimension}")
        if not self._exists(create=True):
            self._create(dimension, metric, labels or {})
        have_dim, have_metric = self._shape()
        if (have_dim, have_metric) != (dimension, metric):
            raise DimensionMismatchError(
                f"Milvus collection {self.name!r} holds {have_dim}-dimensional vectors with metric "
                f"{have_metric!r}, but this crawl makes {dimension}-dimensional vectors with metric "
                f"{metric!r}: set store.collection to another name or re-embed into a new version"
            )
        self._metric, self._known = have_metric, True

    def _create(self, dimension: int, metric: str, labels: Mapping[str, str]) -> None:
        """Collection, then vector index, then load: three steps, each retried on its own and each
        skipped when already done, so a run that failed half-way (or a concurrent one) completes it."""
        sdk = _sdk()
        timeout = self.cfg.timeout_s
        log.info("creating Milvus collection %s (%d, %s)", self.target, dimension, metric)
        schema = sdk.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", sdk.DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
        schema.add_field("doc_id", sdk.DataType.VARCHAR, max_length=MAX_ID_BYTES)
        schema.add_field("vector", sdk.DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("text", sdk.DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES)
        schema.add_field("metadata", sdk.DataType.JSON)
        properties = {"webvec_dimension": str(dimension), "webvec_metric": metric}
        properties.update({k: str(v) for k, v in labels.items()})
        index = sdk.MilvusClient.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type=self.cfg.index_type,
            metric_type=_METRIC_TYPES[metric],
            # Older Milvus servers require HNSW's build parameters; these are Milvus' documented defaults.
            params={"M": 16, "efConstruction": 200} if self.cfg.index_type == "HNSW" else {},
        )

        def create(c: Any) -> None:
            try:
                c.create_collection(
                    self.name,
                    schema=schema,
                    # Reads see every acknowledged write: the ledger is committed after the store's
                    # acknowledgement, and the next batch lists ids that must include it.
                    consistency_level="Strong",
                    properties=properties,
                    timeout=timeout,
                )
            except Exception:
                if not c.has_collection(self.name, timeout=timeout):
                    raise  # else created meanwhile by another run: checked like any other

        def add_index(c: Any) -> None:
            if c.list_indexes(self.name, timeout=timeout):
                return
            # sync=False: pymilvus would otherwise poll the build with a call Milvus Lite does not
            # implement (an error in the log each time); load_collection waits for it anyway.
            c.create_index(self.name, index, timeout=timeout, sync=False)

        self._call("create collection", create)
        self._call("create index", add_index)
        self._call("load collection", lambda c: c.load_collection(self.name, timeout=timeout))

    def _describe(self) -> dict[str, Any]:
        return dict(
            self._call(
                "describe collection",
                lambda c: c.describe_collection(self.name, timeout=self.cfg.timeout_s),
            )
        )

    def _shape(self) -> tuple[int, str]:
        """The collection's dimension and metric; PermanentError when it is not one of ours."""
        desc = self._describe()
        fields = {f["name"]: f for f in desc.get("fields", [])}
        if set(FIELDS) - set(fields):
            raise PermanentError(
                f"Milvus collection {self.name!r} was not made by webvec (it lacks the fields "
                f"{', '.join(sorted(set(FIELDS) - set(fields)))}): set store.collection to another name"
            )
        dim = int(fields["vector"].get("params", {}).get("dim", 0))
        info = self._call(
            "describe index",
            lambda c: c.describe_index(self.name, "vector", timeout=self.cfg.timeout_s),
        )
        metric_type = str((info or {}).get("metric_type", "")).upper()
        metric = {v: k for k, v in _METRIC_TYPES.items()}.get(metric_type, metric_type.lower())
        return dim, metric

    def labels(self) -> dict[str, str]:
        """The collection's properties that :meth:`ensure` recorded (dimension, metric, labels)."""
        if not self._exists():
            return {}
        props = self._describe().get("properties") or {}
        return {str(k): str(v) for k, v in dict(props).items() if str(k).startswith("webvec_")}

    def _metric_of_collection(self) -> str:
        if self._metric is None:
            self._metric = self._shape()[1]
        return self._metric

    def _require(self) -> None:
        if not self._exists():
            raise PermanentError(f"Milvus collection {self.name!r} does not exist yet (nothing ingested)")

    # -- writes ----------------------------------------------------------------------------------

    def row(self, record: VectorRecord) -> dict[str, Any]:
        """The record as a row: text shortened to 65,535 UTF-8 bytes (``text_trimmed: true`` in its
        metadata then), every other metadata key in ``metadata``."""
        if not record.id or len(record.id.encode("utf-8")) > MAX_ID_BYTES:
            raise PermanentError(f"record id {record.id[:80]!r}: Milvus ids here are 1-{MAX_ID_BYTES} bytes")
        vector = np.asarray(record.vector, dtype=np.float32)
        if vector.ndim != 1 or not np.isfinite(vector).all():
            raise PermanentError(f"record {record.id!r}: the vector must be 1-D and finite")
        meta: dict[str, Any] = {}
        for key, value in record.metadata.items():
            meta[key] = value.item() if isinstance(value, np.generic) else value
        text = str(meta.pop("text", ""))
        doc_id = str(meta.pop("doc_id", record.id.split("#", 1)[0]))
        if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
            raise PermanentError(f"record {record.id!r}: doc_id over {MAX_ID_BYTES} bytes")
        short = trim_utf8(text, MAX_VARCHAR_BYTES)
        if short != text:
            log.info("record %s: text of %d bytes trimmed to Milvus' 65,535", record.id, len(text.encode()))
            meta["text_trimmed"] = True
        size = len(json.dumps(meta, default=str).encode("utf-8"))
        if size > MAX_JSON_BYTES:
            raise PermanentError(
                f"record {record.id!r}: metadata is {size} bytes, over Milvus' 65,536 per JSON value"
            )
        return {"id": record.id, "doc_id": doc_id, "vector": vector.tolist(), "text": short, "metadata": meta}

    def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Upsert in requests of at most 1000 rows and 16 MB (estimated); records with the same id are
        written once (the last one wins). Returns how many were written."""
        if not records:
            return 0
        self._require()
        unique = list({r.id: r for r in records}.values())
        rows = []
        for r in unique:
            row = self.row(r)
            size = len(row["text"].encode("utf-8")) + 4 * len(row["vector"]) + 4 * MAX_ID_BYTES
            rows.append((row, size + len(json.dumps(row["metadata"], default=str))))
        budget = self._budget()
        for batch in _pack(rows, MAX_UPSERT_ROWS, MAX_REQUEST_BYTES // 4):
            self._call(
                f"upsert of {len(batch)} rows",
                lambda c, batch=batch: c.upsert(  # type: ignore[misc]
                    self.name, batch, timeout=self.cfg.timeout_s, retry_on_rate_limit=False
                ),
                budget=budget,
            )
        self._flush_lite()
        return len(unique)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id (unknown ids are ignored); returns how many ids were asked for."""
        if not ids or not self._exists():
            return 0
        unique = list(dict.fromkeys(ids))
        budget = self._budget()
        for start in range(0, len(unique), MAX_DELETE_IDS):
            part = unique[start : start + MAX_DELETE_IDS]
            self._call(
                f"delete of {len(part)} ids",
                lambda c, part=part: c.delete(  # type: ignore[misc]
                    self.name, ids=part, timeout=self.cfg.timeout_s, retry_on_rate_limit=False
                ),
                budget=budget,
            )
        self._flush_lite()
        return len(ids)

    def _flush_lite(self) -> None:
        """Milvus Lite: seal what was just written. Until then its rows sit in an in-memory table that
        every read scans (count, list, search: ~300 ms each at 10,000 rows here, ~10-140 ms after a
        flush), and the flush of one batch's rows takes milliseconds. A server seals segments on its
        own, and limits the rate of explicit flushes, so it is not asked."""
        if self.local:
            self._call("flush", lambda c: c.flush(self.name, timeout=self.cfg.timeout_s))

    def drop(self) -> None:
        """Drop the collection (nothing happens when it does not exist)."""
        if self._exists():
            self._call("drop collection", lambda c: c.drop_collection(self.name, timeout=self.cfg.timeout_s))
        self._known, self._metric = False, None

    # -- reads -----------------------------------------------------------------------------------

    def list_ids(self, prefix: str | None = None) -> list[str]:
        """Ids, optionally only those starting with ``prefix`` (see :func:`prefix_expression`). One
        query when they fit in Milvus' window of 16,384, else a query iterator."""
        if not self._exists():
            return []
        expr = prefix_expression(prefix) if prefix else ""
        rows = self._call(
            "list ids",
            lambda c: c.query(
                self.name,
                filter=expr,
                output_fields=["id"],
                limit=MAX_QUERY_WINDOW,
                consistency_level="Strong",
                timeout=self.cfg.timeout_s,
                retry_on_rate_limit=False,
            ),
        )
        ids = [str(r["id"]) for r in rows]
        if len(ids) >= MAX_QUERY_WINDOW:
            ids = list(self._iterate_ids(expr))
        return [i for i in ids if not prefix or i.startswith(prefix)]

    def _iterate_ids(self, expr: str) -> Iterator[str]:
        # One iterator, not retried as a whole: a failure part-way raises (the caller's operation
        # fails, and a re-run lists again).
        it = self._call(
            "list ids (iterator)",
            lambda c: c.query_iterator(
                self.name,
                batch_size=LIST_PAGE_SIZE,
                filter=expr,
                output_fields=["id"],
                timeout=self.cfg.timeout_s,
            ),
        )
        try:
            while True:
                page = self._call("list ids (next page)", lambda _c: it.next(), max_attempts=1)
                if not page:
                    return
                for r in page:
                    yield str(r["id"])
        finally:
            it.close()

    def query(
        self, vector: np.ndarray, k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[QueryHit]:
        """The ``k`` nearest records, closest first. ``score`` is the cosine similarity or the inner
        product; for euclidean, minus Milvus' squared L2 distance, so that higher is closer. ``filter``
        is an equality match on metadata (see :func:`filter_expression`)."""
        if k < 1 or not self._exists():
            return []
        values = np.asarray(vector, dtype=np.float32).ravel().tolist()
        metric = self._metric_of_collection()
        result = self._call(
            "search",
            lambda c: c.search(
                self.name,
                data=[values],
                limit=min(k, MAX_QUERY_WINDOW),
                filter=filter_expression(filter),
                output_fields=["doc_id", "text", "metadata"],
                search_params={"metric_type": _METRIC_TYPES.get(metric, metric.upper())},
                consistency_level="Strong",
                timeout=self.cfg.timeout_s,
                retry_on_rate_limit=False,
            ),
        )
        hits = []
        for hit in result[0] if result else []:
            entity = dict(hit.get("entity") or {})
            meta = dict(entity.get("metadata") or {})
            meta["doc_id"] = entity.get("doc_id", "")
            meta["text"] = entity.get("text", "")
            distance = float(hit["distance"])
            hits.append(QueryHit(str(hit["id"]), -distance if metric == "euclidean" else distance, meta))
        return hits

    def count(self) -> int:
        """Number of rows, by ``count(*)`` with strong consistency (0 when the collection is absent)."""
        if not self._exists():
            return 0
        rows = self._call(
            "count",
            lambda c: c.query(
                self.name,
                filter="",
                output_fields=["count(*)"],
                consistency_level="Strong",
                timeout=self.cfg.timeout_s,
                retry_on_rate_limit=False,
            ),
        )
        return int(rows[0]["count(*)"]) if rows else 0

    # -- retries and error mapping ---------------------------------------------------------------

    def _budget(self) -> RetryBudget:
        return RetryBudget(self._retry_budget_s, setting="store.retry_budget_s")

    def _call(
        self,
        what: str,
        fn: Callable[[Any], T],
        *,
        budget: RetryBudget | None = None,
        max_attempts: int | None = None,
    ) -> T:
        """``fn(client)``: transient failures retried within ``budget`` (a new one when not given: the
        operation is this one request), pymilvus errors mapped."""

        def attempt() -> T:
            client = self._open(create=not self.local)
            if client is None:
                raise PermanentError(f"Milvus collection {self.name!r} does not exist yet (nothing ingested)")
            try:
                return fn(client)
            except WebvecError:
                raise
            except Exception as exc:
                raise map_error(f"Milvus {what} ({self.target})", exc, self.cfg.token_env) from exc

        return call_with_retries(
            attempt, budget or self._budget(), backoff=self._backoff, max_attempts=max_attempts
        )


def _pack(items: list[tuple[dict[str, Any], int]], max_items: int, max_bytes: int) -> Iterator[list[Any]]:
    """Consecutive batches of at most ``max_items`` items and ``max_bytes`` of their sizes."""
    batch: list[Any] = []
    used = 0
    for item, size in items:
        if batch and (len(batch) >= max_items or used + size > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += size
    if batch:
        yield batch


def map_error(where: str, exc: Exception, token_env: str | None) -> WebvecError:
    """One WebvecError for a pymilvus (or gRPC) exception of the request ``where`` names; the token
    (the value of ``$token_env``) never appears in it."""
    secret = env_secret(token_env) if token_env else None
    code = getattr(exc, "code", None)
    if callable(code):  # a grpc.RpcError: code() is a grpc.StatusCode
        code = code()
    code_name = str(getattr(code, "name", ""))
    details = getattr(exc, "details", None)
    raw = getattr(exc, "message", None) or (details() if callable(details) else None) or str(exc)
    message = scrub(str(raw).splitlines()[0] if str(raw) else "", secret)
    lowered = message.lower()
    errors = import_extra("pymilvus.exceptions", "milvus")
    if code_name in _AUTH_GRPC or any(word in lowered for word in _AUTH_WORDS):
        token = f"the token in ${token_env}" if token_env else "no token (store.token_env)"
        return PermanentError(f"{where}: the server refused {token}: {message}")
    rate_limited = code == 8 or "rate limit" in lowered  # ErrorCode.RATE_LIMIT
    transient_types = (errors.MilvusUnavailableException, ConnectionError, TimeoutError)
    if (
        rate_limited
        or code_name in _TRANSIENT_GRPC
        or isinstance(exc, transient_types)
        or getattr(exc, "retriable", False) is True
        or "fail connecting" in lowered
        or "unavailable" in lowered
    ):
        return TransientError(f"{where}: {type(exc).__name__}: {message}")
    return PermanentError(f"{where}: {type(exc).__name__}: {message}")
