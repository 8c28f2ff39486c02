"""One contract for every Embedder: the local model, OpenAI's API through the local test server, the
static word vectors, the same reduced by a projection (``embedder.reduce``), and the fake embedder of
the fast tier."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ingest.config import (
    FakeEmbedderConfig,
    LocalEmbedderConfig,
    OpenAIEmbedderConfig,
    StaticEmbedderConfig,
)
from ingest.embedders import Embedder, make_embedder
from ingest.embedders.reduce import Projection, ReducedEmbedder

EMBEDDERS = [
    pytest.param("local", marks=pytest.mark.model),
    pytest.param("openai", marks=pytest.mark.server),
    "fake",
    "static",
    "static-pca",
    pytest.param("model2vec", marks=pytest.mark.model),
]


@pytest.fixture(scope="module")
def openai_srv() -> Iterator[object]:
    from tests.servers.openai_server import start_openai_server

    with start_openai_server(api_key="contract-key") as srv:
        yield srv


@pytest.fixture(params=EMBEDDERS)
def embedder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Embedder:
    if request.param == "fake":
        return make_embedder(FakeEmbedderConfig(kind="fake"))
    if request.param == "static":
        return make_embedder(StaticEmbedderConfig(kind="static"))
    if request.param == "static-pca":
        return _reduced_static()
    if request.param == "model2vec":
        folder = request.getfixturevalue("distilled_model")
        return make_embedder(StaticEmbedderConfig(kind="static", vectors="model2vec", path=str(folder)))
    if request.param == "local":
        return request.getfixturevalue("local_embedder")  # type: ignore[no-any-return]
    srv = request.getfixturevalue("openai_srv")
    monkeypatch.setenv("OPENAI_API_KEY", "contract-key")
    return make_embedder(OpenAIEmbedderConfig(kind="openai", base_url=srv.base_url, dimensions=256))


def _reduced_static() -> ReducedEmbedder:
    """GloVe averages projected to 24 dimensions, fitted on the vectors of GloVe's 4,000 commonest
    words (what a crawl's sample of texts would be made of)."""
    static = make_embedder(StaticEmbedderConfig(kind="static"))
    sample = np.asarray(static.vectors.matrix[:4000], dtype=np.float32)  # type: ignore[attr-defined]
    return ReducedEmbedder(static, Projection.fit(sample, "pca", 24))


TEXTS = [
    "How long should bread dough rise before baking?",
    "Proofing times for bread dough depend on temperature.",
    "The stock market closed higher on Tuesday.",
]


def test_shape_order_and_determinism(embedder: Embedder) -> None:
    embedder.check()
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (3, embedder.dimension) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    again = embedder.embed(list(reversed(TEXTS)))
    np.testing.assert_allclose(again[::-1], vectors, rtol=1e-4, atol=1e-5)
    assert embedder.embed([]).shape == (0, embedder.dimension)


def test_related_texts_are_closer(embedder: Embedder) -> None:
    v = embedder.embed(TEXTS)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])


def test_tokens_limits_and_key(embedder: Embedder) -> None:
    assert embedder.count_tokens("") >= 0
    assert 0 < embedder.count_tokens("bread") < embedder.count_tokens("bread " * 50)
    assert embedder.count_tokens("a <|endoftext|> b") >= 3  # special-token text counted as text
    assert embedder.max_input_tokens >= 256
    key = embedder.model_key
    if isinstance(embedder, ReducedEmbedder):  # the same model and projection give the same key
        rebuilt: Embedder = ReducedEmbedder(
            make_embedder(embedder.inner.cfg),  # type: ignore[attr-defined]
            Projection.from_bytes(embedder.projection.to_bytes()),
        )
        assert rebuilt.model_key != embedder.inner.model_key
    else:
        rebuilt = make_embedder(embedder.cfg)  # type: ignore[attr-defined]
    assert key and key == rebuilt.model_key
    assert "contract-key" not in key and embedder.estimate_cost(1000) >= 0.0


@pytest.mark.server
@pytest.mark.model
def test_model_key_tracks_what_changes_vectors(openai_srv, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPENAI_API_KEY", "contract-key")
    a = make_embedder(OpenAIEmbedderConfig(kind="openai", base_url=openai_srv.base_url, dimensions=256))
    b = make_embedder(OpenAIEmbedderConfig(kind="openai", base_url=openai_srv.base_url, dimensions=512))
    c = make_embedder(
        OpenAIEmbedderConfig(kind="openai", base_url=openai_srv.base_url, dimensions=256, max_concurrency=9)
    )
    assert a.model_key != b.model_key and a.model_key == c.model_key
    assert (
        make_embedder(LocalEmbedderConfig(normalize=False)).model_key
        != make_embedder(LocalEmbedderConfig()).model_key
    )
