"""The Embedder seam."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. Implementations are registered by ``embedder.kind``.

    - ``model_key``: hash of what changes vector meaning (see :func:`ingest.ids.model_key`).
    - ``max_input_tokens``: the longest text, counted by :meth:`count_tokens`, the model reads whole.
    - ``embed`` returns one float32 row per input, in input order, each of ``dimension`` values;
      it raises :class:`~ingest.errors.TransientError` / :class:`~ingest.errors.PermanentError`.
    """

    @property
    def model_key(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_input_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (special tokens the model adds included)."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors for ``texts``: shape (len(texts), dimension), float32."""
        ...

    def check(self) -> None:
        """Fail fast, before any crawl, when the embedder cannot work (missing key, missing extra)."""
        ...

    def estimate_cost(self, tokens: int) -> float:
        """Estimated price in USD of embedding ``tokens`` tokens (0.0 for local models)."""
        ...


def validate_vectors(vectors: Vectors, n: int, dimension: int) -> Vectors:
    """Check an embedder's output: n rows of ``dimension`` finite values; raise PermanentError if not."""
    from ingest.errors import PermanentError

    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise PermanentError(
            f"embedder returned {vectors.shape[0] if vectors.ndim else 0} vectors for {n} texts"
        )
    if vectors.shape[1] != dimension:
        raise PermanentError(
            f"embedder returned vectors of dimension {vectors.shape[1]}, expected {dimension}"
        )
    if not np.isfinite(vectors).all():
        raise PermanentError("embedder returned non-finite values (NaN or inf)")
    return vectors
