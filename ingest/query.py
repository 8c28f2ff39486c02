"""Querying a crawl's vectors (the ``webvec query`` command and library use)."""

from __future__ import annotations

from typing import Any

from ingest.config import CrawlConfig
from ingest.embedders import make_embedder
from ingest.pipeline import store_name
from ingest.stores import make_store


def search(
    cfg: CrawlConfig, text: str, k: int = 5, filter: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The ``k`` chunks nearest to ``text``: dicts with url, title, heading, score, text, id."""
    embedder = make_embedder(cfg.embedder)
    store = make_store(cfg.store, store_name(cfg))
    embedder.check()
    store.check()
    if store.count() == 0:
        return []
    vector = embedder.embed([text])[0]
    return [
        {
            "url": hit.metadata.get("url", ""),
            "title": hit.metadata.get("title", ""),
            "heading": hit.metadata.get("heading", ""),
            "score": round(float(hit.score), 6),
            "text": hit.metadata.get("text", ""),
            "id": hit.id,
        }
        for hit in store.query(vector, k, filter)
    ]
