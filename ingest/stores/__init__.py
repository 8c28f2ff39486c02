"""VectorStore registry: ``store.kind`` → implementation, imported lazily."""

from __future__ import annotations

import importlib

from ingest.config import StoreConfig
from ingest.stores.base import QueryHit, VectorRecord, VectorStore

STORES: dict[str, str] = {
    "chroma": "ingest.stores.chroma:ChromaStore",
    "pinecone": "ingest.stores.pinecone:PineconeStore",
    "memory": "ingest.stores.memory:MemoryStore",  # in this process only, not persistent: for tests
}


def make_store(cfg: StoreConfig, name: str) -> VectorStore:
    """Build the store a crawl definition names; ``name`` is the collection (Chroma) or namespace
    (Pinecone) to use, chosen by the caller (the crawl's name, or a versioned name)."""
    module, cls = STORES[cfg.kind].split(":")
    return getattr(importlib.import_module(module), cls)(cfg, name)  # type: ignore[no-any-return]


__all__ = ["STORES", "QueryHit", "VectorRecord", "VectorStore", "make_store"]
