"""The static embedder: SIF-weighted GloVe means (issue 12, "more embedders")."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.config import StaticEmbedderConfig
from ingest.embedders.static import StaticEmbedder
from ingest.errors import PermanentError


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder(StaticEmbedderConfig(kind="static"))


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_frequent_words_weigh_almost_nothing(static: StaticEmbedder) -> None:
    plain, padded = static.embed(["sourdough starter", "the sourdough starter of the and a to"])
    assert cos(plain, padded) > 0.97
    # Without SIF weights ("the", "of"... counted fully) the same texts move much further apart.
    flat = StaticEmbedder(StaticEmbedderConfig(kind="static", sif_a=1.0)).embed(
        ["sourdough starter", "the sourdough starter of the and a to"]
    )
    assert cos(flat[0], flat[1]) < cos(plain, padded) - 0.05


def test_topic_beats_shared_function_words(static: StaticEmbedder) -> None:
    query, bread, market = static.embed(
        [
            "how long should the dough rise",
            "Let the dough proof until it has doubled in size.",
            "The stock market closed higher on Tuesday.",
        ]
    )
    assert cos(query, bread) > cos(query, market)


def test_unknown_words_and_hyphens(static: StaticEmbedder) -> None:
    none = static.vector("zzqxv qqzzv")
    assert np.isclose(np.linalg.norm(none), 1.0) and np.allclose(none, none[0])  # the fixed sentinel
    assert cos(static.vector("stand-alone"), static.vector("stand alone")) > 0.99
    assert np.isclose(np.linalg.norm(static.vector("Straße café 日本語 bread")), 1.0)


def test_model_key_follows_what_changes_vectors() -> None:
    a = StaticEmbedder(StaticEmbedderConfig(kind="static"))
    assert a.model_key == StaticEmbedder(StaticEmbedderConfig(kind="static", batch_size=7)).model_key
    assert a.model_key != StaticEmbedder(StaticEmbedderConfig(kind="static", sif_a=1e-4)).model_key


def test_over_long_input_is_refused_before_anything_is_embedded(static: StaticEmbedder) -> None:
    short = StaticEmbedder(StaticEmbedderConfig(kind="static", max_input_tokens=8))
    with pytest.raises(PermanentError, match="more than the 8"):
        short.embed(["fine", "one two three four five six seven eight nine"])
    assert short.tokens_used == 0
