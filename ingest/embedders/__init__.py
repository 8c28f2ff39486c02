"""Embedder registry: ``embedder.kind`` → implementation, imported lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ingest.config import EmbedderConfig
from ingest.embedders.base import Embedder, Vectors, validate_vectors

# kind -> "module:Class"; vendor SDKs are imported only when their kind is used.
EMBEDDERS: dict[str, str] = {
    "local": "ingest.embedders.local:LocalEmbedder",
    "openai": "ingest.embedders.openai:OpenAIEmbedder",
    "static": "ingest.embedders.static:make_static",  # GloVe, or a model2vec folder
    "fake": "ingest.embedders.fake:FakeEmbedder",  # deterministic, no model: for tests
}


def make_embedder(cfg: EmbedderConfig) -> Embedder:
    """Build the embedder a crawl definition names."""
    module, cls = EMBEDDERS[cfg.kind].split(":")
    return getattr(importlib.import_module(module), cls)(cfg)  # type: ignore[no-any-return]


if TYPE_CHECKING:  # mypy checks that every adapter conforms to the seam (the registry cannot say)
    from ingest.embedders.fake import FakeEmbedder
    from ingest.embedders.local import LocalEmbedder
    from ingest.embedders.model2vec import Model2VecEmbedder
    from ingest.embedders.openai import OpenAIEmbedder
    from ingest.embedders.static import StaticEmbedder

    _conforming: tuple[type[Embedder], ...] = (
        FakeEmbedder,
        LocalEmbedder,
        Model2VecEmbedder,
        OpenAIEmbedder,
        StaticEmbedder,
    )

__all__ = ["EMBEDDERS", "Embedder", "Vectors", "make_embedder", "validate_vectors"]
