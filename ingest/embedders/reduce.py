"""Dimension reduction: ``embedder.reduce: {method: pca|svd, dimensions: N}``.

A linear projection, fitted once per crawl on a sample of its own vectors (the ledger's embedding cache
under the full model's key), kept in the ledger (``projections``) and applied to every vector stored and
every query. Fewer dimensions make a smaller, faster index; the cost in recall is what ``webvec eval``
measures.

- ``pca``: principal components of the centred sample (the mean is subtracted before projecting).
- ``svd``: truncated SVD of the sample as it is (no centring), like scikit-learn's TruncatedSVD.

Projected vectors are L2-normalised again, so cosine and dot product keep meaning the same thing. The
projection's hash is part of the model_key: a new fit (other sample, other method or size) can never be
mixed with vectors of an earlier one; it builds a new version. The full vectors stay cached under the
full model's key, so changing ``dimensions`` later embeds nothing again.

The sample has to exist before the first reduced vector is written, so a crawl needs one run of its
model first (without ``reduce``, or with a former projection); :func:`fit_projection` says so in one
line when the cache holds too few vectors.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ingest.config import ReduceConfig
from ingest.embedders.base import Embedder, Vectors, validate_vectors
from ingest.errors import ConfigError, InputRejectedError
from ingest.ids import model_key

Progress = Callable[[int], None]


class Projection:
    """``x ↦ normalise((x - mean) @ components.T)``: a fitted PCA or truncated SVD."""

    def __init__(self, method: str, mean: np.ndarray, components: np.ndarray) -> None:
        self.method = method
        self.mean = mean.astype(np.float32)
        self.components = components.astype(np.float32)

    @property
    def dimensions(self) -> int:
        """Dimensions of the projected vectors."""
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, sample: np.ndarray, method: str, dimensions: int) -> Projection:
        """The projection of ``sample`` (rows = vectors) onto its first ``dimensions`` components."""
        x = np.asarray(sample, dtype=np.float64)
        mean = x.mean(axis=0) if method == "pca" else np.zeros(x.shape[1])
        # Economy SVD: the right singular vectors are the principal axes, largest variance first.
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        components = vt[:dimensions]
        # Fix each axis's sign (largest coefficient positive) so a refit on the same sample gives the
        # same bytes, hence the same model_key, whatever the LAPACK build.
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        return cls(method, mean, components * signs[:, None])

    def apply(self, vectors: np.ndarray) -> Vectors:
        """Project and L2-normalise rows; a row that projects to zero stays zero (then rejected)."""
        out = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.components.T
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: Vectors = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0).astype(np.float32)
        return unit

    def to_bytes(self) -> bytes:
        """The projection as ``numpy.savez`` bytes (what the ledger keeps)."""
        buf = io.BytesIO()
        np.savez(buf, method=np.array(self.method), mean=self.mean, components=self.components)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Projection:
        """The projection :meth:`to_bytes` wrote."""
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            return cls(str(f["method"]), f["mean"], f["components"])

    @property
    def sha(self) -> str:
        """Hash of the matrix and mean: changes with any refit."""
        return hashlib.sha256(self.mean.tobytes() + self.components.tobytes()).hexdigest()[:32]


def fit_key(source_key: str, cfg: ReduceConfig) -> str:
    """What a projection is fitted for: the full vectors' key and the reduce settings."""
    return model_key({"source": source_key, **cfg.model_dump()})


class ProjectionStore(Protocol):
    """Where projections are kept and their samples come from (:class:`ingest.state.StateDB`)."""

    def projection(self, fit_key: str) -> bytes | None:
        """The stored projection of ``fit_key``, or None."""
        ...

    def save_projection(self, fit_key: str, sha: str, data: bytes) -> bytes:
        """Store a projection unless one is there; returns the one stored."""
        ...

    def sample_cached_vectors(self, model_key: str, limit: int) -> np.ndarray:
        """Up to ``limit`` cached vectors of ``model_key``, one per row."""
        ...


def fit_projection(db: ProjectionStore, source_key: str, cfg: ReduceConfig, model: str) -> Projection:
    """The crawl's projection: the stored one, or one fitted now on up to ``cfg.sample`` vectors cached
    under ``source_key`` (the full model's batch key) and stored. ConfigError, in one line, when the
    cache holds too few vectors to fit on or the model has no more dimensions than asked for."""
    key = fit_key(source_key, cfg)
    stored = db.projection(key)
    if stored is None:
        sample = db.sample_cached_vectors(source_key, cfg.sample)
        # Fewer vectors than dimensions leave directions undetermined; 2x is a working minimum.
        needed = min(cfg.sample, max(64, 2 * cfg.dimensions))
        if len(sample) < needed:
            raise ConfigError(
                f"embedder.reduce: the projection is fitted on the crawl's own {model} vectors and the "
                f"ledger has {len(sample)} (at least {needed} needed): run the crawl once without reduce "
                "(its vectors stay cached, so adding reduce afterwards embeds nothing again)"
            )
        if cfg.dimensions >= sample.shape[1]:
            raise ConfigError(
                f"embedder.reduce.dimensions: {cfg.dimensions} is not fewer than the model's "
                f"{sample.shape[1]} dimensions"
            )
        fitted = Projection.fit(sample, cfg.method, cfg.dimensions)
        stored = db.save_projection(key, fitted.sha, fitted.to_bytes())
    return Projection.from_bytes(stored)


class ReducedEmbedder:
    """An embedder whose vectors pass through a :class:`Projection` (``embedder.reduce``)."""

    def __init__(self, inner: Embedder, projection: Projection) -> None:
        self.inner = inner
        self.projection = projection

    @property
    def model_key(self) -> str:
        """The full model's key, the method, the size and the projection's own hash."""
        p = self.projection
        return model_key(
            {"reduced": self.inner.model_key, "method": p.method, "dimensions": p.dimensions, "sha": p.sha}
        )

    @property
    def dimension(self) -> int:
        """The projection's dimensions."""
        return self.projection.dimensions

    @property
    def max_input_tokens(self) -> int:
        """The full model's input limit."""
        return self.inner.max_input_tokens

    def count_tokens(self, text: str) -> int:
        """The full model's token count."""
        return self.inner.count_tokens(text)

    def check(self) -> None:
        """The full model's check."""
        self.inner.check()

    def estimate_cost(self, tokens: int) -> float:
        """The full model's price: the projection costs nothing."""
        return self.inner.estimate_cost(tokens)

    def project(self, vectors: np.ndarray) -> Vectors:
        """Full vectors → reduced ones (NaN rows, the inner embedder's rejections, stay NaN)."""
        return self.projection.apply(vectors)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """The full model's vectors, projected; its rejections are passed on with projected vectors."""
        try:
            full = self.inner.embed(texts) if progress is None else self.inner.embed(texts, progress)
        except InputRejectedError as err:
            raise InputRejectedError(
                str(err), rejected=err.rejected, vectors=self.project(err.vectors)
            ) from err
        return validate_vectors(self.project(full), len(texts), self.dimension)


__all__ = ["Projection", "ProjectionStore", "ReducedEmbedder", "fit_key", "fit_projection"]
