"""Qdrant adapter over ``qdrant-client``: local mode (on disk, in this process) by default, a server when
``store.url`` is set. Both modes go through the same :class:`QdrantStore` code; only the client differs.

Where vectors go
    Collection ``store.collection`` (default: the crawl's name) for version 1 of a crawl,
    ``<collection>__vN`` for later versions. Local mode keeps its files in ``store.path`` (default
    ``$WEBVEC_HOME/qdrant``); :attr:`QdrantStore.target` records that folder relative to $WEBVEC_HOME.

Ids
    Qdrant point ids must be unsigned integers or UUIDs, so a webvec id ``{doc_id}#{hash}`` is mapped
    to ``uuid5(POINT_NAMESPACE, id)`` (:func:`point_id`): deterministic, so an upsert of the same
    chunk overwrites its point. The original id is kept in the payload as ``webvec_id``, next to
    ``doc_id``; on a server both get a keyword payload index, so listing a page's ids
    (``list_ids("{doc_id}#")``) is a filter on ``doc_id``. Any other prefix is answered by scrolling
    every id and comparing on the client. Local mode has no payload indexes (qdrant-client warns that
    they have no effect there): its filters scan, which is what local mode does anyway.

Labels
    ``ensure(labels=...)`` records the dimension, the metric and the labels (model, model key) as the
    collection's metadata when the client takes ``metadata=`` (qdrant-client 1.16+, server 1.16+).
    With an older client they go to a sidecar JSON file in local mode (``<path>/webvec-labels.json``)
    and are not kept by a server; every record's payload names its ``model_key`` all the same.

Local mode, one process
    A local folder is locked by the client that opens it: a second client, in this process or
    another, is refused. Every :class:`QdrantStore` of one folder in this process therefore shares one
    client (and one lock around it: the local client is not thread-safe), and :meth:`QdrantStore.close`
    lets go of it when the last store using it closes. Another process holding the folder is a
    :class:`TransientError` that says so; use a Qdrant server for concurrent access.

Errors
    Requests go through :func:`ingest.vendor.call_with_retries`: 429, 408, 5xx, timeouts and dropped
    connections are retried within one budget of ``store.retry_budget_s`` per operation, then raise
    :class:`TransientError`; 400/401/403/404 become :class:`PermanentError` at once. Each request may
    take ``store.timeout_s``. The API key comes from ``store.api_key_env`` and is scrubbed from every
    message; :attr:`QdrantStore.target` never holds it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import inspect
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ingest.config import QdrantStoreConfig, webvec_home
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
    retry_after_from_headers,
    scrub,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# The UUIDv5 namespace of point ids. Never change it: every stored point id is derived from it.
POINT_NAMESPACE = uuid.UUID("6f1c3b0e-5b8a-4d4e-9f0a-7e2d1c9b8a61")
METRICS = ("cosine", "dotproduct", "euclidean")
_DISTANCES = {"cosine": "Cosine", "dotproduct": "Dot", "euclidean": "Euclid"}
# Qdrant limits (qdrant.tech/documentation/guides/configuration: service.max_request_size_mb = 32 by
# default): upserts are packed under a quarter of that in estimated JSON, and at most 500 points, so a
# default server never refuses one and a slow one answers within timeout_s.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_UPSERT_POINTS = 500
MAX_DELETE_POINTS = 1000  # ids per delete request: a list of UUIDs, ~40 bytes each
MAX_DIMENSION = 65_536  # Qdrant's largest dense vector
LIST_PAGE_SIZE = 1000  # points per scroll page
LABELS_SIDECAR = "webvec-labels.json"  # local mode without collection metadata (qdrant-client < 1.16)
PAYLOAD_ID = "webvec_id"
# A whole collection name, "__vN" included (store.collection itself is kept shorter to leave room).
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")


def point_id(webvec_id: str) -> str:
    """The Qdrant point id (a UUID string) of a webvec id: ``uuid5(POINT_NAMESPACE, id)``."""
    return str(uuid.uuid5(POINT_NAMESPACE, webvec_id))


def doc_id_of(record: VectorRecord) -> str:
    """The record's ``doc_id``: its metadata's, else the part of its id before ``#``."""
    value = record.metadata.get("doc_id")
    return str(value) if value is not None else record.id.split("#", 1)[0]


def _sdk() -> Any:
    return import_extra("qdrant_client", "qdrant")


def _models() -> Any:
    return import_extra("qdrant_client.models", "qdrant")


def _local_path(cfg: QdrantStoreConfig) -> Path:
    """Local mode's folder: ``store.path`` (already absolute), or $WEBVEC_HOME/qdrant."""
    return Path(cfg.path) if cfg.path is not None else webvec_home() / "qdrant"


# -- one client per local folder in this process -------------------------------------------------------


@dataclass
class _Shared:
    """The client of one location, the lock that serialises its use, and how many stores hold it."""

    client: Any
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0


def _tune_local(shared: _Shared) -> None:
    """Switch local mode's SQLite files to WAL with ``synchronous=NORMAL``.

    Local mode commits every point in its own transaction, and with SQLite's defaults each commit
    waits for the disk twice: 2,500 points took 33 s here, 0.9 s after this. A process killed mid-run
    loses nothing committed (the WAL is replayed); only a power cut may lose the last commits, which a
    re-run writes again (store first, ledger second). Private names: if they move, the defaults stay.
    """
    try:
        collections = shared.client._client.collections
        for collection in list(collections.values()):  # again after a create: both are idempotent
            conn = collection.storage.storage
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
    except (AttributeError, TypeError) as exc:
        log.debug("could not tune Qdrant local storage: %s", type(exc).__name__)


_LOCAL: dict[str, _Shared] = {}
_LOCAL_LOCK = threading.Lock()


def _open_local(path: Path) -> _Shared:
    key = str(path.resolve())
    with _LOCAL_LOCK:
        shared = _LOCAL.get(key)
        if shared is None:
            sdk = _sdk()
            path.mkdir(parents=True, exist_ok=True)
            # qdrant-client's flock (through portalocker), asked first: a client refused the lock
            # leaves its lock file open (a ResourceWarning later).
            if not lock_free(path / ".lock"):
                raise _held_elsewhere(path)
            try:
                # The lock below serialises every call; the client's SQLite may then be used from the
                # flow's worker threads, not only the one that opened it.
                client = sdk.QdrantClient(path=str(path), force_disable_check_same_thread=True)
            except RuntimeError as exc:  # taken meanwhile (the probe above is not atomic)
                if "already accessed" not in str(exc):
                    raise
                raise _held_elsewhere(path) from None
            if not _LOCAL:
                atexit.register(_close_all_local)
            shared = _LOCAL[key] = _Shared(client)
            _tune_local(shared)
        shared.users += 1
        return shared


def _held_elsewhere(path: Path) -> TransientError:
    return TransientError(
        f"Qdrant local folder {home_relative(path)} is open in another process (local mode allows one "
        "process per folder): wait for it to finish, or run a Qdrant server and set store.url"
    )


def _close_all_local() -> None:
    """Close every local client at exit: left to the garbage collector, a client closes during
    interpreter shutdown, where qdrant-client's close fails to import what it needs and says so."""
    with _LOCAL_LOCK:
        shared_all = list(_LOCAL.values())
        _LOCAL.clear()
    for shared in shared_all:
        with shared.lock:
            shared.client.close()


def _release_local(path: Path, shared: _Shared) -> None:
    key = str(path.resolve())
    with _LOCAL_LOCK:
        shared.users -= 1
        if shared.users <= 0 and _LOCAL.get(key) is shared:
            del _LOCAL[key]
            with shared.lock:
                shared.client.close()


# -- the store -----------------------------------------------------------------------------------------


class QdrantStore:
    """One Qdrant collection (see :mod:`ingest.stores.qdrant`).

    ``retry_budget_s`` overrides ``store.retry_budget_s`` (tests keep delays small with it).
    """

    def __init__(self, cfg: QdrantStoreConfig, name: str, *, retry_budget_s: float | None = None) -> None:
        if not _NAME_RE.match(name):
            raise ConfigError(f"invalid Qdrant collection name {name!r}: set store.collection")
        self.cfg = cfg
        self.name = name
        self._retry_budget_s = cfg.retry_budget_s if retry_budget_s is None else retry_budget_s
        self._backoff = Backoff.for_budget(self._retry_budget_s)
        self._lock = threading.RLock()
        self._shared: _Shared | None = None
        self._metric: str | None = None  # the collection's, once known
        self._known = False  # the collection was seen to exist (cached, as Chroma caches its handle)

    @classmethod
    def for_crawl(cls, cfg: QdrantStoreConfig, crawl: str, version: int = 1) -> QdrantStore:
        """The collection of one version of a crawl: ``store.collection`` (default: the crawl's name)
        for version 1, so a crawl that never changes model keeps it; ``<collection>__vN`` after."""
        name = cfg.collection or crawl
        return cls(cfg, name if version == 1 else f"{name}__v{version}")

    # -- setup -----------------------------------------------------------------------------------

    @property
    def local(self) -> bool:
        """True in local mode (no ``store.url``)."""
        return self.cfg.url is None

    @property
    def target(self) -> str:
        """``qdrant:<server host:port or folder>/<collection>``; a folder under $WEBVEC_HOME is recorded
        relative to it (``qdrant:$WEBVEC_HOME/qdrant/docs``)."""
        if self.cfg.url is not None:
            parts = urlsplit(self.cfg.url)
            where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6333}"
        else:
            where = home_relative(_local_path(self.cfg))
        return f"qdrant:{where}/{self.name}"

    def check(self) -> None:
        """qdrant-client must be installed; with a server, ``$<store.api_key_env>`` must be set (when
        named) and the server must answer. Local mode opens nothing here: opening creates the folder
        and locks it, and a dry run creates nothing."""
        if importlib.util.find_spec("qdrant_client") is None:
            _sdk()  # raises MissingExtraError
        if not self.local:
            self._call("list collections", lambda c: c.get_collections(), max_attempts=1)

    def _api_key(self) -> str | None:
        if self.cfg.api_key_env is None:
            return None
        return api_key_from_env(self.cfg.api_key_env, setting="store.api_key_env", vendor="Qdrant")

    def _client(self, create: bool) -> _Shared | None:
        """The client (and its lock), opened on first use. In local mode, None when the folder does not
        exist and not ``create``: looking at a store that was never written must not create it."""
        with self._lock:
            if self._shared is None:
                if self.local:
                    path = _local_path(self.cfg)
                    if not create and not path.is_dir():
                        return None
                    self._shared = _open_local(path)
                else:
                    self._shared = _Shared(self._server_client())
                    self._shared.users = 1
            return self._shared

    def _server_client(self) -> Any:
        sdk = _sdk()
        kwargs: dict[str, Any] = {
            "url": self.cfg.url,
            "api_key": self._api_key(),
            "timeout": math.ceil(self.cfg.timeout_s),
        }
        # The version check makes a request and warns on a mismatch at construction; check() asks.
        if "check_compatibility" in inspect.signature(sdk.QdrantClient.__init__).parameters:
            kwargs["check_compatibility"] = False
        if urlsplit(str(self.cfg.url)).port is None:
            kwargs["port"] = 6333  # what the client assumes too; said here so target and client agree
        return sdk.QdrantClient(**kwargs)

    def close(self) -> None:
        """Let go of the client (in local mode, the folder's lock once no store of it is open here).
        The store opens it again when used."""
        with self._lock:
            shared, self._shared, self._known = self._shared, None, False
        if shared is None:
            return
        if self.local:
            _release_local(_local_path(self.cfg), shared)
        else:
            shared.client.close()

    def _exists(self, create: bool = False) -> bool:
        if self._known:
            return True
        if self._client(create) is None:
            return False
        self._known = bool(self._call("collection exists", lambda c: c.collection_exists(self.name)))
        return self._known

    def ensure(self, dimension: int, metric: str = "cosine", labels: Mapping[str, str] | None = None) -> None:
        """Create the collection, or check an existing one: DimensionMismatchError when its dimension
        or metric differ, before anything is written. The dimension, the metric and ``labels`` are
        recorded as collection metadata (or in the sidecar; see the module docstring)."""
        if metric not in METRICS:
            raise ConfigError(f"store.metric: {metric!r} is not one of {', '.join(METRICS)}")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise PermanentError(f"Qdrant vectors have 1-{MAX_DIMENSION} dimensions, not {dimension}")
        meta: dict[str, Any] = {"webvec_dimension": dimension, "webvec_metric": metric, **(labels or {})}
        models = _models()
        if self._exists(create=True):
            have_dim, have_metric = self._shape()
            if (have_dim, have_metric) != (dimension, metric):
                raise DimensionMismatchError(
                    f"Qdrant collection {self.name!r} holds {have_dim}-dimensional vectors with metric "
                    f"{have_metric!r}, but this crawl makes {dimension}-dimensional vectors with metric "
                    f"{metric!r}: set store.collection to another name or re-embed into a new version"
                )
            self._metric = have_metric
            self._update_labels(meta)
            return
        log.info("creating Qdrant collection %s (%d, %s)", self.target, dimension, metric)
        params = models.VectorParams(size=dimension, distance=models.Distance(_DISTANCES[metric]))

        def create(client: Any) -> None:
            kwargs: dict[str, Any] = {"vectors_config": params}
            if self._takes_metadata(client):
                kwargs["metadata"] = meta
            try:
                client.create_collection(self.name, **kwargs)
            except Exception:
                if not client.collection_exists(self.name):
                    raise  # else created meanwhile by another run: checked below like any other

        self._call("create collection", create)
        if self.local:
            shared = self._require()
            with shared.lock:
                _tune_local(shared)
        else:  # local mode warns that payload indexes have no effect there
            for key in (PAYLOAD_ID, "doc_id"):
                self._call(
                    f"create payload index {key}",
                    lambda c, key=key: c.create_payload_index(  # type: ignore[misc]
                        self.name, key, models.PayloadSchemaType.KEYWORD, wait=True
                    ),
                )
        have_dim, have_metric = self._shape()
        if (have_dim, have_metric) != (dimension, metric):  # another run created it otherwise meanwhile
            raise DimensionMismatchError(
                f"Qdrant collection {self.name!r} was just created by someone else with "
                f"{have_dim} dimensions and metric {have_metric!r}: set store.collection"
            )
        self._metric, self._known = have_metric, True
        if not self._takes_metadata(self._require().client):
            self._write_sidecar(meta)

    @staticmethod
    def _takes_metadata(client: Any) -> bool:
        return "metadata" in inspect.signature(client.create_collection).parameters

    def _info(self) -> Any:
        return self._call("get collection", lambda c: c.get_collection(self.name))

    def _shape(self) -> tuple[int, str]:
        vectors = self._info().config.params.vectors
        if isinstance(vectors, Mapping) or vectors is None:
            raise PermanentError(
                f"Qdrant collection {self.name!r} has named vectors, not one unnamed dense vector: set "
                "store.collection to another collection"
            )
        distance = getattr(vectors.distance, "value", vectors.distance)
        metric = {v: k for k, v in _DISTANCES.items()}.get(str(distance), str(distance).lower())
        return int(vectors.size), metric

    def _update_labels(self, meta: Mapping[str, Any]) -> None:
        """Record labels missing from a collection of ours (one created before they were known)."""
        client = self._require().client
        if not self._takes_metadata(client):
            self._write_sidecar(meta)
            return
        have = getattr(self._info().config, "metadata", None) or {}
        if "webvec_dimension" in have and any(have.get(k) != v for k, v in meta.items()):
            self._call("update collection metadata", lambda c: c.update_collection(self.name, metadata=meta))

    def _write_sidecar(self, meta: Mapping[str, Any]) -> None:
        if not self.local:
            log.info("qdrant-client without collection metadata: labels of %s not kept", self.target)
            return
        sidecar = _local_path(self.cfg) / LABELS_SIDECAR
        with self._require().lock:
            data = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            data[self.name] = dict(meta)
            sidecar.write_text(json.dumps(data, indent=1, sort_keys=True))

    def labels(self) -> dict[str, Any]:
        """What :meth:`ensure` recorded (dimension, metric, labels); empty when nothing was."""
        if not self._exists():
            return {}
        meta = getattr(self._info().config, "metadata", None)
        if meta:
            return dict(meta)
        sidecar = _local_path(self.cfg) / LABELS_SIDECAR
        if self.local and sidecar.exists():
            return dict(json.loads(sidecar.read_text()).get(self.name, {}))
        return {}

    def _require(self) -> _Shared:
        shared = self._client(create=False)
        if shared is None:
            raise PermanentError(f"Qdrant collection {self.name!r} does not exist yet (nothing ingested)")
        return shared

    def _metric_of_collection(self) -> str:
        if self._metric is None:
            self._metric = self._shape()[1]
        return self._metric

    # -- writes ----------------------------------------------------------------------------------

    def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Upsert in requests of at most 500 points and 8 MB of estimated JSON; records with the same id
        are written once (the last one wins). Returns how many were written."""
        if not records:
            return 0
        self._require()
        models = _models()
        unique = list({r.id: r for r in records}.values())
        points: list[tuple[Any, int]] = []
        for r in unique:
            vector = np.asarray(r.vector, dtype=np.float32)
            if vector.ndim != 1 or not np.isfinite(vector).all():
                raise PermanentError(f"record {r.id!r}: the vector must be 1-D and finite")
            payload: dict[str, Any] = {
                k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.metadata.items()
            }
            payload[PAYLOAD_ID] = r.id
            payload["doc_id"] = doc_id_of(r)
            size = len(json.dumps(payload, default=str)) + 16 * vector.shape[0] + 64
            points.append(
                (models.PointStruct(id=point_id(r.id), vector=vector.tolist(), payload=payload), size)
            )
        budget = self._budget()
        for batch in _pack(points, MAX_UPSERT_POINTS, MAX_REQUEST_BYTES // 4):
            self._call(
                f"upsert of {len(batch)} points",
                lambda c, batch=batch: c.upsert(self.name, points=batch, wait=True),  # type: ignore[misc]
                budget=budget,
            )
        return len(unique)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id (unknown ids are ignored); returns how many ids were asked for."""
        if not ids or not self._exists():
            return 0
        models = _models()
        unique = list(dict.fromkeys(point_id(i) for i in ids))
        budget = self._budget()
        for start in range(0, len(unique), MAX_DELETE_POINTS):
            selector = models.PointIdsList(points=unique[start : start + MAX_DELETE_POINTS])
            self._call(
                f"delete of {len(selector.points)} points",
                lambda c, selector=selector: c.delete(  # type: ignore[misc]
                    self.name, points_selector=selector, wait=True
                ),
                budget=budget,
            )
        return len(ids)

    def drop(self) -> None:
        """Delete the collection (nothing happens when it does not exist)."""
        if self._exists():
            self._call("delete collection", lambda c: c.delete_collection(self.name))
        self._metric, self._known = None, False

    # -- reads -----------------------------------------------------------------------------------

    def list_ids(self, prefix: str | None = None) -> list[str]:
        """Ids of the collection, optionally only those starting with ``prefix``. A page's prefix
        (``{doc_id}#``) is a filter on the indexed ``doc_id``; any other prefix scrolls every id."""
        if not self._exists():
            return []
        models = _models()
        flt = None
        if prefix and prefix.endswith("#") and "#" not in prefix[:-1]:
            flt = models.Filter(
                must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=prefix[:-1]))]
            )
        out: list[str] = []
        for point in self._scroll(flt):
            wid = (point.payload or {}).get(PAYLOAD_ID)
            if isinstance(wid, str) and (not prefix or wid.startswith(prefix)):
                out.append(wid)
        return out

    def _scroll(self, flt: Any) -> Iterator[Any]:
        offset: Any = None
        while True:
            points, offset = self._call(
                "scroll",
                lambda c, offset=offset: c.scroll(  # type: ignore[misc]
                    self.name,
                    scroll_filter=flt,
                    limit=LIST_PAGE_SIZE,
                    offset=offset,
                    with_payload=[PAYLOAD_ID],
                    with_vectors=False,
                ),
            )
            yield from points
            if offset is None:
                return

    def query(
        self, vector: np.ndarray, k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[QueryHit]:
        """The ``k`` nearest records, closest first. ``score`` is the cosine similarity or the dot
        product; for euclidean, minus the squared distance (as the other stores report it), so that
        higher is closer. ``filter`` is an equality match on payload fields (a list value: any of)."""
        if k < 1 or not self._exists():
            return []
        models = _models()
        values = np.asarray(vector, dtype=np.float32).ravel().tolist()
        flt = _filter(models, filter)
        metric = self._metric_of_collection()

        def search(c: Any) -> list[Any]:
            if hasattr(c, "query_points"):  # qdrant-client 1.10+
                res = c.query_points(self.name, query=values, limit=k, query_filter=flt, with_payload=True)
                return list(res.points)
            return list(
                c.search(self.name, query_vector=values, limit=k, query_filter=flt, with_payload=True)
            )

        hits = []
        for point in self._call("query", search):
            payload = dict(point.payload or {})
            wid = str(payload.pop(PAYLOAD_ID, point.id))
            score = -(float(point.score) ** 2) if metric == "euclidean" else float(point.score)
            hits.append(QueryHit(wid, score, payload))
        return hits

    def count(self) -> int:
        """Number of points (0 when the collection does not exist)."""
        if not self._exists():
            return 0
        return int(self._call("count", lambda c: c.count(self.name, exact=True)).count)

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
        """``fn(client)`` under the client's lock, transient failures retried within ``budget`` (a new
        one when not given: the operation is this one request), SDK errors mapped."""
        shared = self._require() if self.local else self._client(create=True)
        assert shared is not None  # a server client is always made

        # Local mode's client is not thread-safe; a server's (httpx) is, and is not serialised.
        guard = shared.lock if self.local else contextlib.nullcontext()

        def attempt() -> T:
            try:
                with guard:
                    return fn(shared.client)
            except WebvecError:
                raise
            except Exception as exc:
                raise map_error(f"Qdrant {what} ({self.target})", exc, self.cfg.api_key_env) from exc

        return call_with_retries(
            attempt, budget or self._budget(), backoff=self._backoff, max_attempts=max_attempts
        )


def _pack(items: list[tuple[Any, int]], max_items: int, max_bytes: int) -> Iterator[list[Any]]:
    """Consecutive batches of at most ``max_items`` items and ``max_bytes`` of their sizes (an item
    over ``max_bytes`` goes alone)."""
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


def _filter(models: Any, flt: Mapping[str, Any] | None) -> Any:
    """An equality filter on payload fields; a list or tuple value matches any of its items."""
    if not flt:
        return None
    conditions = []
    for key, value in flt.items():
        if isinstance(value, list | tuple):
            match = models.MatchAny(any=list(value))
        elif isinstance(value, bool | int | str):
            match = models.MatchValue(value=value)
        elif isinstance(value, float):  # MatchValue takes no floats: a closed range of one value
            conditions.append(models.FieldCondition(key=key, range=models.Range(gte=value, lte=value)))
            continue
        else:
            raise PermanentError(f"query filter {key!r}: {type(value).__name__} values are not supported")
        conditions.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=conditions)


def map_error(where: str, exc: Exception, api_key_env: str | None) -> WebvecError:
    """One WebvecError for a qdrant-client exception of the request ``where`` names; the API key (the
    value of ``$api_key_env``) never appears in it."""
    secret = env_secret(api_key_env) if api_key_env else None
    http = import_extra("qdrant_client.http.exceptions", "qdrant")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, http.UnexpectedResponse) and isinstance(status, int):
        content = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else ""
        message = scrub(content or str(exc.reason_phrase), secret)
        retry_after = retry_after_from_headers(dict(exc.headers) if exc.headers is not None else None)
        if status == 429:
            return TransientError(f"{where}: rate limited (429): {message}", retry_after=retry_after)
        if status == 408 or status >= 500:
            return TransientError(f"{where}: server error {status}: {message}", retry_after=retry_after)
        if status in (401, 403):
            key = f"the API key in ${api_key_env}" if api_key_env else "no API key (store.api_key_env)"
            return PermanentError(f"{where}: {status}: the server refused {key}")
        return PermanentError(f"{where}: {status}: {message}")
    text = scrub(str(exc).splitlines()[0] if str(exc) else "", secret)
    if isinstance(exc, http.ResponseHandlingException) or _is_transport_error(exc):
        source = getattr(exc, "source", exc)
        return TransientError(f"{where}: cannot reach the server: {type(source).__name__}: {text}")
    return PermanentError(f"{where}: {type(exc).__name__}: {text}")


def _is_transport_error(exc: Exception) -> bool:
    try:
        import httpx
    except ImportError:  # qdrant-client depends on httpx; without it nothing above could have run
        return False
    return isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError)
