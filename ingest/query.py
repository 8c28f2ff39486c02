"""Querying a crawl's vectors (the ``webvec query`` command and library use)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.config import CrawlConfig
from ingest.errors import ConfigError, NothingIngestedError
from ingest.state import StateDB


def open_ledger(cfg: CrawlConfig) -> StateDB:
    """The crawl's state DB for reading; NothingIngestedError (creating nothing) when it never ran."""
    db = StateDB.open_existing(cfg.state_url())
    if db is None:
        raise NothingIngestedError(f"{cfg.name}: nothing ingested yet: run `webvec run {cfg.name}` first")
    return db


def search(
    cfg: CrawlConfig, text: str, k: int = 5, filter: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The ``k`` chunks nearest to ``text`` in the live version: dicts with url, title, heading, score,
    text, id. NothingIngestedError when the crawl has no live vectors; ConfigError for an empty text."""
    from ingest.env import make_env

    if not text.strip():
        raise ConfigError("the query text is empty: give a question or a phrase to search for")
    db = open_ledger(cfg)
    try:
        live = db.live_version(cfg.name)
        if live is None:
            raise NothingIngestedError(
                f"{cfg.name}: no live version: no run has written vectors yet "
                f"(see `webvec status {cfg.name}`)"
            )
        env = make_env(cfg, db, version=live["version"])
        if env.store.count() == 0:
            raise NothingIngestedError(
                f"{cfg.name}: the live store {live['target']} holds no vectors "
                f"(see `webvec verify {cfg.name}`)"
            )
        if live["model_key"] != env.keys.model_key:
            raise ConfigError(
                f"embedder: the live version of {cfg.name} was embedded with model {live['model_key']}, the "
                f"crawl definition gives {env.keys.model_key}: run `webvec reembed {cfg.name}` or revert it"
            )
        vector = env.embedder.embed([text])[0]
        hits = env.store.query(vector, k, filter)
    finally:
        db.close()
    return [
        {
            "url": hit.metadata.get("url", ""),
            "title": hit.metadata.get("title", ""),
            "heading": hit.metadata.get("heading", ""),
            "score": round(float(hit.score), 6),
            "text": hit.metadata.get("text", ""),
            "id": hit.id,
        }
        for hit in hits
    ]
