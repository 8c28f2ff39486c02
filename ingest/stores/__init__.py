"""VectorStore registry: ``store.kind`` → the factory of its adapter, imported lazily."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ingest.config import StoreConfig
from ingest.stores.base import QueryHit, VectorRecord, VectorStore

# kind -> "module:factory(cfg, crawl, version)"; vendor SDKs are imported only when their kind is used.
STORES: dict[str, str] = {
    "chroma": "ingest.stores.chroma:ChromaStore.for_crawl",
    "pinecone": "ingest.stores.pinecone:for_crawl",
    "qdrant": "ingest.stores.qdrant:QdrantStore.for_crawl",
    "milvus": "ingest.stores.milvus:MilvusStore.for_crawl",
    "pgvector": "ingest.stores.pgvector:PgvectorStore.for_crawl",
    "memory": "ingest.stores.memory:MemoryStore.for_crawl",  # this process only, not persistent: tests
}


def make_store(cfg: StoreConfig, crawl: str, version: int = 1) -> VectorStore:
    """The store of one version of a crawl. Each adapter names its own versioned locations (vendors'
    naming rules differ): version 1 keeps the plain names, so a crawl that never changes model keeps
    them."""
    module, attr = STORES[cfg.kind].split(":")
    factory: object = importlib.import_module(module)
    for part in attr.split("."):
        factory = getattr(factory, part)
    return cast(Callable[..., VectorStore], factory)(cfg, crawl, version)


if TYPE_CHECKING:  # mypy checks that every adapter conforms to the seam (the registry cannot say)
    from ingest.stores.chroma import ChromaStore
    from ingest.stores.memory import MemoryStore
    from ingest.stores.milvus import MilvusStore
    from ingest.stores.pgvector import PgvectorStore
    from ingest.stores.pinecone import PineconeStore
    from ingest.stores.qdrant import QdrantStore

    _conforming: tuple[type[VectorStore], ...] = (
        ChromaStore,
        MemoryStore,
        PgvectorStore,
        PineconeStore,
        QdrantStore,
        MilvusStore,
    )

__all__ = ["STORES", "QueryHit", "VectorRecord", "VectorStore", "make_store"]
