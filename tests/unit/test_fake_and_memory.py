"""The fast tier's own adapters: the fake embedder and the in-memory store, beyond their contract suites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import chunk_markdown
from ingest.config import FakeEmbedderConfig, MemoryStoreConfig, parse_crawl
from ingest.embedders import Embedder, make_embedder
from ingest.embedders.fake import FakeEmbedder
from ingest.errors import ConfigError, DimensionMismatchError, PermanentError
from ingest.extract import Document, extract
from ingest.stores import VectorRecord, VectorStore, make_store
from ingest.stores.memory import MemoryStore
from tests.conftest import SAMPLE_SITE

MINIMAL = {"name": "docs", "source": {"start_urls": ["https://example.org/"]}}


def fake(**fields: object) -> FakeEmbedder:
    return FakeEmbedder(FakeEmbedderConfig.model_validate({"kind": "fake", **fields}))


def memory(name: str = "docs") -> MemoryStore:
    return MemoryStore(MemoryStoreConfig(kind="memory"), name)


def rec(rid: str, vector: list[float], **metadata: str | int | float | bool) -> VectorRecord:
    return VectorRecord(rid, np.asarray(vector, dtype=np.float32), metadata)


# -- the fake embedder -------------------------------------------------------------------------------


def test_both_fill_their_seams() -> None:
    embedder: Embedder = fake()  # checked by mypy as well as at run time
    store: VectorStore = memory()
    assert isinstance(embedder, Embedder) and isinstance(store, VectorStore)
    embedder.check()
    store.check()


def test_crawl_yaml_selects_fake_and_memory() -> None:
    cfg = parse_crawl({**MINIMAL, "embedder": {"kind": "fake", "dimension": 64}, "store": {"kind": "memory"}})
    embedder = make_embedder(cfg.embedder)
    assert isinstance(embedder, FakeEmbedder) and embedder.dimension == 64
    assert embedder.max_input_tokens == 256 and embedder.estimate_cost(10**9) == 0.0
    assert isinstance(make_store(cfg.store, "docs"), MemoryStore)
    with pytest.raises(ConfigError, match="dimension"):
        parse_crawl({**MINIMAL, "embedder": {"kind": "fake", "dimension": 1}})


def test_vectors_are_pinned_so_a_scheme_change_must_change_the_model_key() -> None:
    # SHA-256 hashing, not Python's salted hash(): the same positions in every process. If this
    # changes, the text → vector mapping changed: bump ingest.embedders.fake.SCHEME with it.
    vector = fake().embed(["Proofing bread, bread dough"])[0]
    bread, other = (1 + np.log(2)) / np.sqrt((1 + np.log(2)) ** 2 + 2), 1 / np.sqrt((1 + np.log(2)) ** 2 + 2)
    assert {int(i): float(vector[i]) for i in np.nonzero(vector)[0]} == pytest.approx(
        {441: other, 505: other, 786: bread}, abs=1e-6
    )
    empty = fake(dimension=64).embed(["", "the and of", "!!!"])
    assert np.allclose(np.linalg.norm(empty, axis=1), 1.0, atol=1e-6)  # never a zero vector


def test_model_key_follows_dimension_and_scheme_only() -> None:
    base = fake().model_key
    assert fake(batch_size=3, max_input_tokens=512).model_key == base
    assert fake(dimension=64).model_key != base


def test_shared_words_bring_texts_closer_and_stop_words_do_not() -> None:
    embedder = fake()
    q, near, far, stop = embedder.embed(
        [
            "how do I keep my sourdough starter alive",
            "Feed the sourdough starter daily to keep it alive",
            "How do I convert cups to grams in my kitchen",
            "how do I",
        ]
    )
    assert float(q @ near) > 0.5 > float(q @ far)
    assert abs(float(q @ stop)) < 0.2  # "how do I" alone is no topic


def test_whitespace_and_case_do_not_change_the_vector() -> None:
    a, b = fake().embed(["Bulk  fermentation\n\ttakes HOURS", "bulk fermentation takes hours"])
    np.testing.assert_array_equal(a, b)


def test_progress_is_called_once_per_batch_with_its_size() -> None:
    calls: list[int] = []
    embedder = fake(batch_size=4)
    vectors = embedder.embed([f"text number {i}" for i in range(10)], progress=calls.append)
    assert calls == [4, 4, 2] and vectors.shape == (10, embedder.dimension)
    assert embedder.embed([], progress=calls.append).shape == (0, embedder.dimension)
    assert calls == [4, 4, 2]


def test_over_long_input_is_refused_before_anything_is_embedded() -> None:
    calls: list[int] = []
    embedder = fake(max_input_tokens=8, batch_size=1)
    assert embedder.count_tokens("one two, three!") == 5
    with pytest.raises(PermanentError, match=r"input 1 has 9 tokens, more than the 8"):
        embedder.embed(["short", "w " * 9], progress=calls.append)
    assert calls == [] and embedder.tokens_used == 0
    embedder.embed(["w " * 8])
    assert embedder.tokens_used == 8


def test_a_quoted_phrase_finds_its_page_on_the_sample_site() -> None:
    """What the fast tier relies on: a query that uses a page's words returns that page."""
    embedder, store = fake(), memory("site")
    store.ensure(embedder.dimension)
    phrases: dict[str, str] = {}
    for path in sorted(SAMPLE_SITE.rglob("*.html")):
        page = path.relative_to(SAMPLE_SITE).as_posix()
        doc = extract(path.read_bytes(), f"http://127.0.0.1/{page}")
        if not isinstance(doc, Document):
            continue
        chunks = chunk_markdown(doc.markdown, doc.doc_id, embedder.count_tokens, 256, 32)
        vectors = embedder.embed([c.text for c in chunks])
        store.upsert([VectorRecord(c.id, v, {"page": page}) for c, v in zip(chunks, vectors, strict=True)])
        words = chunks[0].text.split()
        phrases[page] = " ".join(words[len(words) // 2 :][:8])
    found = [
        page
        for page, phrase in phrases.items()
        # starter-print.html is the print version of starter.html: either one is right.
        if str(store.query(embedder.embed([phrase])[0], k=1)[0].metadata["page"]).replace("-print", "")
        == page.replace("-print", "")
    ]
    assert len(phrases) >= 25 and len(found) >= len(phrases) - 3, sorted(set(phrases) - set(found))


# -- the memory store ----------------------------------------------------------------------------------


def test_stores_of_one_name_share_vectors_within_one_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = memory()
    writer.ensure(2)
    writer.upsert([rec("a#1", [1, 0], text="hello")])
    reader = make_store(MemoryStoreConfig(kind="memory"), "docs")  # a run, then a query: same process
    assert reader.count() == 1 and reader.query(np.array([1.0, 0.0]), k=1)[0].metadata["text"] == "hello"
    assert memory("other").count() == 0 and reader.target == "memory:docs"
    with monkeypatch.context() as m:  # another $WEBVEC_HOME: another ledger, other vectors
        m.setenv("WEBVEC_HOME", str(tmp_path / "elsewhere"))
        assert memory().count() == 0
    memory().drop()
    assert reader.count() == 0 and reader.list_ids() == []


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("cosine", {"y#1": 0.8, "x#1": 0.6}),
        ("dotproduct", {"x#1": 3.0, "y#1": 2.0}),
        ("euclidean", {"x#1": -20.0, "y#1": -21.25}),  # minus the squared distance, as Chroma and Pinecone
    ],
)
def test_metrics_score_higher_for_closer(metric: str, expected: dict[str, float]) -> None:
    store = memory(metric)
    store.ensure(2, metric)
    store.upsert([rec("x#1", [1, 0]), rec("y#1", [0, 0.5])])
    hits = store.query(np.array([3.0, 4.0]), k=2)
    assert [h.id for h in hits] == list(expected)  # closest first
    assert [h.score for h in hits] == pytest.approx(list(expected.values()))
    with pytest.raises(DimensionMismatchError, match="metric"):
        store.ensure(2, "euclidean" if metric == "cosine" else "cosine")


def test_bad_records_are_refused_and_nothing_is_written() -> None:
    store = memory()
    with pytest.raises(PermanentError, match="does not exist yet"):
        store.upsert([rec("a#1", [1, 0])])
    store.ensure(2)
    good = rec("a#1", [1, 0])
    for bad, match in [
        (rec("a#2", [0, 0]), "all-zero"),
        (rec("a#2", [1, 0, 0]), "3 dimensions"),
        (rec("a#2", [float("nan"), 1]), "non-finite"),
        (VectorRecord("a#2", np.ones(2, dtype=np.float32), {"tags": ["x"]}), "metadata 'tags' is a list"),  # type: ignore[dict-item]
    ]:
        with pytest.raises(PermanentError, match=match):
            store.upsert([good, bad])
    assert store.count() == 0
    with pytest.raises(PermanentError, match="equality"):
        store.query(np.ones(2), filter={"doc_id": {"$in": ["a"]}})
    with pytest.raises(ConfigError, match=r"store\.metric"):
        store.ensure(2, "manhattan")


def test_stored_vectors_are_copies() -> None:
    store = memory()
    store.ensure(2)
    vector = np.array([1.0, 0.0], dtype=np.float32)
    store.upsert([VectorRecord("a#1", vector, {})])
    vector[:] = [0.0, 1.0]  # the caller reuses its buffer
    assert store.query(np.array([1.0, 0.0]), k=1)[0].score == pytest.approx(1.0)
