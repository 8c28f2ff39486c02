"""The Embedder seam, and the checks every embedder's output goes through."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ingest.errors import InputRejectedError, PermanentError

Vectors = NDArray[np.float32]
Progress = Callable[[int], None]
# A finished piece of an ``embed`` call: (index of its first input, its rows, rejected rows → why, as
# indices into those rows). Rejected rows are NaN.
OnPart = Callable[[int, Vectors, Mapping[int, str]], None]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. Implementations are registered by ``embedder.kind``.

    - ``model_key``: hash of what changes vector meaning (see :func:`ingest.ids.model_key`).
    - ``max_input_tokens``: the longest text, counted by :meth:`count_tokens`, the model reads whole.
    - ``embed`` returns one float32 row per input, in input order, each of ``dimension`` values;
      it raises :class:`~ingest.errors.TransientError` / :class:`~ingest.errors.PermanentError`.
      When only some inputs cannot be embedded (the provider refuses them, or their vectors are
      non-finite or all zeros), it embeds all the others and then raises
      :class:`~ingest.errors.InputRejectedError`, which carries their vectors and which inputs were
      rejected and why; :func:`embed_partial` returns both instead.
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

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """Vectors for ``texts``: shape (len(texts), dimension), float32.

        ``progress``, when given, is called with the number of texts just finished (embedded or
        rejected) each time a piece of the work completes: a request for an API embedder, a batch
        for a local model. Its arguments add up to ``len(texts)`` when ``embed`` returns or raises
        InputRejectedError (less when it fails otherwise). It may be called from worker threads,
        never two calls at once; it should be quick, and an exception it raises aborts ``embed``.
        """
        ...

    def check(self) -> None:
        """Fail fast, before any crawl, when the embedder cannot work (missing key, missing extra)."""
        ...

    def estimate_cost(self, tokens: int) -> float:
        """Estimated price in USD of embedding ``tokens`` tokens (0.0 for local models)."""
        ...


# Why a row is rejected; also the reasons InputRejectedError carries for such rows.
NON_FINITE = "the embedder returned non-finite values (NaN or inf) for it"
ALL_ZERO = "the embedder returned an all-zero vector for it (no direction: similarity is undefined)"


def validate_vectors(vectors: Vectors, n: int, dimension: int) -> Vectors:
    """Check an embedder's output for ``n`` texts and return it.

    The answer as a whole must have ``n`` rows of ``dimension`` values, else PermanentError: the
    embedder or its configuration is wrong, and no row can be trusted. A row that is non-finite or
    all zeros is a problem of that input alone: InputRejectedError naming those rows (with
    :data:`NON_FINITE` / :data:`ALL_ZERO`), carrying the vectors with those rows set to NaN. Called
    on the whole output, its rejection is already the one ``embed`` should raise; called on a part,
    the caller shifts the indices to input positions.
    """
    if vectors.ndim != 2:
        raise PermanentError(
            f"embedder returned an array of shape {vectors.shape}, expected ({n}, {dimension})"
        )
    if vectors.shape[0] != n:
        raise PermanentError(f"embedder returned {vectors.shape[0]} vectors for {n} texts")
    if vectors.shape[1] != dimension:
        raise PermanentError(
            f"embedder returned vectors of dimension {vectors.shape[1]}, expected {dimension}"
        )
    finite: NDArray[np.bool_] = np.asarray(np.isfinite(vectors).all(axis=1))
    nonzero: NDArray[np.bool_] = np.asarray((vectors != 0).any(axis=1))
    bad = ~(finite & nonzero)
    if bad.any():
        rejected = {int(i): NON_FINITE if not finite[i] else ALL_ZERO for i in np.flatnonzero(bad)}
        kept = vectors.astype(np.float32, copy=True)
        kept[bad] = np.nan
        raise InputRejectedError(rejection_message("embedder", rejected, n), rejected=rejected, vectors=kept)
    return vectors


def rejection_message(who: str, rejected: dict[int, str], n: int, *, shown: int = 3) -> str:
    """One line for an InputRejectedError: how many of ``n`` inputs, and the first few reasons."""
    items = list(rejected.items())
    parts = "; ".join(f"input {i}: {why}" for i, why in items[:shown])
    more = f"; and {len(items) - shown} more" if len(items) > shown else ""
    return f"{who}: {len(items)} of {n} inputs rejected ({parts}{more}); the others were embedded"


@runtime_checkable
class EmbedsInParts(Protocol):
    """An embedder that hands each piece of its work over as soon as it is done (the OpenAI embedder:
    each request), so that its caller can keep what was paid for before the rest of the call ends."""

    def embed_in_parts(self, texts: Sequence[str], progress: Progress | None, on_part: OnPart) -> Vectors:
        """``embed(texts, progress)``, calling ``on_part`` with each piece's rows when that piece is
        done, from worker threads but never two calls at once; an exception it raises aborts the call."""
        ...


def embed_partial(
    embedder: Embedder,
    texts: Sequence[str],
    progress: Progress | None = None,
    on_part: OnPart | None = None,
) -> tuple[Vectors, dict[int, str]]:
    """``embedder.embed(texts)``, with input-level rejections returned instead of raised.

    Returns ``(vectors, rejected)``: ``rejected`` maps the index of each rejected text to why (empty
    when all were embedded); their rows of ``vectors`` are NaN. ``on_part``, when given, is called
    with each piece as it is done, by an :class:`EmbedsInParts` embedder only (others are called
    whole, and never call it). Every other error is raised as usual.
    """
    try:
        if on_part is not None and isinstance(embedder, EmbedsInParts):
            vectors = embedder.embed_in_parts(texts, progress, on_part)
        else:
            vectors = embedder.embed(texts) if progress is None else embedder.embed(texts, progress)
    except InputRejectedError as err:
        return err.vectors, dict(err.rejected)
    return vectors, {}


__all__ = [
    "ALL_ZERO",
    "NON_FINITE",
    "Embedder",
    "EmbedsInParts",
    "OnPart",
    "Progress",
    "Vectors",
    "embed_partial",
    "rejection_message",
    "validate_vectors",
]


def embed_each(
    who: str,
    texts: Sequence[str],
    count_tokens: Callable[[str], int],
    max_input_tokens: int,
    vector: Callable[[str], Vectors],
    dimension: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[Vectors, int]:
    """Vectors of ``texts`` from ``vector(text)``, one row each in input order, and the tokens read,
    for embedders that vector a text at a time (fake, static). PermanentError, before embedding
    anything, when an input has more than ``max_input_tokens`` tokens; ``progress`` is called once per
    ``batch_size`` texts with their number."""
    counts = [count_tokens(t) for t in texts]
    for i, n in enumerate(counts):
        if n > max_input_tokens:
            raise PermanentError(
                f"{who}: input {i} has {n} tokens, more than the {max_input_tokens} it "
                "reads (chunk.max_tokens / embedder.max_input_tokens)"
            )
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        for offset, text in enumerate(batch):
            out[start + offset] = vector(text)
        if progress is not None:
            progress(len(batch))
    return out, sum(counts)
