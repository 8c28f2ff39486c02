"""PineconeStore with the real ``pinecone`` SDK against the in-memory Pinecone test server."""

# ruff: noqa: E402  (imports follow the importorskip of the optional pinecone extra)

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pinecone = pytest.importorskip("pinecone")

import httpx  # dependencies of the pinecone SDK
import orjson

from ingest.config import PineconeStoreConfig
from ingest.errors import ConfigError, DimensionMismatchError, PermanentError, TransientError
from ingest.stores import VectorStore, make_store
from ingest.stores.base import VectorRecord
from ingest.stores.pinecone import (
    MAX_METADATA_BYTES,
    MAX_REQUEST_BYTES,
    MAX_UPSERT_RECORDS,
    PineconeStore,
    index_name_for,
)
from tests.servers.pinecone_server import DEFAULT_API_KEY, PineconeTestServer, start_pinecone_server

KEY = DEFAULT_API_KEY


@pytest.fixture
def server() -> Iterator[PineconeTestServer]:
    srv = start_pinecone_server()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", KEY)


def store_for(server: PineconeTestServer, name: str = "docs", **opts: Any) -> PineconeStore:
    """A store on the test server, with retry and polling delays small enough for tests."""
    cfg_keys = ("index", "metric", "max_concurrency", "api_key_env")
    cfg = PineconeStoreConfig(
        kind="pinecone", host=server.url, **{k: opts.pop(k) for k in cfg_keys if k in opts}
    )
    opts.setdefault("backoff_initial_s", 0.01)
    opts.setdefault("backoff_max_s", 0.05)
    opts.setdefault("retry_budget_s", 5.0)
    opts.setdefault("ready_poll_s", 0.01)
    return PineconeStore(cfg, name, **opts)


def rec(rid: str, vector: Any, **metadata: Any) -> VectorRecord:
    return VectorRecord(rid, np.asarray(vector, dtype=np.float32), metadata)


def random_records(
    n: int, dim: int, seed: int = 0, prefix: str = "doc", **metadata: Any
) -> list[VectorRecord]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [rec(f"{prefix}{i % 10}#{i:05d}", vectors[i], **metadata) for i in range(n)]


def upsert_count(server: PineconeTestServer) -> int:
    return server.requests["/vectors/upsert"]


# -- control plane -----------------------------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize("metric", ["cosine", "dotproduct", "euclidean"])
def test_ensure_creates_the_index_with_dimension_and_metric(server: PineconeTestServer, metric: str) -> None:
    store = store_for(server, "My_Crawl", metric=metric)
    store.ensure(8, metric)
    store.ensure(8, metric)  # idempotent: the second call only describes

    described = pinecone.Pinecone(api_key=KEY, host=server.url).indexes.describe("my-crawl")
    assert (described.dimension, described.metric) == (8, metric)
    assert described.deployment.cloud == "aws" and described.deployment.region == "us-east-1"
    assert [r.method for r in server.log if r.route == "/indexes"] == ["POST"]
    assert store.target == f"pinecone:{server.url.removeprefix('http://')}/my-crawl/My_Crawl"


@pytest.mark.server
def test_ensure_waits_until_the_index_is_ready() -> None:
    srv = start_pinecone_server(initializing_describes=3)
    try:
        store = store_for(srv)
        store.ensure(4)
        assert srv.requests["/indexes/{name}"] >= 4
        assert store.upsert([rec("a#1", [1, 0, 0, 0])]) == 1
    finally:
        srv.stop()


@pytest.mark.server
def test_dimension_mismatch_raises_before_anything_is_written(server: PineconeTestServer) -> None:
    store_for(server, "v1", index="shared").ensure(8)
    other = store_for(server, "v2", index="shared")

    with pytest.raises(DimensionMismatchError, match=r"'shared' holds 8-dimensional.*makes 16-dimensional"):
        other.ensure(16)
    with pytest.raises(DimensionMismatchError, match=r"metric 'cosine'.*metric 'euclidean'"):
        other.ensure(8, "euclidean")
    with pytest.raises(DimensionMismatchError):  # the index's dimension is checked before sending
        other.upsert([rec("a#1", np.ones(16))])
    assert upsert_count(server) == 0


@pytest.mark.server
def test_reads_of_a_missing_index_are_empty_and_writes_fail(server: PineconeTestServer) -> None:
    store = store_for(server)
    assert store.count() == 0
    assert store.list_ids() == []
    assert store.query(np.ones(4), 3) == []
    assert store.delete(["a#1"]) == 1
    store.drop()
    with pytest.raises(PermanentError, match="does not exist"):
        store.upsert([rec("a#1", [1, 0, 0, 0])])


@pytest.mark.server
def test_registry_builds_a_pinecone_store(server: PineconeTestServer) -> None:
    store = make_store(PineconeStoreConfig(kind="pinecone", host=server.url, index="idx"), "ns")
    assert isinstance(store, PineconeStore)
    assert isinstance(store, VectorStore)
    assert (store.index_name, store.namespace) == ("idx", "ns")


def test_index_name_for_follows_pinecone_rules() -> None:
    assert index_name_for("My_Crawl") == "my-crawl"
    assert index_name_for("docs") == "docs"
    long_a, long_b = index_name_for("a" * 60 + "-v1"), index_name_for("a" * 60 + "-v2")
    assert long_a != long_b
    assert all(len(n) <= 45 and n[0].isalnum() and n[-1].isalnum() for n in (long_a, long_b))
    with pytest.raises(ConfigError):
        index_name_for("__")


# -- data plane --------------------------------------------------------------------------------


@pytest.mark.server
def test_round_trip_returns_the_nearest_first(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(3)
    store.upsert(
        [
            rec("a#1", [1, 0, 0], text="alpha", lang="en"),
            rec("b#1", [0.8, 0.6, 0], text="beta", lang="de"),
            rec("c#1", [0, 0, 1], text="gamma", lang="en"),
        ]
    )
    hits = store.query(np.array([1, 0.1, 0], dtype=np.float32), k=3)
    assert [h.id for h in hits] == ["a#1", "b#1", "c#1"]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].metadata == {"text": "alpha", "lang": "en"}
    assert [h.id for h in store.query(np.array([1, 0.1, 0]), k=3, filter={"lang": "en"})] == ["a#1", "c#1"]
    assert [h.id for h in store.query(np.array([1, 0, 0]), k=1, filter={"lang": "de", "text": "beta"})] == [
        "b#1"
    ]


@pytest.mark.server
def test_euclidean_scores_are_higher_for_closer_records(server: PineconeTestServer) -> None:
    store = store_for(server, metric="euclidean")
    store.ensure(2, "euclidean")
    store.upsert([rec("far#1", [10, 10]), rec("near#1", [1, 1.5])])
    hits = store.query(np.array([1.0, 1.0]), k=2)
    assert [h.id for h in hits] == ["near#1", "far#1"]
    assert hits[0].score == pytest.approx(-0.25) and hits[0].score > hits[1].score


@pytest.mark.server
def test_upserting_the_same_ids_twice_leaves_one_copy(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(4)
    records = random_records(30, 4)
    assert store.upsert(records) == 30
    assert store.upsert(records + records[:5]) == 30  # repeated ids in one call are written once
    assert store.count() == 30


@pytest.mark.server
def test_delete_a_page_by_prefix(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(4)
    store.upsert(random_records(40, 4))  # doc0# .. doc9#, 4 chunks each
    page_ids = store.list_ids("doc3#")
    assert len(page_ids) == 4 and all(i.startswith("doc3#") for i in page_ids)
    assert store.delete(page_ids) == 4
    assert store.list_ids("doc3#") == []
    assert store.count() == 36


@pytest.mark.server
def test_list_ids_follows_pagination(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(4)
    records = random_records(250, 4)
    store.upsert(records)
    assert sorted(store.list_ids()) == sorted(r.id for r in records)
    assert server.requests["/vectors/list"] == 3  # 100 + 100 + 50
    assert len(store.list_ids("doc1#")) == 25


@pytest.mark.server
def test_delete_batches_at_most_1000_ids(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(4)
    records = random_records(2100, 4)
    store.upsert(records)
    assert store.delete([r.id for r in records]) == 2100
    deletes = [r for r in server.log if r.route == "/vectors/delete"]
    assert len(deletes) == 3 and all(r.status == 200 for r in deletes)
    assert store.count() == 0


@pytest.mark.server
def test_drop_empties_only_its_namespace(server: PineconeTestServer) -> None:
    v1, v2 = store_for(server, "v1", index="shared"), store_for(server, "v2", index="shared")
    v1.ensure(4)
    v2.ensure(4)
    v1.upsert(random_records(20, 4))
    v2.upsert(random_records(5, 4))
    v1.drop()
    assert (v1.count(), v1.list_ids()) == (0, [])
    assert v2.count() == 5
    v1.drop()  # dropping an absent namespace is fine


# -- batching and limits -----------------------------------------------------------------------


@pytest.mark.server
def test_2500_small_records_go_in_3_requests(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(8)
    assert store.upsert(random_records(2500, 8, text="short")) == 2500
    sizes = [r.vectors for r in server.upserts()]
    assert sorted(sizes) == [500, 1000, 1000]
    assert max(sizes) <= MAX_UPSERT_RECORDS
    assert store.count() == 2500


@pytest.mark.server
def test_large_records_are_split_under_2_mb(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(1536)
    records = random_records(90, 1536, text='é"x' * 6000)  # ~31 KB vector + ~30 KB metadata each
    assert store.upsert(records) == 90

    upserts = server.upserts()
    assert len(upserts) >= 3 and all(r.status == 200 for r in upserts)
    assert sum(r.vectors for r in upserts) == 90
    assert server.max_body_bytes <= MAX_REQUEST_BYTES <= server.max_request_bytes
    # Packing is tight: one more record would have crossed the limit the server enforces (413).
    record_bytes = max(r.body_bytes / r.vectors for r in upserts)
    assert sorted(r.body_bytes for r in upserts)[-2] > MAX_REQUEST_BYTES - 1.2 * record_bytes
    assert store.count() == 90


@pytest.mark.server
def test_metadata_over_40_kb_is_trimmed_and_marked(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(4)
    text = ('line "quoted" \\ ünïcødé\n' * 6000) + "END"
    store.upsert(
        [rec("big#1", [1, 2, 3, 4], text=text, title="Big page"), rec("small#1", [1, 0, 0, 0], text="hi")]
    )

    stored = server.vectors(store.index_name, store.namespace)
    big = stored["big#1"][1]
    assert big["text_trimmed"] is True and big["title"] == "Big page"
    assert text.startswith(big["text"]) and len(big["text"]) < len(text)
    assert MAX_METADATA_BYTES - 64 < len(orjson.dumps(big)) <= MAX_METADATA_BYTES
    assert stored["small#1"][1] == {"text": "hi"}


@pytest.mark.server
def test_all_zero_vectors_are_refused_before_sending(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(4)
    with pytest.raises(PermanentError, match=r"'z#1'.*all zeros"):
        store.upsert([rec("a#1", [1, 0, 0, 0]), rec("z#1", [0, 0, 0, 0])])
    with pytest.raises(PermanentError, match="1-512 characters"):
        store.upsert([rec("x" * 513, [1, 0, 0, 0])])
    assert upsert_count(server) == 0


@pytest.mark.server
def test_upserts_run_concurrently() -> None:
    srv = start_pinecone_server(latency_s=0.15)
    try:
        store = store_for(srv, max_concurrency=4)
        store.ensure(4)
        store.upsert(random_records(6000, 4))
        assert len(srv.upserts()) == 6
        assert srv.max_in_flight >= 3
    finally:
        srv.stop()


@pytest.mark.server
def test_a_data_plane_host_with_a_scheme_works_too() -> None:
    srv = start_pinecone_server(host_scheme=True)
    try:
        store = store_for(srv)
        store.ensure(2)
        store.upsert([rec("a#1", [1, 0])])
        assert [h.id for h in store.query(np.array([1.0, 0.0]), 1)] == ["a#1"]
    finally:
        srv.stop()


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.server
def test_429_then_success_is_retried_once_by_the_store(server: PineconeTestServer) -> None:
    store = store_for(server)
    store.ensure(4)
    server.fail_next(2, 429, path="/vectors/upsert", retry_after=0.01)
    assert store.upsert([rec("a#1", [1, 0, 0, 0])]) == 1
    # 2 failures + 1 success: only the store retries (the SDK's own retries are switched off).
    assert [r.status for r in server.upserts()] == [429, 429, 200]
    assert store.count() == 1


@pytest.mark.server
def test_the_sdk_does_not_retry_on_its_own(server: PineconeTestServer) -> None:
    store = store_for(server, max_attempts=1)
    store.ensure(4)
    server.fail_next(1, 429, path="/vectors/upsert")
    with pytest.raises(TransientError, match=r"rate limited \(429\)"):
        store.upsert([rec("a#1", [1, 0, 0, 0])])
    assert upsert_count(server) == 1


@pytest.mark.server
def test_persistent_500_becomes_transient_error_after_the_budget(server: PineconeTestServer) -> None:
    store = store_for(server, max_attempts=3, retry_budget_s=2.0)
    store.ensure(4)
    server.fail_next(100, 500, path="/vectors/upsert")
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"server error 500.*gave up after 3 attempts"):
        store.upsert([rec("a#1", [1, 0, 0, 0])])
    assert time.monotonic() - started < 2.0
    assert upsert_count(server) == 3


def test_retry_after_is_honoured_in_full_above_the_backoff_ceiling(server: PineconeTestServer) -> None:
    # The store used to cap the server's Retry-After at its backoff ceiling (20 s by default; here
    # 0.05 s); now it waits as long as asked.
    store = store_for(server, backoff_max_s=0.05)
    store.ensure(4)
    server.fail_next(1, 429, path="/vectors/upsert", retry_after=0.4)
    assert store.upsert([rec("a#1", [1, 0, 0, 0])]) == 1
    first, second = server.upserts()
    assert (first.status, second.status) == (429, 200)
    assert second.start - first.end >= 0.4


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
def test_retry_after_beyond_the_budget_gives_up_at_once(server: PineconeTestServer, as_date: bool) -> None:
    store = store_for(server, retry_budget_s=2.0)
    store.ensure(4)
    if as_date:  # the SDK reads only seconds; the shared parser reads HTTP dates too (RFC 9110)
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
        server.fail_next(1, 503, path="/vectors/upsert", headers={"Retry-After": date})
    else:
        server.fail_next(1, 429, path="/vectors/upsert", retry_after=60)
    with pytest.raises(
        TransientError, match=r"asked to wait [\d.]+s, more than the .*store\.retry_budget_s"
    ) as err:
        store.upsert([rec("a#1", [1, 0, 0, 0])])
    assert err.value.retry_after is not None and 55 <= err.value.retry_after <= 60
    assert upsert_count(server) == 1


def test_retry_budget_and_timeout_come_from_the_config(server: PineconeTestServer) -> None:
    cfg = PineconeStoreConfig.model_validate(
        {"kind": "pinecone", "host": server.url, "retry_budget_s": 0.3, "timeout_s": 5}
    )
    assert (cfg.retry_budget_s, cfg.timeout_s) == (0.3, 5)
    assert PineconeStoreConfig(kind="pinecone").retry_budget_s == 120
    store = make_store(cfg, "docs")
    store.ensure(4)
    server.fail_next(1000, 500, path="/vectors/upsert")
    with pytest.raises(TransientError, match=r"retry budget of 0\.3s \(store\.retry_budget_s\) is spent"):
        store.upsert([rec("a#1", [1, 0, 0, 0])])
    assert upsert_count(server) > 1


def test_request_timeout_comes_from_the_config() -> None:
    srv = start_pinecone_server(latency_s=2.0)
    try:
        cfg = PineconeStoreConfig(kind="pinecone", host=srv.url, timeout_s=0.2, retry_budget_s=0.1)
        store = PineconeStore(cfg, "docs")
        store.ensure(4)
        with pytest.raises(TransientError, match="PineconeTimeoutError"):
            store.upsert([rec("a#1", [1, 0, 0, 0])])
    finally:
        srv.stop()


def test_one_budget_for_all_requests_of_one_upsert(server: PineconeTestServer) -> None:
    store = store_for(server, retry_budget_s=0.5, max_concurrency=4)
    store.ensure(4)
    server.fail_next(100_000, 503, path="/vectors/upsert")
    with pytest.raises(TransientError, match=r"retry budget of 0\.5s"):
        store.upsert(random_records(4000, 4))  # 4 requests, failing together
    assert len(server.upserts()) >= 4


@pytest.mark.server
def test_503_on_describe_is_retried(server: PineconeTestServer) -> None:
    server.fail_next(2, 503, path="/indexes/{name}")
    store = store_for(server)
    store.ensure(4)
    assert server.index_names() == ["docs"]


@pytest.mark.server
def test_unreachable_server_is_transient() -> None:
    srv = start_pinecone_server()
    srv.stop()
    store = store_for(srv, max_attempts=2, retry_budget_s=1.0)
    with pytest.raises(TransientError, match="PineconeConnectionError"):
        store.ensure(4)


@pytest.mark.server
def test_wrong_key_is_permanent_and_never_shown(
    server: PineconeTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "pc-wrong-secret-0123456789"
    monkeypatch.setenv("WEBVEC_PC_KEY", secret)
    store = store_for(server, api_key_env="WEBVEC_PC_KEY")
    store.check()
    with pytest.raises(PermanentError) as err:
        store.ensure(4)
    assert "401" in str(err.value) and "$WEBVEC_PC_KEY" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value)
    assert secret not in store.target
    assert server.requests["/indexes/{name}"] == 1  # not retried


@pytest.mark.server
def test_check_names_the_missing_variable(
    server: PineconeTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINECONE_API_KEY")
    store = store_for(server)
    with pytest.raises(ConfigError, match="PINECONE_API_KEY is not set"):
        store.check()
    monkeypatch.setenv("PINECONE_API_KEY", "  ")
    with pytest.raises(ConfigError, match="PINECONE_API_KEY"):
        store.check()
    assert server.log == []


# -- the test server itself --------------------------------------------------------------------


def raw(
    server: PineconeTestServer, method: str, path: str, body: Any = None, **headers: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else None)
    return httpx.request(
        method,
        server.url + path,
        content=content,
        headers={"Api-Key": KEY, "Content-Type": "application/json", **headers},
        timeout=10,
    )


def create_raw_index(server: PineconeTestServer, name: str = "raw", dimension: int = 4) -> str:
    body = {
        "name": name,
        "schema": {
            "fields": {"_values": {"type": "dense_vector", "dimension": dimension, "metric": "cosine"}}
        },
        "deployment": {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
    }
    assert raw(server, "POST", "/indexes", body).status_code == 201
    return f"/_data/{name}"


@pytest.mark.server
def test_server_enforces_pinecone_limits(server: PineconeTestServer) -> None:
    data = create_raw_index(server)

    def upsert(vectors: list[dict[str, Any]], **headers: str) -> httpx.Response:
        return raw(
            server, "POST", f"{data}/vectors/upsert", {"vectors": vectors, "namespace": "ns"}, **headers
        )

    ok = {"id": "a", "values": [1.0, 0.0, 0.0, 0.0]}
    assert upsert([ok]).status_code == 200
    assert upsert([{**ok, "id": "x" * 512}]).status_code == 200

    too_big = orjson.dumps({"vectors": [ok], "namespace": "ns", "pad": "x" * MAX_REQUEST_BYTES})
    response = raw(server, "POST", f"{data}/vectors/upsert", too_big)
    assert response.status_code == 413 and "exceeds the maximum" in response.json()["message"]
    assert upsert([{**ok, "id": f"v{i}"} for i in range(1001)]).status_code == 400
    big_meta = upsert([{**ok, "metadata": {"text": "x" * 41_000}}])
    assert big_meta.status_code == 400 and "exceeds the limit of 40960 bytes" in big_meta.json()["message"]
    assert upsert([{**ok, "id": "x" * 513}]).status_code == 400
    zero = upsert([{"id": "z", "values": [0.0] * 4}])
    assert zero.status_code == 400 and "non-zero" in zero.json()["message"]
    wrong_dim = upsert([{"id": "w", "values": [1.0, 2.0]}])
    assert wrong_dim.status_code == 400 and "does not match the dimension" in wrong_dim.json()["message"]
    assert upsert([{**ok, "metadata": {"nested": {"a": 1}}}]).status_code == 400

    no_key = httpx.post(f"{server.url}{data}/vectors/upsert", json={"vectors": [ok]}, timeout=10)
    assert no_key.status_code == 401
    assert upsert([ok], **{"Api-Key": "nope"}).status_code == 401
    assert raw(server, "GET", "/indexes", **{"Api-Key": "nope"}).json()["error"]["code"] == "UNAUTHENTICATED"

    assert server.vectors("raw", "ns").keys() == {"a", "x" * 512}  # rejected requests wrote nothing


@pytest.mark.server
def test_server_speaks_the_sdk_data_plane(server: PineconeTestServer) -> None:
    pc = pinecone.Pinecone(api_key=KEY, host=server.url)
    pc.indexes.create(
        name="sdk",
        dimension=2,
        metric="dotproduct",
        spec=pinecone.ServerlessSpec(cloud="aws", region="us-east-1"),
    )
    index = pc.index(host="http://" + pc.indexes.describe("sdk").host.removeprefix("https://"))
    index.upsert(
        vectors=[
            {"id": "a", "values": [1.0, 0.0], "metadata": {"genre": "drama", "year": 2001}},
            {"id": "b", "values": [2.0, 1.0], "metadata": {"genre": "comedy", "year": 2010}},
            {"id": "c", "values": [0.5, 3.0], "metadata": {"genre": "drama", "year": 2020}},
        ],
        namespace="ns",
    )
    result = index.query(vector=[1.0, 0.0], top_k=3, namespace="ns", include_values=True)
    assert [m.id for m in result.matches] == ["b", "a", "c"] and result.matches[0].values == [2.0, 1.0]
    flt = {"$and": [{"genre": {"$in": ["drama", "thriller"]}}, {"year": {"$gte": 2005}}]}
    assert [m.id for m in index.query(vector=[1.0, 0.0], top_k=3, namespace="ns", filter=flt).matches] == [
        "c"
    ]
    assert set(index.fetch(ids=["a", "zz"], namespace="ns").vectors) == {"a"}
    index.delete(filter={"genre": {"$eq": "comedy"}}, namespace="ns")
    stats = index.describe_index_stats()
    assert (stats.dimension, stats.namespaces["ns"].vector_count, stats.total_vector_count) == (2, 2, 2)
    page = index.list_paginated(namespace="ns", limit=1)
    assert [v.id for v in page.vectors] == ["a"] and page.pagination is not None
    index.delete(delete_all=True, namespace="ns")
    assert index.describe_index_stats().namespaces == {}
    assert [i.name for i in pc.indexes.list()] == ["sdk"]
    pc.indexes.delete("sdk", timeout=-1)
    assert server.index_names() == []
