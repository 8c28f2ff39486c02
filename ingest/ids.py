"""Deterministic identities: documents, chunks, texts and embedding models.

- ``doc_id``   = hash of the canonical URL (stable across runs).
- ``chunk_id`` = ``{doc_id}#{text_hash(chunk text)}``: an edit changes only the ids of the chunks it
  touched, and a page's vectors can be listed and deleted by the prefix ``{doc_id}#``.
- ``model_key`` = hash of what changes vector meaning; secrets never enter it.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

# 16 hex chars = 64 bits: collisions stay negligible far beyond millions of pages, and ids stay short
# (Pinecone allows 512 characters).
_HASH_HEX = 16
_WS = re.compile(r"\s+")


def _digest(data: str, length: int = _HASH_HEX) -> str:
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:length]


def normalize_text(text: str) -> str:
    """Unicode NFC with runs of whitespace collapsed, so cosmetic reflows do not count as edits."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def doc_id(canonical_url: str) -> str:
    """Stable id of a page, from its canonical URL."""
    return _digest(canonical_url)


def text_hash(text: str) -> str:
    """Hash of a text after normalisation; the key of the embedding cache."""
    return _digest(normalize_text(text))


def content_hash(text: str) -> str:
    """Full-length hash of a document's normalised text, for change detection."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def chunk_id(doc: str, chunk_text: str) -> str:
    """Id of one chunk: ``{doc_id}#{text hash}``."""
    return f"{doc}#{text_hash(chunk_text)}"


# What webvec's chunk ids look like; anything else in a store was put there by someone else.
CHUNK_ID_RE = re.compile(rf"^[0-9a-f]{{{_HASH_HEX}}}#[0-9a-f]{{{_HASH_HEX}}}$")


def is_chunk_id(value: str) -> bool:
    """Whether ``value`` follows webvec's chunk id scheme (``{doc_id}#{text hash}``)."""
    return CHUNK_ID_RE.match(value) is not None


def doc_prefix(doc: str) -> str:
    """Prefix shared by every chunk id of one document."""
    return f"{doc}#"


def model_key(params: Mapping[str, Any]) -> str:
    """Hash of the parameters that change what a vector means (kind, model, dimensions, normalisation)."""
    return _digest(json.dumps(dict(params), sort_keys=True, default=str), 12)
