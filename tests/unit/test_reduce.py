"""``embedder.reduce``: a PCA / truncated-SVD projection fitted on the crawl's own cached vectors.

Fast tier: the fake embedder and the memory store, pages fed straight into the batch stages.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ingest.bookkeeping import Hooks
from ingest.config import ReduceConfig, load_crawl
from ingest.embedders.reduce import Projection, ReducedEmbedder, fit_projection
from ingest.env import RunEnv, make_env
from ingest.errors import ConfigError
from ingest.query import search
from ingest.run import RunState, process_batch
from ingest.state import FetchedPage, StateDB
from ingest.summary import RunSummary
from ingest.versions import model_changed, rebuild_version

SITE = "http://docs.test"
WORDS = [
    "dough",
    "flour",
    "water",
    "salt",
    "yeast",
    "oven",
    "crust",
    "crumb",
    "proof",
    "knead",
    "loaf",
    "starter",
    "rye",
    "wheat",
    "butter",
    "sugar",
    "steam",
    "bake",
    "rise",
    "fold",
    "shape",
    "score",
    "cool",
    "slice",
    "toast",
    "sour",
    "bread",
    "roll",
    "bun",
    "cake",
    "pan",
    "tin",
    "heat",
]


def test_pca_keeps_the_structure_of_low_rank_data_and_is_reproducible() -> None:
    rng = np.random.default_rng(7)
    basis = rng.normal(size=(6, 96))
    x = rng.normal(size=(500, 6)) @ basis + 3.0 + rng.normal(scale=0.01, size=(500, 96))
    p = Projection.fit(x, "pca", 6)
    assert p.dimensions == 6 and p.components.shape == (6, 96)
    # Six components hold the six directions: distances between centred points survive projection.
    centred = x - x.mean(axis=0)
    reduced = centred @ p.components.T
    full_d = np.linalg.norm(centred[0] - centred[1:], axis=1)
    red_d = np.linalg.norm(reduced[0] - reduced[1:], axis=1)
    assert np.allclose(full_d, red_d, rtol=1e-2)
    out = p.apply(x)
    assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    again = Projection.fit(x, "pca", 6)
    assert again.sha == p.sha  # the same sample gives the same bytes: the same model_key
    back = Projection.from_bytes(p.to_bytes())
    assert back.sha == p.sha and back.method == "pca" and np.array_equal(back.apply(x), out)
    svd = Projection.fit(x, "svd", 6)
    assert not svd.mean.any() and svd.sha != p.sha  # truncated SVD does not centre


def _page(i: int) -> bytes:
    rng = random.Random(i)
    sections = "".join(
        f"<h2>Part {j}</h2><p>{' '.join(rng.choice(WORDS) for _ in range(40))} page{i} part{j}.</p>"
        for j in range(3)
    )
    return (
        f"<html><head><title>Page {i}</title></head><body><article><h1>Page {i}</h1>{sections}"
        "</article></body></html>"
    ).encode()


def _crawl(tmp_path: Path, **embedder: Any) -> Path:
    path = tmp_path / "docs.yaml"
    cfg = {
        "name": "docs",
        "source": {"start_urls": [f"{SITE}/"]},
        "embedder": {"kind": "fake", "dimension": 64, **embedder},
        "store": {"kind": "memory"},
        "extract": {"workers": 0},
        # Bare chunks: a chunk's own text is then exactly what was embedded (its query scores 1.0).
        "chunk": {"max_tokens": 32, "overlap_tokens": 0, "context_template": None},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _ingest(env: RunEnv, pages: range) -> RunSummary:
    summary = RunSummary(crawl=env.cfg.name, kind="ingest", run_id="run-1")
    fetched = [
        FetchedPage(f"{SITE}/{i}.html", f"{SITE}/{i}.html", 200, content_type="text/html", body=_page(i))
        for i in pages
    ]
    process_batch(env, fetched, RunState.load(env), summary, Hooks())
    return summary


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RunEnv]:
    """A crawl of 30 pages (about 120 chunks) embedded by the full 64-dimension fake model."""
    env = make_env(load_crawl(_crawl(tmp_path)))
    assert _ingest(env, range(30)).texts_embedded >= 100
    yield env
    env.db.close()


def test_a_first_run_with_reduce_says_in_one_line_what_to_do(tmp_path: Path) -> None:
    cfg = load_crawl(_crawl(tmp_path, reduce={"method": "pca", "dimensions": 16}))
    with pytest.raises(ConfigError, match="run the crawl once without reduce") as err:
        make_env(cfg)
    assert "\n" not in str(err.value) and "has 0" in str(err.value)


def test_reducing_projects_the_cached_vectors_and_embeds_nothing_again(env: RunEnv, tmp_path: Path) -> None:
    full_key = env.keys.model_key
    cfg16 = load_crawl(_crawl(tmp_path, reduce={"method": "pca", "dimensions": 16}))
    env16 = make_env(cfg16, env.db)
    assert isinstance(env16.embedder, ReducedEmbedder) and env16.embedder.dimension == 16
    assert env16.keys.source_model_key == full_key != env16.keys.model_key
    assert model_changed(env16)
    summary = RunSummary(crawl="docs", kind="reembed")
    rebuild_version(env16, summary)
    assert summary.texts_embedded == 0 and summary.vectors_written > 100  # projected from the cache
    live = env.db.live_version("docs")
    assert live is not None and live["model_key"] == env16.keys.model_key

    # A chunk's own text as the query: the query is projected too, so the chunk comes back first.
    chunk = env.db.all_chunks("docs")[5]
    (hit,) = search(cfg16, chunk["text"], 1, mode="dense")
    assert hit["id"] == chunk["chunk_id"] and hit["score"] == pytest.approx(1.0, abs=1e-4)
    # The projection is kept: the same settings give the same model_key in every later process.
    env16 = make_env(cfg16, env.db)  # and the store of the new live version
    assert env16.keys.model_key == live["model_key"]
    (stored,) = env16.store.query(env16.embedder.embed([chunk["text"]])[0], 1)
    assert stored.id == chunk["chunk_id"]

    # A new page is embedded once, by the full model: its full vector is cached for other projections.
    new = _ingest(env16, range(30, 31))
    assert new.texts_embedded > 0
    new_chunk = next(c for c in env.db.all_chunks("docs") if c["url"].endswith("/30.html"))
    assert env.db.cached_vectors(full_key, [new_chunk["text_hash"]])
    assert len(env.db.cached_vectors(env16.keys.model_key, [new_chunk["text_hash"]])) == 1

    # Another size: a new projection, a new version, still nothing embedded.
    cfg8 = load_crawl(_crawl(tmp_path, reduce={"method": "svd", "dimensions": 8}))
    env8 = make_env(cfg8, env.db)
    assert env8.embedder.dimension == 8 and env8.keys.model_key not in (env16.keys.model_key, full_key)
    again = RunSummary(crawl="docs", kind="reembed")
    rebuild_version(env8, again)
    assert (
        again.texts_embedded == 0 and again.vectors_written == summary.vectors_written + new.vectors_written
    )


def test_the_projection_is_fitted_once_per_ledger_even_when_two_processes_race(env: RunEnv) -> None:
    cfg = ReduceConfig(method="pca", dimensions=16)
    first = fit_projection(env.db, env.keys.model_key, cfg, "fake")
    # Another process that fitted (on another sample, say) and stored second keeps the first one.
    other = Projection.fit(np.random.default_rng(1).normal(size=(200, 64)), "pca", 16)
    from ingest.embedders.reduce import fit_key

    kept = env.db.save_projection(fit_key(env.keys.model_key, cfg), other.sha, other.to_bytes())
    assert Projection.from_bytes(kept).sha == first.sha
    reopened = StateDB(env.db.url)
    try:
        assert fit_projection(reopened, env.keys.model_key, cfg, "fake").sha == first.sha
    finally:
        reopened.close()


def test_reduce_to_as_many_dimensions_as_the_model_has_is_refused(env: RunEnv) -> None:
    with pytest.raises(ConfigError, match="not fewer than the model's 64"):
        fit_projection(env.db, env.keys.model_key, ReduceConfig(method="pca", dimensions=64), "fake")
