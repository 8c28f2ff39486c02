"""Querying a crawl's vectors (the ``webvec query`` command and library use)."""

from __future__ import annotations

from typing import Any

from ingest.config import CrawlConfig
from ingest.pipeline import make_context


def search(
    cfg: CrawlConfig, text: str, k: int = 5, filter: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The ``k`` chunks nearest to ``text``: dicts with url, title, heading, score, text, id."""
    ctx = make_context(cfg)  # the live version's store, and its embedder
    if ctx.store.count() == 0:
        return []
    vector = ctx.embedder.embed([text])[0]
    return [
        {
            "url": hit.metadata.get("url", ""),
            "title": hit.metadata.get("title", ""),
            "heading": hit.metadata.get("heading", ""),
            "score": round(float(hit.score), 6),
            "text": hit.metadata.get("text", ""),
            "id": hit.id,
        }
        for hit in ctx.store.query(vector, k, filter)
    ]
