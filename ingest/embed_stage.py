"""Stage 5 of a batch (:mod:`ingest.batch`): embed the chunks whose text the cache does not know.

In a module of its own so that :mod:`ingest.batch` stays readable; :mod:`ingest.batch` re-exports
both names, and the stage reads like the others: typed inputs, a typed result that tallies itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ingest.chunking import Chunk
from ingest.embedders import Embedder
from ingest.embedders.base import embed_partial
from ingest.embedders.reduce import ReducedEmbedder
from ingest.ids import text_hash
from ingest.state import StateDB
from ingest.summary import RunSummary

Progress = Callable[[int], None]


# -- stage 5: embed ----------------------------------------------------------------------------------
@dataclass
class Embedded:
    """Stage 5's result: a vector for every text of the batch (except rejected ones)."""

    vectors: dict[str, np.ndarray]  # chunk id → vector
    texts_embedded: int  # texts the embedder was (or, dry, would be) asked for
    tokens_embedded: int
    cache_hits: int
    rejected: dict[str, str] = field(default_factory=dict)  # chunk id → why the embedder refused it

    def tally(self, summary: RunSummary) -> None:
        """Count into the summary."""
        summary.add(
            {
                "texts_embedded": self.texts_embedded,
                "tokens_embedded": self.tokens_embedded,
                "cache_hits": self.cache_hits,
            }
        )


def embed_chunks(
    chunks: Sequence[Chunk],
    db: StateDB,
    embedder: Embedder,
    model_key: str,
    *,
    texts: Mapping[str, str] | None = None,
    write: bool = True,
    bypass_cache: bool = False,
    progress: Progress | None = None,
    source_key: str | None = None,
) -> Embedded:
    """Stage 5: embed only texts whose (model_key, text_hash) is not cached; cache the new ones.

    ``texts`` (chunk id → text) is what the embedder reads when it is not the chunk text (the
    context template); the cache is keyed by the hash of the text embedded, so one chunk text under
    two pages' titles gets two vectors. With a reduced embedder (``embedder.reduce``), ``source_key``
    is the full model's key: full vectors cached under it are projected rather than embedded again,
    and new full vectors are cached under it too, so another projection costs no embedding. Inputs
    the embedder rejects (:class:`~ingest.errors.InputRejectedError`) are returned in ``rejected``;
    the write stage quarantines their chunks and writes the rest. ``bypass_cache`` embeds every text afresh.
    """
    unique: dict[str, tuple[str, Chunk]] = {}  # hash of the embedded text → (text, first chunk)
    key_of: dict[str, str] = {}  # chunk id → hash of its embedded text
    for c in chunks:
        text = texts.get(c.id, c.text) if texts else c.text
        key = c.text_hash if text == c.text else text_hash(text)
        key_of[c.id] = key
        unique.setdefault(key, (text, c))
    cached = {} if bypass_cache else db.cached_vectors(model_key, list(unique))
    missing = [(h, t, c) for h, (t, c) in unique.items() if h not in cached]
    if progress is not None and cached:
        progress(len(chunks) - len(missing))
    reduced = embedder if isinstance(embedder, ReducedEmbedder) and source_key else None
    fresh: dict[str, np.ndarray] = {}
    if reduced is not None and missing and not bypass_cache:
        full = db.cached_vectors(str(source_key), [h for h, _, _ in missing])
        if full:
            hashes = list(full)
            fresh = dict(zip(hashes, reduced.project(np.stack([full[h] for h in hashes])), strict=True))
            missing = [m for m in missing if m[0] not in fresh]
            if progress is not None:
                progress(len(fresh))
            if write:
                db.cache_vectors(model_key, fresh)
    refused: dict[str, str] = {}
    if missing and write:
        model = reduced.inner if reduced is not None else embedder
        # The model's own vectors go to the cache under this key: the full model's for a reduced one.
        raw_key = str(source_key) if reduced is not None else model_key
        kept_early: set[int] = set()

        def keep(start: int, rows: np.ndarray, rejected: Mapping[int, str]) -> None:
            # Each request's vectors are cached as soon as it is answered: a batch that fails later,
            # or whose process is killed, has not paid in vain (a re-run, on any worker, reads them).
            done = [i for i in range(len(rows)) if i not in rejected]
            db.cache_vectors(raw_key, {missing[start + i][0]: rows[i] for i in done}, replace=bypass_cache)
            kept_early.update(start + i for i in done)

        vectors, bad = embed_partial(model, [t for _, t, _ in missing], progress, keep)
        kept = [i for i in range(len(missing)) if i not in bad]
        refused = {missing[i][0]: reason for i, reason in bad.items()}
        late = [i for i in kept if i not in kept_early]  # from an embedder that answers whole calls only
        if late:
            db.cache_vectors(raw_key, {missing[i][0]: vectors[i] for i in late}, replace=bypass_cache)
        if reduced is not None:
            vectors = reduced.project(vectors)  # rejected rows (NaN) project to rows that are dropped
        new = {missing[i][0]: vectors[i] for i in kept}
        if reduced is not None:
            db.cache_vectors(model_key, new, replace=bypass_cache)
        fresh.update(new)
    known = {**cached, **fresh}
    return Embedded(
        vectors={cid: known[h] for cid, h in key_of.items() if h in known},
        texts_embedded=len(missing) - len(refused),
        # Tokens of the texts sent, context included (what the provider bills), not of the bare chunks.
        tokens_embedded=sum(
            c.tokens if t == c.text else embedder.count_tokens(t) for h, t, c in missing if h not in refused
        ),
        # Chunks not embedded because their text was known: cached, or repeated within this batch.
        cache_hits=len(chunks) - len(missing),
        rejected={cid: refused[h] for cid, h in key_of.items() if h in refused},
    )
