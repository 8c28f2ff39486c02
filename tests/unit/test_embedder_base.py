"""ingest.embedders.base: output validation (whole answer vs. single rows) and embed_partial."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ingest.embedders.base import (
    ALL_ZERO,
    NON_FINITE,
    Embedder,
    Progress,
    Vectors,
    embed_partial,
    validate_vectors,
)
from ingest.errors import InputRejectedError, PermanentError


def test_good_vectors_pass_unchanged() -> None:
    vectors = np.eye(3, dtype=np.float32)
    assert validate_vectors(vectors, 3, 3) is vectors


@pytest.mark.parametrize(
    ("shape", "n", "match"),
    [
        ((2, 4), 3, "2 vectors for 3 texts"),
        ((3, 5), 3, "dimension 5, expected 4"),
        ((4,), 4, r"shape \(4,\), expected \(4, 4\)"),
    ],
)
def test_wrong_count_or_dimension_is_permanent_for_the_whole_answer(
    shape: tuple[int, ...], n: int, match: str
) -> None:
    with pytest.raises(PermanentError, match=match) as info:
        validate_vectors(np.ones(shape, dtype=np.float32), n, 4)
    assert not isinstance(info.value, InputRejectedError)


def test_bad_rows_reject_their_inputs_only() -> None:
    vectors = np.arange(1, 21, dtype=np.float32).reshape(5, 4)
    vectors[1, 2] = np.nan
    vectors[3] = 0.0
    vectors[4, 0] = np.inf
    original = vectors.copy()
    with pytest.raises(InputRejectedError) as info:
        validate_vectors(vectors, 5, 4)
    err = info.value
    assert isinstance(err, PermanentError)
    assert err.rejected == {1: NON_FINITE, 3: ALL_ZERO, 4: NON_FINITE}
    assert err.accepted == [0, 2]
    assert "3 of 5 inputs rejected" in str(err) and "non-finite" in str(err)
    np.testing.assert_array_equal(err.vectors[[0, 2]], original[[0, 2]])
    assert np.isnan(err.vectors[[1, 3, 4]]).all()  # never written by mistake: stores refuse NaN
    np.testing.assert_array_equal(vectors, original)  # the caller's array is left alone


class RowRejectingEmbedder:
    """A minimal embedder whose model answers zeros for texts saying "zero" (as a local model might)."""

    model_key = "test"
    dimension = 3
    max_input_tokens = 100

    def __init__(self) -> None:
        self.progress_calls: list[int] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        out = np.array([[0.0, 0.0, 0.0] if "zero" in t else [1.0, len(t), 2.0] for t in texts], np.float32)
        if progress is not None:
            progress(len(texts))
        return validate_vectors(out.reshape(len(texts), 3), len(texts), 3)

    def check(self) -> None:
        pass

    def estimate_cost(self, tokens: int) -> float:
        return 0.0


def test_embed_partial_returns_rejections_instead_of_raising() -> None:
    embedder = RowRejectingEmbedder()
    assert isinstance(embedder, Embedder)
    done: list[int] = []
    vectors, rejected = embed_partial(embedder, ["a", "zero b", "cc"], done.append)
    assert rejected == {1: ALL_ZERO} and done == [3]
    np.testing.assert_array_equal(vectors[[0, 2]], [[1, 1, 2], [1, 2, 2]])
    vectors, rejected = embed_partial(embedder, ["fine"])
    assert rejected == {} and vectors.shape == (1, 3)
