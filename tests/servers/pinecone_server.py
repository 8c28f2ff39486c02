"""An in-memory Pinecone on 127.0.0.1 that the real ``pinecone`` SDK (REST client) can talk to.

It speaks the 2026-07 API the SDK 10.x sends (``X-Pinecone-Api-Version``): the control plane
(``/indexes``) and, under ``/_data/<index>``, the data plane of each index. ``describe`` returns the
index's data-plane host the way Pinecone does, without a scheme (``127.0.0.1:PORT/_data/<index>``),
so a client must know to use plain HTTP (as with Pinecone Local); ``host_scheme=True`` adds it.

Responses are built with the SDK's own msgspec models (``pinecone.models.indexes.*``,
``pinecone.models.vectors.*``) and upserted vectors are decoded into its ``Vector`` model, so the wire
format stays in step with the SDK. Pinecone's documented limits are enforced, with its error shapes:
control plane ``{"error": {"code", "message"}, "status"}``, data plane ``{"code", "message", "details"}``.

Knobs for tests: ``fail_next(n, status, path=..., retry_after=...)`` fails the next requests,
``latency_s`` slows data-plane writes (to observe concurrency), ``initializing_describes`` keeps a new
index "Initializing" for that many describes. Counters: ``requests`` (per route), ``log`` (every
request: method, route, status, body size, vectors), ``max_body_bytes``, ``max_in_flight``.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import Response

# The pinecone extra is optional: without it this module still imports (conftest imports the
# fixture) and the fixture skips.
_SDK_MISSING: ImportError | None = None
try:
    import msgspec
    import orjson
    from pinecone.models.indexes.deployment import IndexDeployment, ManagedDeployment
    from pinecone.models.indexes.index import IndexModel, IndexStatus
    from pinecone.models.indexes.requests import CreateIndexRequest
    from pinecone.models.indexes.schema import DenseVectorField, IndexSchema
    from pinecone.models.vectors.responses import (
        DescribeIndexStatsResponse,
        FetchResponse,
        ListItem,
        ListResponse,
        NamespaceSummary,
        Pagination,
        QueryResponse,
        UpsertResponse,
    )
    from pinecone.models.vectors.sparse import SparseValues
    from pinecone.models.vectors.usage import Usage
    from pinecone.models.vectors.vector import ScoredVector, Vector
except ImportError as exc:  # pragma: no cover
    _SDK_MISSING = exc

# Pinecone's operation limits (docs.pinecone.io/reference/api/database-limits/operation-limits).
MAX_REQUEST_BYTES = 2_000_000  # "2 MB" per upsert request, read as decimal MB: the stricter reading
MAX_UPSERT_VECTORS = 1000  # records per upsert request
MAX_METADATA_BYTES = 40_960  # "40 KB" per record; Pinecone's message says "limit of 40960 bytes"
MAX_ID_LENGTH = 512  # record ids are 1-512 characters
MAX_DIMENSION = 20_000  # dense vectors
MAX_IDS_PER_REQUEST = 1000  # fetch and delete by id
MAX_TOP_K = 10_000
MAX_SPARSE_NONZERO = 1000  # "Sparse vectors can contain no more than 1000 non-zero values"
MAX_SPARSE_INDEX = 2**32 - 1  # indices are uint32
LIST_LIMIT_MAX = 100  # ids per list page (also the default)
DEFAULT_API_KEY = "pc-test-key"

_INDEX_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
_METRICS = ("cosine", "dotproduct", "euclidean")
# gRPC status codes the data plane puts in "code".
_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 3, 429: 8, 500: 13, 503: 14}
_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "UNKNOWN",
    503: "UNAVAILABLE",
}


class ApiFailure(Exception):
    """Raised by handlers; becomes a Pinecone-style error response."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class RequestRecord:
    """One request the server answered."""

    method: str
    route: str  # the route template, e.g. "/vectors/upsert" or "/indexes/{name}"
    status: int
    body_bytes: int
    vectors: int = 0  # vectors in an upsert body (0 for other requests)
    index: str | None = None
    start: float = 0.0  # time.monotonic() when the body was read
    end: float = 0.0  # time.monotonic() just before the answer was sent


@dataclass
class _Fault:
    remaining: int
    status: int
    route: str | None
    retry_after: float | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Index:
    name: str
    dimension: int
    metric: str
    cloud: str
    region: str
    not_ready_left: int = 0
    # namespace -> id -> (values, metadata)
    namespaces: dict[str, dict[str, tuple[np.ndarray, dict[str, Any]]]] = field(default_factory=dict)
    # namespace -> id -> sparse values (index -> value), for records upserted with them
    sparse: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)


def _encode(model: Any, drop: tuple[str, ...] = ()) -> bytes:
    """JSON of an SDK model without SDK-side fields (``responseInfo``, batch totals) and nulls."""
    data = msgspec.to_builtins(model)
    if isinstance(data, dict):
        for key in (*drop, "responseInfo", "response_info"):
            data.pop(key, None)
    return orjson.dumps(_drop_none(data))


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiFailure(400, f"Invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiFailure(400, "Request body must be a JSON object")
    return data


def _matches(meta: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Pinecone metadata filter: $eq $ne $in $nin $gt $gte $lt $lte $exists $and $or, and ``{f: v}``."""
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(meta, sub) for sub in cond):
                return False
        elif key == "$or":
            if not any(_matches(meta, sub) for sub in cond):
                return False
        elif key.startswith("$"):
            raise ApiFailure(400, f"Unknown top-level filter operator {key}")
        elif isinstance(cond, dict):
            for op, arg in cond.items():
                if not _compare(meta, key, op, arg):
                    return False
        elif not _compare(meta, key, "$eq", cond):
            return False
    return True


def _compare(meta: dict[str, Any], key: str, op: str, arg: Any) -> bool:
    present = key in meta
    value = meta.get(key)
    values = value if isinstance(value, list) else [value]
    if op == "$exists":
        return present == bool(arg)
    if not present:
        return op in ("$ne", "$nin")
    if op == "$eq":
        return arg in values
    if op == "$ne":
        return arg not in values
    if op == "$in":
        return any(v in arg for v in values)
    if op == "$nin":
        return all(v not in arg for v in values)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return {
            "$gt": value > arg,
            "$gte": value >= arg,
            "$lt": value < arg,
            "$lte": value <= arg,
        }[op]
    raise ApiFailure(400, f"Unknown filter operator {op}")


def _check_metadata(vid: str, meta: dict[str, Any], limit: int) -> None:
    size = len(orjson.dumps(meta))
    if size > limit:
        raise ApiFailure(
            400, f"Metadata size is {size} bytes, which exceeds the limit of {limit} bytes per vector"
        )
    for key, value in meta.items():
        ok = isinstance(value, str | int | float | bool) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise ApiFailure(
                400,
                f"Metadata value must be a string, number, boolean or list of strings, "
                f"got {value!r} for field '{key}' of vector '{vid}'",
            )


def _check_sparse(vid: str, sparse: Any) -> dict[int, float]:
    """Sparse values as index → value, checked as Pinecone checks them (uint32 indices, one value
    each, no repeats, finite, at most MAX_SPARSE_NONZERO); empty when there are none."""
    if sparse is None:
        return {}
    indices, values = list(sparse.indices), list(sparse.values)
    if len(indices) != len(values):
        raise ApiFailure(400, f"Sparse vector of {vid}: indices and values have different lengths")
    if not indices:
        raise ApiFailure(400, f"Sparse vector of {vid} must contain at least one value")
    if len(indices) > MAX_SPARSE_NONZERO:
        raise ApiFailure(
            400, f"Sparse vector of {vid} has {len(indices)} non-zero values, over {MAX_SPARSE_NONZERO}"
        )
    if len(set(indices)) != len(indices):
        raise ApiFailure(400, f"Sparse vector of {vid} has duplicate indices")
    if any(not 0 <= i <= MAX_SPARSE_INDEX for i in indices) or not np.isfinite(values).all():
        raise ApiFailure(400, f"Sparse vector of {vid}: indices must be uint32 and values finite")
    return dict(zip(indices, (float(v) for v in values), strict=True))


class PineconeTestServer:
    """The server; see the module docstring. Start it with :func:`start_pinecone_server`."""

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_upsert_vectors: int = MAX_UPSERT_VECTORS,
        max_metadata_bytes: int = MAX_METADATA_BYTES,
        max_id_length: int = MAX_ID_LENGTH,
        latency_s: float = 0.0,
        initializing_describes: int = 0,
        host_scheme: bool = False,
    ) -> None:
        self.api_key = api_key  # None: any non-empty Api-Key header is accepted
        self.max_request_bytes = max_request_bytes
        self.max_upsert_vectors = max_upsert_vectors
        self.max_metadata_bytes = max_metadata_bytes
        self.max_id_length = max_id_length
        self.latency_s = latency_s
        self.initializing_describes = initializing_describes
        self.host_scheme = host_scheme
        self.url = ""
        self.requests: Counter[str] = Counter()
        self.log: list[RequestRecord] = []
        self.max_body_bytes = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._indexes: dict[str, _Index] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, str, Callable[..., Awaitable[Response]]]] = [
            ("POST", "/indexes", self._create_index),
            ("GET", "/indexes", self._list_indexes),
            ("GET", "/indexes/{name}", self._describe_index),
            ("DELETE", "/indexes/{name}", self._delete_index),
        ]
        self._data_routes: dict[tuple[str, str], Callable[..., Awaitable[Response]]] = {
            ("POST", "/vectors/upsert"): self._upsert,
            ("POST", "/query"): self._query,
            ("GET", "/vectors/fetch"): self._fetch,
            ("POST", "/vectors/delete"): self._delete,
            ("GET", "/vectors/list"): self._list,
            ("POST", "/describe_index_stats"): self._stats,
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> PineconeTestServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self._asgi, interface="asgi3", log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="pinecone-test-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Pinecone test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- test knobs and inspection ---------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 500,
        *,
        path: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``n`` requests (to route ``path`` only, if given) with ``status``.

        Routes are templates: ``/indexes``, ``/indexes/{name}``, ``/vectors/upsert``, ``/query``,
        ``/vectors/fetch``, ``/vectors/delete``, ``/vectors/list``, ``/describe_index_stats``,
        ``/namespaces/{namespace}``. ``retry_after`` (seconds) is sent as a ``Retry-After`` header;
        ``headers`` are sent as given (e.g. a ``Retry-After`` HTTP date).
        """
        with self._lock:
            self._faults.append(_Fault(n, status, path, retry_after, dict(headers or {})))

    def reset_counters(self) -> None:
        """Forget requests seen so far (not the stored data)."""
        with self._lock:
            self.requests.clear()
            self.log.clear()
            self.max_body_bytes = 0
            self.max_in_flight = 0

    def upserts(self) -> list[RequestRecord]:
        """Upsert requests seen, in order."""
        with self._lock:
            return [r for r in self.log if r.route == "/vectors/upsert"]

    def index_host(self, name: str) -> str:
        """The data-plane host of an index, as ``describe`` returns it."""
        host = f"{self.url.removeprefix('http://')}/_data/{name}"
        return f"http://{host}" if self.host_scheme else host

    def vectors(self, index: str, namespace: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
        """A copy of one namespace's records: id -> (values, metadata)."""
        with self._lock:
            ns = self._indexes[index].namespaces.get(namespace, {})
            return {vid: (vals.tolist(), dict(meta)) for vid, (vals, meta) in ns.items()}

    def sparse_of(self, index: str, namespace: str) -> dict[str, dict[int, float]]:
        """The sparse values of the records of one namespace that have them."""
        with self._lock:
            return {vid: dict(s) for vid, s in self._indexes[index].sparse.get(namespace, {}).items()}

    def index_names(self) -> list[str]:
        """Names of the indexes that exist."""
        with self._lock:
            return sorted(self._indexes)

    # -- ASGI ------------------------------------------------------------------------------------

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        method = request.method
        path = request.url.path
        route, handler, params = self._resolve(method, path)
        record = RequestRecord(method, route, 200, len(body), index=params.get("index"))
        record.start = time.monotonic()
        with self._lock:
            self.requests[route] += 1
            self.log.append(record)
            self.max_body_bytes = max(self.max_body_bytes, len(body))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        data_plane = "index" in params
        try:
            try:
                self._authenticate(request)
                self._inject_fault(route)
                if handler is None:
                    raise ApiFailure(404, f"Not found: {method} {path}")
                if data_plane and self.latency_s and method == "POST":
                    await asyncio.sleep(self.latency_s)
                response = await handler(request=request, body=body, record=record, **params)
            except ApiFailure as exc:
                response = self._error(exc, data_plane)
            record.status = response.status_code
            record.end = time.monotonic()
            await response(scope, receive, send)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _resolve(
        self, method: str, path: str
    ) -> tuple[str, Callable[..., Awaitable[Response]] | None, dict[str, str]]:
        if path.startswith("/_data/"):
            index, _, rest = path.removeprefix("/_data/").partition("/")
            route = "/" + rest
            if method == "DELETE" and route.startswith("/namespaces/") and route.count("/") == 2:
                namespace = route.removeprefix("/namespaces/")  # scope["path"] is already decoded
                return (
                    "/namespaces/{namespace}",
                    self._delete_namespace,
                    {"index": index, "namespace": namespace},
                )
            return route, self._data_routes.get((method, route)), {"index": index}
        if path == "/indexes":
            for m, template, handler in self._routes:
                if m == method and template == "/indexes":
                    return "/indexes", handler, {}
        elif path.startswith("/indexes/") and "/" not in path.removeprefix("/indexes/"):
            name = path.removeprefix("/indexes/")
            for m, template, handler in self._routes:
                if m == method and template == "/indexes/{name}":
                    return template, handler, {"name": name}
        return path, None, {}

    def _authenticate(self, request: Request) -> None:
        key = request.headers.get("api-key")
        if not key or (self.api_key is not None and key != self.api_key):
            raise ApiFailure(401, "Invalid API Key" if key else "Missing Api-Key header")

    def _inject_fault(self, route: str) -> None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.route in (None, route):
                    fault.remaining -= 1
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    headers.update(fault.headers)
                    raise ApiFailure(fault.status, f"Injected failure ({fault.status})", headers)

    @staticmethod
    def _error(exc: ApiFailure, data_plane: bool) -> Response:
        if data_plane:
            payload: dict[str, Any] = {
                "code": _GRPC.get(exc.status, 2),
                "message": exc.message,
                "details": [],
            }
        else:
            code = _HTTP_CODES.get(exc.status, "UNKNOWN")
            payload = {"error": {"code": code, "message": exc.message}, "status": exc.status}
        return Response(orjson.dumps(payload), exc.status, exc.headers, media_type="application/json")

    @staticmethod
    def _ok(content: bytes, status: int = 200) -> Response:
        return Response(content, status, media_type="application/json")

    # -- control plane ---------------------------------------------------------------------------

    def _model(self, idx: _Index) -> bytes:
        ready = idx.not_ready_left <= 0
        model = IndexModel(
            name=idx.name,
            status=IndexStatus(ready=ready, state="Ready" if ready else "Initializing"),
            schema=IndexSchema(
                fields={"_values": DenseVectorField(dimension=idx.dimension, metric=idx.metric)}
            ),
            deployment=ManagedDeployment(cloud=idx.cloud, region=idx.region),
            deletion_protection="disabled",
            host=self.index_host(idx.name),
        )
        data = _drop_none(msgspec.to_builtins(model))
        # IndexModel adds "https://" to the host when built; Pinecone sends it bare.
        data["host"] = self.index_host(idx.name)
        return orjson.dumps(data)

    async def _create_index(self, *, body: bytes, **_: Any) -> Response:
        raw = _json_body(body)
        try:
            request = CreateIndexRequest(
                schema=msgspec.convert(raw.get("schema"), IndexSchema),
                name=raw.get("name"),
                deployment=msgspec.convert(raw["deployment"], IndexDeployment)
                if "deployment" in raw
                else None,
                deletion_protection=raw.get("deletion_protection"),
                tags=raw.get("tags"),
            )
        except (msgspec.ValidationError, ValueError) as exc:
            raise ApiFailure(400, f"Invalid create index request: {exc}") from None
        name = request.name or ""
        if not name or len(name) > 45 or set(name) - _INDEX_NAME_CHARS or name[0] == "-" or name[-1] == "-":
            raise ApiFailure(
                400, f"Invalid index name {name!r}: 1-45 lowercase letters, digits or '-', alphanumeric ends"
            )
        assert isinstance(request.schema, IndexSchema)
        dense = [f for f in request.schema.fields.values() if isinstance(f, DenseVectorField)]
        if len(dense) != 1 or len(request.schema.fields) != 1:
            raise ApiFailure(400, "This test server supports one dense_vector field per index")
        dimension, metric = dense[0].dimension, dense[0].metric.lower()
        if not 1 <= dimension <= MAX_DIMENSION:
            raise ApiFailure(400, f"Dimension must be between 1 and {MAX_DIMENSION}, got {dimension}")
        if metric not in _METRICS:
            raise ApiFailure(400, f"Invalid metric {metric!r}: one of {', '.join(_METRICS)}")
        deployment = request.deployment
        if deployment is not None and not isinstance(deployment, ManagedDeployment):
            raise ApiFailure(400, "This test server supports managed (serverless) indexes only")
        cloud = deployment.cloud if deployment else "aws"
        region = deployment.region if deployment else "us-east-1"
        with self._lock:
            if name in self._indexes:
                raise ApiFailure(409, f"Resource {name} already exists")
            idx = _Index(name, dimension, metric, cloud, region, not_ready_left=self.initializing_describes)
            self._indexes[name] = idx
            return self._ok(self._model(idx), 201)

    async def _list_indexes(self, **_: Any) -> Response:
        with self._lock:
            models = [orjson.loads(self._model(i)) for i in self._indexes.values()]
        return self._ok(orjson.dumps({"indexes": models}))

    async def _describe_index(self, *, name: str, **_: Any) -> Response:
        with self._lock:
            idx = self._indexes.get(name)
            if idx is None:
                raise ApiFailure(404, f"Resource {name} not found")
            content = self._model(idx)
            idx.not_ready_left -= 1
        return self._ok(content)

    async def _delete_index(self, *, name: str, **_: Any) -> Response:
        with self._lock:
            if self._indexes.pop(name, None) is None:
                raise ApiFailure(404, f"Resource {name} not found")
        return Response(status_code=202)

    # -- data plane ------------------------------------------------------------------------------

    def _index(self, name: str) -> _Index:
        idx = self._indexes.get(name)
        if idx is None:
            raise ApiFailure(404, f"Index {name} not found")
        return idx

    async def _upsert(self, *, index: str, body: bytes, record: RequestRecord, **_: Any) -> Response:
        if len(body) > self.max_request_bytes:
            raise ApiFailure(
                413,
                f"Request size {len(body)} bytes exceeds the maximum supported size of "
                f"{self.max_request_bytes} bytes",
            )
        raw = _json_body(body)
        raw_vectors = raw.get("vectors")
        if not isinstance(raw_vectors, list) or not raw_vectors:
            raise ApiFailure(400, "vectors: at least one vector is required")
        record.vectors = len(raw_vectors)
        if len(raw_vectors) > self.max_upsert_vectors:
            raise ApiFailure(
                400, f"Batch size {len(raw_vectors)} exceeds the maximum of {self.max_upsert_vectors} vectors"
            )
        try:
            vectors = msgspec.convert(raw_vectors, list[Vector])
        except msgspec.ValidationError as exc:
            raise ApiFailure(400, f"Invalid vectors: {exc}") from None
        namespace = raw.get("namespace") or "__default__"
        with self._lock:
            idx = self._index(index)
            rows: list[tuple[str, np.ndarray, dict[str, Any]]] = []
            sparse_rows: dict[str, dict[int, float]] = {}
            for v in vectors:
                if not 1 <= len(v.id) <= self.max_id_length:
                    raise ApiFailure(
                        400, f"Vector ID must be 1-{self.max_id_length} characters, got {len(v.id)}"
                    )
                if len(v.values) != idx.dimension:
                    raise ApiFailure(
                        400,
                        f"Vector dimension {len(v.values)} does not match the dimension of the index "
                        f"{idx.dimension}",
                    )
                values = np.asarray(v.values, dtype=np.float32)
                if not np.any(values):
                    raise ApiFailure(400, f"Dense vectors must contain at least one non-zero value ({v.id})")
                meta = dict(v.metadata or {})
                _check_metadata(v.id, meta, self.max_metadata_bytes)
                rows.append((v.id, values, meta))
                sparse_rows[v.id] = _check_sparse(v.id, v.sparse_values)
            ns = idx.namespaces.setdefault(namespace, {})
            sparse_ns = idx.sparse.setdefault(namespace, {})
            for vid, values, meta in rows:
                ns[vid] = (values, meta)
                if sparse_rows[vid]:
                    sparse_ns[vid] = sparse_rows[vid]
                else:
                    sparse_ns.pop(vid, None)
        return self._ok(_encode(UpsertResponse(upserted_count=len(rows)), _UPSERT_SDK_FIELDS))

    async def _query(self, *, index: str, body: bytes, **_: Any) -> Response:
        raw = _json_body(body)
        top_k = raw.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ApiFailure(400, f"topK must be an integer between 1 and {MAX_TOP_K}")
        namespace = raw.get("namespace") or "__default__"
        include_values = bool(raw.get("includeValues"))
        include_metadata = bool(raw.get("includeMetadata"))
        flt = raw.get("filter")
        with self._lock:
            idx = self._index(index)
            ns = idx.namespaces.get(namespace, {})
            if "vector" in raw:
                query = np.asarray(raw["vector"], dtype=np.float32)
            elif "id" in raw and raw["id"] in ns:
                query = ns[raw["id"]][0]
            else:
                raise ApiFailure(400, "One of vector or id (of an existing vector) is required")
            if query.shape != (idx.dimension,):
                raise ApiFailure(
                    400,
                    f"Query vector dimension {query.size} does not match the dimension of the index "
                    f"{idx.dimension}",
                )
            items = [(vid, vals, meta) for vid, (vals, meta) in ns.items() if not flt or _matches(meta, flt)]
            metric = idx.metric
            sparse_query = raw.get("sparseVector")
            if sparse_query is not None:
                if metric != "dotproduct":
                    raise ApiFailure(
                        400, "Cannot query index with sparse values: the index's metric is not dotproduct"
                    )
                q_sparse = _check_sparse("query", msgspec.convert(sparse_query, SparseValues))
                stored = idx.sparse.get(namespace, {})
                sparse_scores = np.array(
                    [
                        sum(w * stored.get(vid, {}).get(i, 0.0) for i, w in q_sparse.items())
                        for vid, _, _ in items
                    ]
                )
        if not items:
            matches: list[ScoredVector] = []
        else:
            matrix = np.stack([vals for _, vals, _ in items]).astype(np.float64)
            q = query.astype(np.float64)
            if metric == "cosine":
                norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(q) or 1.0)
                scores = matrix @ q / np.where(norms == 0, 1.0, norms)
                order = np.argsort(-scores, kind="stable")
            elif metric == "dotproduct":
                scores = matrix @ q
                if sparse_query is not None:  # sparse-dense: the two dot products add up
                    scores = scores + sparse_scores
                order = np.argsort(-scores, kind="stable")
            else:  # euclidean: Pinecone returns the squared distance, closest (lowest) first
                scores = ((matrix - q) ** 2).sum(axis=1)
                order = np.argsort(scores, kind="stable")
            matches = [
                ScoredVector(
                    id=items[i][0],
                    score=float(scores[i]),
                    values=items[i][1].tolist() if include_values else [],
                    metadata=dict(items[i][2]) if include_metadata else None,
                )
                for i in order[:top_k]
            ]
        response = QueryResponse(matches=matches, namespace=namespace, usage=Usage(read_units=1))
        return self._ok(_encode(response))

    async def _fetch(self, *, index: str, request: Request, **_: Any) -> Response:
        query = parse_qs(request.url.query)
        ids = query.get("ids", [])
        if not ids or len(ids) > MAX_IDS_PER_REQUEST:
            raise ApiFailure(400, f"ids: 1-{MAX_IDS_PER_REQUEST} ids are required")
        namespace = (query.get("namespace") or ["__default__"])[0]
        with self._lock:
            ns = self._index(index).namespaces.get(namespace, {})
            found = {
                vid: Vector(id=vid, values=ns[vid][0].tolist(), metadata=dict(ns[vid][1]) or None)
                for vid in ids
                if vid in ns
            }
        return self._ok(_encode(FetchResponse(vectors=found, namespace=namespace, usage=Usage(read_units=1))))

    async def _delete(self, *, index: str, body: bytes, **_: Any) -> Response:
        raw = _json_body(body)
        namespace = raw.get("namespace") or "__default__"
        ids, delete_all, flt = raw.get("ids"), raw.get("deleteAll"), raw.get("filter")
        if sum(x is not None and x is not False for x in (ids, delete_all, flt)) != 1:
            raise ApiFailure(400, "Exactly one of ids, deleteAll or filter is required")
        if ids is not None and not 1 <= len(ids) <= MAX_IDS_PER_REQUEST:
            raise ApiFailure(400, f"ids: 1-{MAX_IDS_PER_REQUEST} ids per delete request")
        with self._lock:
            idx = self._index(index)
            ns = idx.namespaces.get(namespace)
            if ns is None:
                if delete_all:
                    raise ApiFailure(404, f"Namespace not found: {namespace}")
                return self._ok(b"{}")
            if delete_all:
                del idx.namespaces[namespace]
            elif ids is not None:
                for vid in ids:
                    ns.pop(vid, None)
            else:
                for vid in [vid for vid, (_, meta) in ns.items() if _matches(meta, flt)]:
                    del ns[vid]
            if not ns:
                idx.namespaces.pop(namespace, None)
        return self._ok(b"{}")

    async def _delete_namespace(self, *, index: str, namespace: str, **_: Any) -> Response:
        with self._lock:
            idx = self._index(index)
            if idx.namespaces.pop(namespace, None) is None:
                raise ApiFailure(404, f"Namespace not found: {namespace}")
        return Response(status_code=202)

    async def _list(self, *, index: str, request: Request, **_: Any) -> Response:
        query = request.query_params
        namespace = query.get("namespace") or "__default__"
        prefix = query.get("prefix") or ""
        try:
            limit = int(query.get("limit") or LIST_LIMIT_MAX)
        except ValueError:
            raise ApiFailure(400, "limit must be an integer") from None
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise ApiFailure(400, f"limit must be between 1 and {LIST_LIMIT_MAX}")
        token = query.get("paginationToken")
        after = ""
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                raise ApiFailure(400, "Invalid paginationToken") from None
        with self._lock:
            ns = self._index(index).namespaces.get(namespace, {})
            ids = sorted(vid for vid in ns if vid.startswith(prefix) and (not after or vid > after))
        page, more = ids[:limit], len(ids) > limit
        pagination = Pagination(next=base64.urlsafe_b64encode(page[-1].encode()).decode()) if more else None
        response = ListResponse(
            vectors=[ListItem(id=vid) for vid in page],
            pagination=pagination,
            namespace=namespace,
            usage=Usage(read_units=1),
        )
        return self._ok(_encode(response))

    async def _stats(self, *, index: str, body: bytes, **_: Any) -> Response:
        if _json_body(body).get("filter"):
            raise ApiFailure(400, "Serverless indexes do not support describe_index_stats with a filter")
        with self._lock:
            idx = self._index(index)
            namespaces = {name: NamespaceSummary(vector_count=len(ns)) for name, ns in idx.namespaces.items()}
            response = DescribeIndexStatsResponse(
                namespaces=namespaces,
                dimension=idx.dimension,
                index_fullness=0.0,
                total_vector_count=sum(s.vector_count for s in namespaces.values()),
                metric=idx.metric,
                vector_type="dense",
            )
        return self._ok(_encode(response))


# UpsertResponse fields the SDK fills in itself when it batches; not part of the wire format.
_UPSERT_SDK_FIELDS = (
    "totalItemCount",
    "failedItemCount",
    "totalBatchCount",
    "successfulBatchCount",
    "failedBatchCount",
    "errors",
)


def start_pinecone_server(**opts: Any) -> PineconeTestServer:
    """Start a :class:`PineconeTestServer` (keyword options as its constructor); ``.url``, ``.stop()``."""
    if _SDK_MISSING is not None:
        raise _SDK_MISSING
    return PineconeTestServer(**opts).start()


@pytest.fixture
def pinecone_server() -> Iterator[PineconeTestServer]:
    """A fresh Pinecone test server; its API key is ``DEFAULT_API_KEY``."""
    pytest.importorskip("pinecone")
    server = start_pinecone_server()
    try:
        yield server
    finally:
        server.stop()
