"""BM25 as sparse vectors, for stores that rank sparse and dense together (Pinecone's sparse-dense
records): ``store: {kind: pinecone, metric: dotproduct, sparse: bm25-v1}``.

BM25 splits into a part that depends on the chunk alone and a part that depends on the corpus:

- A stored chunk carries its term-frequency part, ``tf·(k1+1) / (tf + k1·(1 − b + b·len/avgdl))``,
  with ``k1``, ``b`` and ``avgdl`` fixed by the scheme (:data:`SCHEMES`), L2-normalised. It never
  changes while the chunk does not: a growing crawl re-encodes nothing.
- The query carries the corpus part, each term's IDF, from the ledger's live document frequencies
  (its lexical index), L2-normalised — the statistics are never baked into stored vectors, so they
  cannot go stale or mix.

A term's index is a stable 32-bit hash of the word (Pinecone indices are uint32), so no vocabulary
needs keeping; two words sharing a hash (rare among a page's hundreds of words) just add up. A new
scheme is a new ``store.sparse`` value: a new store setting, hence a new version written from the
cache, never a store that mixes two encodings.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from ingest.state.lexical import STOPWORDS

_WORD = re.compile(r"\w+")
# Pinecone: "Sparse vectors can contain no more than 1000 non-zero values" (docs, Limits).
MAX_NONZERO = 1000


@dataclass(frozen=True)
class Scheme:
    """BM25's constants for the stored part (Robertson and Zaragoza's usual k1 and b)."""

    k1: float
    b: float
    avgdl: float  # words per chunk taken as the average: about a 256-token chunk's


SCHEMES = {"bm25-v1": Scheme(k1=1.2, b=0.75, avgdl=150.0)}


@dataclass(frozen=True)
class SparseVector:
    """Indices (uint32, ascending, unique) and their float values."""

    indices: list[int]
    values: list[float]

    def as_dict(self) -> dict[str, list[int] | list[float]]:
        """``{"indices": [...], "values": [...]}``: the shape Pinecone's API takes."""
        return {"indices": self.indices, "values": self.values}


def terms(text: str) -> list[str]:
    """The words BM25 counts: lowercased ``\\w+`` words, stopwords and single characters left out."""
    return [w for w in (m.lower() for m in _WORD.findall(text)) if len(w) > 1 and w not in STOPWORDS]


def term_index(term: str) -> int:
    """A term's sparse index: the first 4 bytes of its BLAKE2b hash (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def _normalised(weights: Mapping[int, float]) -> SparseVector:
    # The heaviest MAX_NONZERO terms when there are more (a very long chunk).
    kept = sorted(weights.items(), key=lambda kv: -kv[1])[:MAX_NONZERO]
    norm = math.sqrt(sum(v * v for _, v in kept)) or 1.0
    kept.sort()
    return SparseVector([i for i, _ in kept], [v / norm for _, v in kept])


def encode_document(text: str, scheme: str) -> SparseVector:
    """The stored part of BM25 for one chunk (see the module docstring); empty for a text of no term."""
    s = SCHEMES[scheme]
    words = terms(text)
    length_norm = 1 - s.b + s.b * len(words) / s.avgdl
    weights: dict[int, float] = {}
    for term, tf in Counter(words).items():
        i = term_index(term)
        weights[i] = weights.get(i, 0.0) + tf * (s.k1 + 1) / (tf + s.k1 * length_norm)
    return _normalised(weights)


def encode_query(text: str, document_frequency: Mapping[str, int], documents: int) -> SparseVector:
    """The query's part of BM25: each distinct term weighted by its IDF,
    ``ln(1 + (N − df + 0.5) / (df + 0.5))``, from the crawl's live document frequencies."""
    weights: dict[int, float] = {}
    for term in dict.fromkeys(terms(text)):
        df = document_frequency.get(term, 0)
        idf = math.log(1 + (documents - df + 0.5) / (df + 0.5))
        i = term_index(term)
        weights[i] = weights.get(i, 0.0) + idf
    return _normalised(weights)


__all__ = ["MAX_NONZERO", "SCHEMES", "SparseVector", "encode_document", "encode_query", "term_index", "terms"]
