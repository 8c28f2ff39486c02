"""The rows webvec writes for a document: its store records (vector + metadata) and its ledger rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from ingest.chunking import Chunk
from ingest.extract import Document
from ingest.model import PageStatus
from ingest.state import NewChunk, NewPage
from ingest.stores import VectorRecord

Validators = tuple[str | None, str | None]  # ETag, Last-Modified


def make_record(
    doc: Document, chunk: Chunk, vector: np.ndarray, model_key: str, crawled_at: str
) -> VectorRecord:
    """The store record of one chunk: its id, vector, and flat metadata with the text."""
    meta: dict[str, str | int | float | bool] = {
        "url": doc.url,
        "doc_id": doc.doc_id,
        "title": doc.title or "",
        "heading": chunk.heading,
        "chunk_index": chunk.position,
        "content_hash": doc.content_hash,
        "model_key": model_key,
        "crawled_at": crawled_at,
        "text": chunk.text,
    }
    if doc.lang:
        meta["lang"] = doc.lang
    if doc.page_starts:
        # The page the chunk's own text starts on. Chunks rebuilt from ledger rows carry no offsets:
        # their text is found in the document instead.
        start = chunk.start if chunk.end else doc.markdown.find(chunk.body)
        if start >= 0:
            meta["page"] = doc.page_at(start) or 1
    return VectorRecord(chunk.id, vector, meta)


def chunk_rows_of(doc: Document, chunks: Sequence[Chunk], dropped: bool = False) -> list[NewChunk]:
    """Ledger rows for a document's chunks (``dropped``: recorded, but kept out of the store)."""
    return [
        {
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "url": doc.url,
            "position": c.position,
            "text": c.text,
            "text_hash": c.text_hash,
            "tokens": c.tokens,
            "heading_path": c.heading,
            "dropped": dropped,
        }
        for c in chunks
    ]


def page_row(
    doc: Document,
    status: PageStatus,
    changed_at: datetime,
    *,
    validators: Validators = (None, None),
    chunk_key: str | None = None,
    fingerprint: int | None = None,
    alias_of: str | None = None,
) -> NewPage:
    """The ledger row of a document: live pages keep their text (to re-chunk without a re-crawl)."""
    return {
        "url": doc.url,
        "doc_id": doc.doc_id,
        "canonical_url": doc.canonical,
        "title": doc.title,
        "etag": validators[0],
        "last_modified": validators[1],
        "content_hash": doc.content_hash,
        "chunk_key": chunk_key,
        "text": doc.markdown if status == PageStatus.LIVE else None,
        "fingerprint": fingerprint,
        "alias_of": alias_of,
        "status": str(status),
        "last_changed": changed_at,
        "page_starts": list(doc.page_starts) if doc.page_starts and status == PageStatus.LIVE else None,
    }
