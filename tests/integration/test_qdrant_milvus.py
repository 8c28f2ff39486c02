"""What the store contract does not say about Qdrant (local mode) and Milvus (Milvus Lite): id mapping,
names of versions, targets, labels, limits, errors, and `webvec run` into each, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.config import MilvusStoreConfig, QdrantStoreConfig, load_crawl, parse_crawl
from ingest.errors import ConfigError, DimensionMismatchError, MissingExtraError, TransientError
from ingest.state import StateDB
from ingest.stores import VectorRecord, VectorStore, make_store
from ingest.stores.milvus import (
    MAX_VARCHAR_BYTES,
    MilvusStore,
    collection_name_for,
    filter_expression,
    prefix_expression,
    quote,
)
from ingest.stores.qdrant import POINT_NAMESPACE, QdrantStore, point_id
from tests.integration.sites import make_site

DIM = 8
KINDS = ["qdrant", "milvus"]


def _cfg(kind: str, **kw: Any) -> QdrantStoreConfig | MilvusStoreConfig:
    return (
        QdrantStoreConfig(kind="qdrant", **kw) if kind == "qdrant" else MilvusStoreConfig(kind="milvus", **kw)
    )


@pytest.fixture
def opened() -> Iterator[Callable[[VectorStore], VectorStore]]:
    """Closes the stores a test opens (local modes lock their files; Milvus Lite runs a server thread)."""
    stores: list[VectorStore] = []

    def _open(store: VectorStore) -> VectorStore:
        stores.append(store)
        return store

    yield _open
    for s in stores:
        s.close()  # type: ignore[attr-defined]


def _vec(i: int) -> np.ndarray:
    v = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _rec(doc: str, i: int, **meta: Any) -> VectorRecord:
    return VectorRecord(f"{doc}#{i:04d}", _vec(i), {"doc_id": doc, "text": f"t{i}", **meta})


# -- ids -------------------------------------------------------------------------------------------


def test_qdrant_point_ids_are_deterministic_uuids_and_round_trip(opened) -> None:  # type: ignore[no-untyped-def]
    wid = "3f2a9c#b7e1d0"
    assert point_id(wid) == point_id(wid) == str(uuid.uuid5(POINT_NAMESPACE, wid))
    assert uuid.UUID(point_id(wid)).version == 5 and point_id(wid) != point_id(wid + "0")
    store = opened(make_store(_cfg("qdrant"), "ids"))
    store.ensure(DIM)
    records = [_rec("docA", i) for i in range(3)]
    store.upsert(records)
    store.upsert(records)  # the same ids again: the same points
    assert store.count() == 3
    assert sorted(store.list_ids()) == sorted(r.id for r in records)
    assert store.query(_vec(1), k=1)[0].id == "docA#0001"
    # What Qdrant itself holds: the UUIDs, and the webvec ids in the payload.
    assert isinstance(store, QdrantStore)
    points, _ = store._call("scroll", lambda c: c.scroll(store.name, limit=10, with_payload=True))
    assert {str(p.id) for p in points} == {point_id(r.id) for r in records}
    assert {p.payload["webvec_id"] for p in points} == {r.id for r in records}
    assert {p.payload["doc_id"] for p in points} == {"docA"}


def test_qdrant_prefix_that_is_not_a_page_scrolls_and_filters(opened) -> None:  # type: ignore[no-untyped-def]
    store = opened(make_store(_cfg("qdrant"), "prefixes"))
    store.ensure(DIM)
    store.upsert([_rec("ab", 1), _rec("abc", 2), _rec("b", 3)])
    assert sorted(store.list_ids("ab")) == ["ab#0001", "abc#0002"]
    assert store.list_ids("ab#") == ["ab#0001"]


def test_milvus_keeps_webvec_ids_and_escapes_filters(opened) -> None:  # type: ignore[no-untyped-def]
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert prefix_expression("d0c#") == 'doc_id == "d0c"'
    assert prefix_expression('x"y') == 'id like "x\\"y%"'
    assert prefix_expression("a_b") == 'id like "a%"'  # LIKE wildcards never reach the server
    assert filter_expression({"doc_id": "d", "lang": "en", "n": 2, "ok": True}) == (
        'doc_id == "d" and metadata["lang"] == "en" and metadata["n"] == 2 and metadata["ok"] == true'
    )
    store = opened(make_store(_cfg("milvus"), "quotes"))
    store.ensure(DIM)
    odd = 'do"c\\'
    store.upsert([_rec(odd, 1, title='say "hi"'), _rec("a_b", 2), _rec("axb", 3)])
    assert store.list_ids(odd + "#") == [f"{odd}#0001"]
    assert store.list_ids("a_b") == ["a_b#0002"]
    hits = store.query(_vec(1), k=3, filter={"title": 'say "hi"'})
    assert [h.id for h in hits] == [f"{odd}#0001"] and hits[0].metadata["doc_id"] == odd


def test_milvus_lists_past_its_query_window_with_an_iterator(opened, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ingest.stores.milvus as milvus

    monkeypatch.setattr(milvus, "MAX_QUERY_WINDOW", 10)  # Milvus: 16,384; small here to cross it
    monkeypatch.setattr(milvus, "LIST_PAGE_SIZE", 7)
    store = opened(make_store(_cfg("milvus"), "window"))
    store.ensure(DIM)
    store.upsert([_rec("big", i) for i in range(25)] + [_rec("other", 99)])
    assert sorted(store.list_ids("big#")) == [f"big#{i:04d}" for i in range(25)]
    assert len(store.list_ids()) == 26 and store.list_ids("oth") == ["other#0099"]


def test_milvus_trims_text_to_its_varchar_limit(opened) -> None:  # type: ignore[no-untyped-def]
    store = opened(make_store(_cfg("milvus"), "trim"))
    store.ensure(DIM)
    long = "é" * 40_000  # 80,000 UTF-8 bytes: Milvus counts bytes
    store.upsert([VectorRecord("d#1", _vec(1), {"doc_id": "d", "text": long}), _rec("d", 2)])
    hits = {h.id: h for h in store.query(_vec(1), k=2)}
    text = hits["d#1"].metadata["text"]
    assert len(text.encode("utf-8")) <= MAX_VARCHAR_BYTES and long.startswith(text) and len(text) > 30_000
    assert hits["d#1"].metadata["text_trimmed"] is True
    assert "text_trimmed" not in hits["d#0002"].metadata


# -- shapes, names, targets, labels ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_dimension_or_metric_mismatch_is_refused_before_any_write(kind: str, opened) -> None:  # type: ignore[no-untyped-def]
    first = opened(make_store(_cfg(kind), "shape"))
    first.ensure(DIM)
    first.upsert([_rec("docA", 1)])
    again = opened(make_store(_cfg(kind), "shape"))  # another run: nothing cached
    with pytest.raises(DimensionMismatchError, match="8-dimensional"):
        again.ensure(DIM * 2)
    other_metric = opened(make_store(_cfg(kind, metric="euclidean"), "shape"))
    with pytest.raises(DimensionMismatchError, match="'cosine'"):
        other_metric.ensure(DIM, "euclidean")
    assert first.count() == 1 and first.list_ids() == ["docA#0001"]


@pytest.mark.parametrize("kind", KINDS)
def test_versions_and_targets(kind: str, webvec_home: Path, tmp_path: Path) -> None:
    v1, v3 = make_store(_cfg(kind), "my-docs"), make_store(_cfg(kind), "my-docs", 3)
    base = "my-docs" if kind == "qdrant" else collection_name_for("my-docs")
    assert v1.name == base and v3.name == f"{base}__v3"  # type: ignore[attr-defined]
    named = make_store(_cfg(kind, collection="shared_docs"), "my-docs", 2)
    assert named.name == "shared_docs__v2"  # type: ignore[attr-defined]
    where = "$WEBVEC_HOME/qdrant" if kind == "qdrant" else "$WEBVEC_HOME/milvus.db"
    assert v1.target == f"{kind}:{where}/{base}"
    rel = _cfg(kind, **({"path": "vectors"} if kind == "qdrant" else {"uri": "./vectors.db"}))
    assert make_store(rel, "d").target.startswith(f"{kind}:$WEBVEC_HOME/vectors")
    outside = tmp_path / "elsewhere"
    abs_cfg = _cfg(kind, **({"path": str(outside)} if kind == "qdrant" else {"uri": f"{outside}.db"}))
    assert make_store(abs_cfg, "d").target.startswith(f"{kind}:{outside}")
    assert not webvec_home.exists()  # naming a store creates nothing


def test_milvus_collection_names_are_mapped_deterministically() -> None:
    assert collection_name_for("docs_2") == "docs_2"
    mapped = collection_name_for("my-docs")
    assert mapped.startswith("my_docs_") and mapped == collection_name_for("my-docs")
    assert len({collection_name_for(n) for n in ("a-b", "a.b", "a_b")}) == 3
    assert collection_name_for("9lives").startswith("_9lives_")
    with pytest.raises(ConfigError):
        MilvusStore(_cfg("milvus"), "bad-name")  # type: ignore[arg-type]


def test_config_errors_are_one_line() -> None:
    base = {"name": "docs", "source": {"start_urls": ["https://example.org/"]}}
    cases = [
        ({"kind": "qdrant", "path": "p", "url": "http://h:6333"}, "store: set either path"),
        ({"kind": "qdrant", "collection": "a/b"}, "store.collection: invalid Qdrant collection"),
        ({"kind": "qdrant", "url": "http://user:pa55word@h:6333"}, "store.url: no credentials"),
        ({"kind": "qdrant", "timeout_s": 0}, "store.timeout_s: Input should be greater"),
        ({"kind": "milvus", "uri": "vectors.sqlite"}, "store.uri: 'vectors.sqlite' is neither"),
        ({"kind": "milvus", "collection": "a-b"}, "store.collection: invalid Milvus collection"),
        ({"kind": "milvus", "token_env": "root:pa55word"}, "store.token_env: must be the NAME"),
        ({"kind": "milvus", "retry_budget_s": 10**6}, "store.retry_budget_s: Input should be less"),
    ]
    for store, expected in cases:
        with pytest.raises(ConfigError) as info:
            parse_crawl({**base, "store": store}, "crawls/x.yaml")
        # The field path has no discriminator tag ("store.qdrant.collection"), and no secret is echoed.
        assert str(info.value).startswith(f"crawls/x.yaml: {expected}") and "pa55word" not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_labels_are_recorded_with_the_collection(kind: str, opened) -> None:  # type: ignore[no-untyped-def]
    store = opened(make_store(_cfg(kind), "labelled"))
    store.ensure(DIM, "cosine", {"webvec_model": "fake", "webvec_model_key": "k1"})
    labels = store.labels()  # type: ignore[attr-defined]
    assert labels["webvec_model_key"] == "k1" and labels["webvec_metric"] == "cosine"
    assert str(labels["webvec_dimension"]) == str(DIM)


def test_qdrant_without_collection_metadata_uses_a_sidecar(opened, monkeypatch, webvec_home) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(QdrantStore, "_takes_metadata", staticmethod(lambda client: False))
    store = opened(make_store(_cfg("qdrant"), "old-client"))
    store.ensure(DIM, "cosine", {"webvec_model_key": "k1"})
    assert json.loads((webvec_home / "qdrant" / "webvec-labels.json").read_text())["old-client"] == {
        "webvec_dimension": DIM,
        "webvec_metric": "cosine",
        "webvec_model_key": "k1",
    }
    assert store.labels()["webvec_model_key"] == "k1"  # type: ignore[attr-defined]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_missing_package_is_one_line(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client" if kind == "qdrant" else "pymilvus", None)
    with pytest.raises(MissingExtraError, match=rf"pip install 'webvec\[{kind}\]'"):
        make_store(_cfg(kind), "docs").check()


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_server_fails_check_with_one_line_and_no_secret(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORE_SECRET", "s3cr3t-value")
    if kind == "qdrant":  # https: qdrant-client warns about an API key over plain http
        store: Any = QdrantStore(
            QdrantStoreConfig(
                kind="qdrant", url="https://127.0.0.1:1", api_key_env="STORE_SECRET", timeout_s=1
            ),
            "docs",
            retry_budget_s=0.2,
        )
    else:
        store = MilvusStore(
            MilvusStoreConfig(kind="milvus", uri="http://127.0.0.1:1", token_env="STORE_SECRET", timeout_s=1),
            "docs",
            retry_budget_s=0.2,
        )
    with pytest.raises(TransientError) as info:
        store.check()
    message = str(info.value)
    assert "\n" not in message and "s3cr3t" not in message and f"{kind}:" in message
    assert "s3cr3t" not in store.target


_HOLD = """
import sys
from ingest.stores import make_store
from ingest.config import {cls}
s = make_store({cls}(kind="{kind}"), "held")
s.ensure(8)
print("ready", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_local_store_held_by_another_process_is_one_clear_line(kind: str, opened) -> None:  # type: ignore[no-untyped-def]
    cls = "QdrantStoreConfig" if kind == "qdrant" else "MilvusStoreConfig"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD.format(cls=cls, kind=kind)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(TransientError, match="another process") as info:
            opened(make_store(_cfg(kind), "held")).count()
        assert "\n" not in str(info.value)
    finally:
        holder.communicate("\n", timeout=60)
    assert opened(make_store(_cfg(kind), "held")).count() == 0  # free again once it exits


# -- a crawl into each store, twice ------------------------------------------------------------------


def _webvec(*args: str) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("webvec")
    result = subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": ""},  # the CLI runs the crawl itself, without Prefect
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


@pytest.mark.server
@pytest.mark.parametrize("kind", KINDS)
def test_run_into_the_store_then_an_unchanged_rerun_embeds_nothing(  # type: ignore[no-untyped-def]
    kind: str, tmp_path: Path, serve_dir, write_crawl, opened
) -> None:
    make_site(tmp_path / "site")
    server = serve_dir(tmp_path / "site")
    crawl = write_crawl(
        server.url,
        name="tiny-site",
        source={"sitemaps": []},
        embedder={"kind": "fake", "dimension": 32},
        store={"kind": kind},
    )
    first = _webvec("run", str(crawl), "--json")
    assert first["status"] == "ok" and first["vectors_written"] > 0 and first["texts_embedded"] > 0

    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    store = opened(make_store(cfg.store, cfg.name))
    ledger = {c["chunk_id"] for c in db.all_chunks(cfg.name)}
    ids = store.list_ids()
    assert len(ids) == len(set(ids)) == first["vectors_written"] and set(ids) == ledger
    assert first["target"] == store.target and "$WEBVEC_HOME" in store.target
    assert store.labels()["webvec_model_key"] == first["model_key"]  # type: ignore[attr-defined]
    hit = store.query(np.ones(32, dtype=np.float32), k=1)[0]
    assert hit.id in ledger and hit.metadata["url"].startswith(server.url)
    store.close()  # type: ignore[attr-defined]  # local modes: one process at a time

    second = _webvec("run", str(crawl), "--json")
    assert second["status"] == "ok"
    assert second["texts_embedded"] == 0 and second["vectors_written"] == 0 and second["vectors_deleted"] == 0
    assert set(store.list_ids()) == ledger
