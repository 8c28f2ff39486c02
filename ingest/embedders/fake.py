"""A deterministic, dependency-free embedder for tests and dry runs: ``embedder: {kind: fake}``.

Like dlt's ``dummy`` destination, it ships in the core so that the whole pipeline can run in seconds
without a model, a server or a key. It is *not* a language model: a vector is a hashed bag of words.

How a text becomes a vector
    The text is normalised (:func:`ingest.ids.normalize_text`) and lowercased; its words (runs of
    word characters) other than a few English function words (:data:`STOP_WORDS`) each add
    ``1 + ln(count)`` at one position of the vector, with a sign, both chosen by a SHA-256 of the
    word (signed feature hashing, Weinberger et al. 2009); the sum is L2-normalised. Texts that share
    words therefore have a higher cosine similarity than texts that share none, so a query finds the
    page that uses its words. The damped count keeps a word repeated all over a long chunk from
    outweighing the rest, and the stop words keep "how do I" from matching every chunk. A text of
    stop words only uses them; one without words, its punctuation; an empty text, a fixed sentinel:
    every vector has norm 1 (stores such as Pinecone refuse zero vectors). Hashing uses SHA-256,
    never Python's salted ``hash()``, so vectors are equal across processes.

    Hashing many words into few positions makes unrelated texts collide: on the sample site
    (``bench/site``, 112 chunks of up to 256 tokens), an 8-word phrase quoted from a page finds that
    page first for 7 of 29 pages at 64 dimensions, 24 at 512 and 27 at 1024, hence the default 1024.

Limits
    ``count_tokens`` counts :data:`TOKEN_RE` matches; an input with more than ``max_input_tokens`` of
    them is refused with :class:`~ingest.errors.PermanentError` before anything is embedded, as the
    OpenAI adapter does, so a chunker that overshoots fails in the fast tests too.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from ingest.config import FakeEmbedderConfig
from ingest.embedders.base import Vectors, embed_each, rejection_message, validate_vectors
from ingest.errors import InputRejectedError
from ingest.ids import model_key, normalize_text

# A token: a run of word characters, or any single other non-space character ("<|a|>" is 5 tokens).
TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"\w+")
# English function words that carry no topic; a query's "how do I ... my" would otherwise match
# every chunk about as well as its content words do.
_STOP_TEXT = (
    "a an and are as at be but by can do does for from has have how i if in into is it its my no not "
    "of on or our so than that the their then there these they this to too was we what when where "
    "which while who why will with you your"
)
STOP_WORDS = frozenset(_STOP_TEXT.split())
# Bump when the text → vector mapping changes, so that vectors of the old scheme get another model_key.
SCHEME = "hashed-bow-v1"
_EMPTY_FEATURE = "\x00empty"

Progress = Callable[[int], None]


@lru_cache(maxsize=65536)
def _feature(token: str, dimension: int) -> tuple[int, float]:
    """Position and sign of one token's entry in a vector of ``dimension`` values."""
    digest = int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:8], "big")
    return digest % dimension, (1.0 if (digest >> 63) & 1 else -1.0)


def _features(text: str) -> Counter[str]:
    """The tokens that make up a text's vector, with their counts (see the module docstring)."""
    norm = normalize_text(text).casefold()
    words = _WORD_RE.findall(norm)
    topical = [w for w in words if w not in STOP_WORDS]
    return Counter(topical or words or TOKEN_RE.findall(norm) or [_EMPTY_FEATURE])


class FakeEmbedder:
    """Hashed bag-of-words vectors (see the module docstring); no model, no network, no cost."""

    def __init__(self, cfg: FakeEmbedderConfig) -> None:
        self.cfg = cfg
        self.tokens_used = 0

    @property
    def model_key(self) -> str:
        """Changes with the dimension and the hashing scheme; not with batch size or token limits."""
        return model_key({"kind": "fake", "scheme": SCHEME, "dimension": self.cfg.dimension})

    @property
    def dimension(self) -> int:
        """Vector size: ``embedder.dimension``."""
        return self.cfg.dimension

    @property
    def max_input_tokens(self) -> int:
        """Longest input, in :meth:`count_tokens` tokens: ``embedder.max_input_tokens``."""
        return self.cfg.max_input_tokens

    def count_tokens(self, text: str) -> int:
        """Words plus other non-space characters (see :data:`TOKEN_RE`)."""
        return len(TOKEN_RE.findall(text))

    def check(self) -> None:
        """Nothing can be missing: the fake embedder needs no package, model or key."""

    def estimate_cost(self, tokens: int) -> float:
        """The fake embedder costs nothing."""
        return 0.0

    def vector(self, text: str) -> Vectors:
        """The unit vector of one text (float32, shape ``(dimension,)``)."""
        values = np.zeros(self.dimension, dtype=np.float64)
        for token, count in _features(text).items():
            position, sign = _feature(token, self.dimension)
            values[position] += sign * (1.0 + math.log(count))
        norm = float(np.linalg.norm(values))
        if norm == 0.0:  # every feature cancelled out by colliding with an opposite sign
            values[_feature(_EMPTY_FEATURE, self.dimension)[0]] = 1.0
            norm = 1.0
        return (values / norm).astype(np.float32)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> Vectors:
        """Vectors for ``texts``, one row each in input order, in batches of ``embedder.batch_size``.

        ``progress``, when given, is called once per batch with the number of texts that batch
        embedded (an increment, like :func:`flows.progress.emit`). Raises PermanentError, before
        embedding anything, when an input has more than ``max_input_tokens`` tokens, and
        InputRejectedError, after embedding the others, for inputs holding ``fail_on``.
        """
        out, tokens = embed_each(
            "fake embedder",
            texts,
            self.count_tokens,
            self.max_input_tokens,
            self.vector,
            self.dimension,
            self.cfg.batch_size,
            progress,
        )
        self.tokens_used += tokens
        if self.cfg.fail_on:  # a provider refusing some inputs (a 400 about them), for fault tests
            rejected = {
                i: "400 invalid input: refused by the fake embedder"
                for i, t in enumerate(texts)
                if self.cfg.fail_on in t
            }
            if rejected:
                out[list(rejected)] = np.nan
                message = rejection_message("fake embedder", rejected, len(texts))
                raise InputRejectedError(message, rejected=rejected, vectors=out)
        return validate_vectors(out, len(texts), self.dimension)
