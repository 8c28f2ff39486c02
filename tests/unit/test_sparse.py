"""BM25 sparse vectors (``store.sparse``): the encoding, and hybrid search as one sparse-dense query in
Pinecone (the real SDK against the in-memory Pinecone test server, which scores as Pinecone does)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pinecone")

import numpy as np
import yaml
from pydantic import ValidationError

from ingest.bookkeeping import Hooks
from ingest.config import PineconeStoreConfig, load_crawl
from ingest.env import RunEnv, make_env
from ingest.errors import PermanentError
from ingest.query import search
from ingest.run import RunState, process_batch
from ingest.sparse import MAX_NONZERO, encode_document, encode_query, term_index, terms
from ingest.state import FetchedPage
from ingest.summary import RunSummary
from tests.servers.pinecone_server import DEFAULT_API_KEY, PineconeTestServer, start_pinecone_server

SITE = "http://docs.test"


def _norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def test_documents_carry_saturated_term_frequencies_and_queries_idf() -> None:
    assert terms("The Poke-test: how to KNOW it's done") == ["poke", "test", "know", "done"]
    one = encode_document("sourdough starter", "bm25-v1")
    assert one.indices == sorted({term_index("sourdough"), term_index("starter")})
    assert _norm(one.values) == pytest.approx(1.0)
    # Five mentions weigh more than one, but far less than five times as much (saturation).
    many = encode_document("starter " * 5 + "sourdough", "bm25-v1")
    weights = dict(zip(many.indices, many.values, strict=True))
    ratio = weights[term_index("starter")] / weights[term_index("sourdough")]
    assert 1.1 < ratio < 2.2
    assert encode_document("the and of", "bm25-v1").indices == []  # stopwords only: nothing to match
    long = encode_document(" ".join(f"word{i}" for i in range(3000)), "bm25-v1")
    assert len(long.indices) == MAX_NONZERO and len(set(long.indices)) == MAX_NONZERO
    # The query weighs a rare word over a common one; unseen words weigh most.
    query = encode_query("rare common", {"rare": 1, "common": 90}, 100)
    q = dict(zip(query.indices, query.values, strict=True))
    assert q[term_index("rare")] > 5 * q[term_index("common")] and _norm(query.values) == pytest.approx(1.0)


def test_sparse_needs_a_dotproduct_index_in_one_line() -> None:
    with pytest.raises(ValidationError, match="needs metric: dotproduct") as err:
        PineconeStoreConfig(kind="pinecone", sparse="bm25-v1")
    assert len([e for e in err.value.errors()]) == 1
    assert PineconeStoreConfig(kind="pinecone", metric="dotproduct", sparse="bm25-v1").sparse == "bm25-v1"


def _page(title: str, text: str) -> bytes:
    body = f"<article><h1>{title}</h1><p>{text}</p></article>"
    return f"<html><head><title>{title}</title></head><body>{body}</body></html>".encode()


PAGES = {
    "proofing.html": _page(
        "Proofing",
        "Press the dough with a floured finger; when the dent springs back slowly the loaf is ready. " * 4,
    ),
    "storage.html": _page(
        "Storage",
        "Keep bread out of the refrigerator: cold makes the crumb stale faster than the counter. " * 4,
    ),
    "flours.html": _page(
        "Flours",
        "French flour bags carry a type number such as T55 or T65, the ash content of the flour. " * 4,
    ),
}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PineconeTestServer]:
    monkeypatch.setenv("PINECONE_API_KEY", DEFAULT_API_KEY)
    srv = start_pinecone_server()
    yield srv
    srv.stop()


def _env(tmp_path: Path, server: PineconeTestServer, **search_cfg: Any) -> RunEnv:
    path = tmp_path / "docs.yaml"
    cfg = {
        "name": "docs",
        "source": {"start_urls": [f"{SITE}/"]},
        "embedder": {"kind": "fake", "dimension": 64},
        "store": {
            "kind": "pinecone",
            "host": server.url,
            "index": "docs",
            "metric": "dotproduct",
            "sparse": "bm25-v1",
        },
        "extract": {"workers": 0},
        "search": search_cfg,
    }
    path.write_text(yaml.safe_dump(cfg))
    env = make_env(load_crawl(path))
    summary = RunSummary(crawl="docs", kind="ingest", run_id="run-1")
    fetched = [
        FetchedPage(f"{SITE}/{n}", f"{SITE}/{n}", 200, content_type="text/html", body=b)
        for n, b in PAGES.items()
    ]
    process_batch(env, fetched, RunState.load(env), summary, Hooks())
    assert summary.vectors_written >= 3
    return env


def test_every_record_gets_sparse_values_and_hybrid_is_one_sparse_dense_query(
    tmp_path: Path, server: PineconeTestServer
) -> None:
    env = _env(tmp_path, server)
    try:
        namespace = env.store.namespace  # type: ignore[attr-defined]
        records = server.vectors("docs", namespace)
        sparse = server.sparse_of("docs", namespace)
        assert set(sparse) == set(records) and records
        for values in sparse.values():
            assert _norm(list(values.values())) == pytest.approx(1.0, abs=1e-5)
        flours = next(vid for vid, (_, meta) in records.items() if meta["url"].endswith("flours.html"))
        assert term_index("t55") in sparse[flours]

        hits = search(env.cfg, "T55 type number", 3, mode="hybrid")
        assert hits[0]["url"].endswith("flours.html")
        assert [r for r in server.log if r.route.endswith("/query")]
    finally:
        env.db.close()


def test_the_sparse_part_alone_ranks_by_bm25(tmp_path: Path, server: PineconeTestServer) -> None:
    # dense_weight 0.001: Pinecone's score is all but the sparse dot product (a query's dense part may
    # not be all zeros); only the storage page holds "refrigerator".
    env = _env(tmp_path, server, dense_weight=0.001)
    try:
        hits = search(env.cfg, "refrigerator", 3, mode="hybrid")
        assert hits and hits[0]["url"].endswith("storage.html")
        assert hits[0]["score"] > 0.1 and all(abs(h["score"]) < 0.01 for h in hits[1:])
    finally:
        env.db.close()


def test_a_sparse_query_on_a_cosine_index_is_refused(server: PineconeTestServer) -> None:
    from ingest.sparse import SparseVector
    from ingest.stores import make_store
    from ingest.stores.base import VectorRecord

    store = make_store(PineconeStoreConfig(kind="pinecone", host=server.url, index="plain"), "ns")
    store.ensure(4, "cosine")
    store.upsert([VectorRecord("a#1", np.ones(4, dtype=np.float32), {"text": "x"})])
    with pytest.raises(PermanentError, match="dotproduct"):
        store.query(np.ones(4), 1, None, SparseVector([1], [1.0]))  # type: ignore[call-arg]
