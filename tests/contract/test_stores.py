"""One contract for every VectorStore: embedded Chroma, a `chroma run` server, the Pinecone test server,
PostgreSQL with pgvector, Qdrant's local mode, Milvus Lite, and the in-memory store of the fast
tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.config import (
    ChromaStoreConfig,
    MemoryStoreConfig,
    MilvusStoreConfig,
    PgvectorStoreConfig,
    PineconeStoreConfig,
    QdrantStoreConfig,
)
from ingest.errors import DimensionMismatchError
from ingest.stores import VectorRecord, VectorStore, make_store
from tests.servers.chroma_server import chroma_server
from tests.servers.pgvector_server import PgvectorServer

DIM = 8
STORES = [
    "memory",
    "chroma-embedded",
    pytest.param("chroma-server", marks=pytest.mark.server),
    pytest.param("pinecone", marks=pytest.mark.server),
    pytest.param("pgvector", marks=pytest.mark.server),
    "qdrant-local",  # default path: $WEBVEC_HOME/qdrant, a fresh one per test
    "milvus-lite",  # default uri: $WEBVEC_HOME/milvus.db, a fresh one per test
]


@pytest.fixture(scope="module")
def chroma_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def pinecone_srv() -> Iterator[object]:
    from tests.servers.pinecone_server import start_pinecone_server

    srv = start_pinecone_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pgvector_db(pgvector_server: PgvectorServer) -> str:
    """A database of the session's PostgreSQL for this module; its URL."""
    return pgvector_server.create_database()


@pytest.fixture(params=STORES)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[VectorStore]:
    s = _make(request, tmp_path, monkeypatch)
    yield s
    close = getattr(s, "close", None)
    if close is not None:  # local modes lock their files, and Milvus Lite runs a server thread
        close()


def _make(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VectorStore:
    name = f"contract-{request.node.name.split('[')[0][-20:].replace('_', '-')}"
    if request.param == "memory":  # each test has its own $WEBVEC_HOME, hence a fresh collection
        return make_store(MemoryStoreConfig(kind="memory"), name)
    if request.param == "chroma-embedded":
        return make_store(ChromaStoreConfig(path=str(tmp_path / "chroma")), name)
    if request.param == "chroma-server":
        srv = request.getfixturevalue("chroma_srv")
        s = make_store(ChromaStoreConfig(host=srv.host, port=srv.port), name)
        s.drop()  # the server outlives one test
        return s
    if request.param == "pgvector":
        monkeypatch.setenv("WEBVEC_PGVECTOR_URL", request.getfixturevalue("pgvector_db"))
        s = make_store(PgvectorStoreConfig(kind="pgvector"), name)
        s.drop()  # the database outlives one test
        request.addfinalizer(s.close)  # type: ignore[attr-defined]
        return s
    if request.param == "qdrant-local":
        return make_store(QdrantStoreConfig(kind="qdrant"), name)
    if request.param == "milvus-lite":
        return make_store(MilvusStoreConfig(kind="milvus"), name)
    srv = request.getfixturevalue("pinecone_srv")
    monkeypatch.setenv("PINECONE_API_KEY", srv.api_key)
    s = make_store(PineconeStoreConfig(kind="pinecone", host=srv.url, index="contract"), name)
    s.ensure(DIM)
    s.drop()
    return s


def _vec(i: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(i)
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _records(doc: str, n: int, start: int = 0) -> list[VectorRecord]:
    return [
        VectorRecord(
            f"{doc}#{i:04d}", _vec(start + i), {"doc_id": doc, "url": f"http://h/{doc}", "text": f"t{i}"}
        )
        for i in range(n)
    ]


def test_round_trip_and_query_order(store: VectorStore) -> None:
    store.check()
    store.ensure(DIM)
    store.upsert(_records("docA", 20))
    assert store.count() == 20
    hits = store.query(_vec(7), k=5)
    assert hits[0].id == "docA#0007" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].metadata["text"] == "t7" and hits[0].metadata["url"] == "http://h/docA"
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and len(hits) == 5


def test_upsert_same_ids_twice_leaves_one_copy(store: VectorStore) -> None:
    store.ensure(DIM)
    store.upsert(_records("docA", 10))
    again = [VectorRecord(r.id, r.vector, {**r.metadata, "text": "updated"}) for r in _records("docA", 10)]
    store.upsert(again)
    assert store.count() == 10
    assert store.query(_vec(3), k=1)[0].metadata["text"] == "updated"


def test_delete_by_page(store: VectorStore) -> None:
    store.ensure(DIM)
    store.upsert(_records("docA", 5) + _records("docB", 7, start=100))
    ids = store.list_ids("docB#")
    assert sorted(ids) == [f"docB#{i:04d}" for i in range(7)]
    store.delete(ids)
    assert store.list_ids("docB#") == [] and store.count() == 5
    store.delete(["docA#0000", "never-existed#0"])
    assert sorted(store.list_ids()) == [f"docA#{i:04d}" for i in range(1, 5)]


def test_query_filter(store: VectorStore) -> None:
    store.ensure(DIM)
    store.upsert(_records("docA", 5) + _records("docB", 5, start=5))
    hits = store.query(_vec(1), k=10, filter={"doc_id": "docB"})
    assert hits and all(h.id.startswith("docB#") for h in hits)


def test_batches_beyond_vendor_limits(store: VectorStore) -> None:
    store.ensure(DIM)
    store.upsert(_records("big", 2500))  # Pinecone: 1000 per request; Chroma: its max batch size
    assert store.count() == 2500
    assert len(store.list_ids("big#")) == 2500


def test_dimension_mismatch_is_refused(store: VectorStore) -> None:
    store.ensure(DIM)
    store.upsert(_records("docA", 1))
    with pytest.raises(DimensionMismatchError):
        store.ensure(DIM * 2)


def test_drop(store: VectorStore) -> None:
    store.ensure(DIM)
    store.upsert(_records("docA", 3))
    store.drop()
    assert store.count() == 0
