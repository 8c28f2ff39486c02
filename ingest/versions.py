"""Store versions: one collection (Chroma) or index (Pinecone) per embedding model.

A crawl starts at version 1 (plain names). When the configured embedder changes, a re-embed builds
version N+1 from the chunk text the ledger keeps (no re-crawl; the embedding cache serves texts it
already knows), checks that the new store holds exactly the expected ids, then cuts over in one
ledger transaction. Queries always go to the live version, so they never mix vectors of two
models. Older versions stay until ``prune``; ``rollback`` makes the previous one live again (and
pins it, so the next ingest does not silently re-embed back).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ingest.config import CrawlConfig
from ingest.errors import ConfigError, PermanentError
from ingest.pipeline import (
    RunContext,
    chunk_documents,
    chunk_rows_of,
    document_from_ledger,
    embed_chunks,
    make_context,
    make_record,
    rewrite_chunks,
    version_store,
)
from ingest.state import StateDB, utcnow
from ingest.summary import RunSummary


def metric_of(cfg: CrawlConfig) -> str:
    """Similarity metric of a crawl's store."""
    return cfg.store.metric if cfg.store.kind == "pinecone" else "cosine"


def ensure_first_version(ctx: RunContext) -> None:
    """Record version 1 as live the first time a crawl runs."""
    if not ctx.db.versions(ctx.cfg.name):
        ctx.db.add_version(
            ctx.cfg.name, 1, ctx.store.target, ctx.store.target, ctx.model_key, ctx.chunk_key, "live"
        )


def model_changed(ctx: RunContext) -> bool:
    """True when the live version was embedded by another model than the configured one."""
    live = ctx.db.live_version(ctx.cfg.name)
    if live is None or live["model_key"] == ctx.model_key:
        return False
    if live["pinned"]:
        raise ConfigError(
            f"embedder: {ctx.cfg.name} was rolled back to version {live['version']} "
            f"(model {live['model_key']}) but the crawl definition gives model {ctx.model_key}: revert the "
            "embedder settings, or run "
            f"`webvec reembed {ctx.cfg.name}` to build a new version"
        )
    return True


def start_build(cfg: CrawlConfig, db: StateDB, summary: RunSummary) -> tuple[RunContext, int]:
    """Create the next version's empty store and its ledger row (status ``building``)."""
    number = max((int(v["version"]) for v in db.versions(cfg.name)), default=0) + 1
    ctx = make_context(cfg, summary, db, version=number)
    ctx.store.drop()  # leftovers of an earlier, failed build of this number
    ctx.store.ensure(ctx.embedder.dimension, metric_of(cfg))
    db.add_version(
        cfg.name, number, ctx.store.target, ctx.store.target, ctx.model_key, ctx.chunk_key, "building"
    )
    return ctx, number


def build_batch(
    ctx: RunContext, page_rows: Sequence[dict[str, Any]], stamp: datetime
) -> list[dict[str, object]]:
    """Chunk, embed (cache first) and write one batch of ledger pages into the version being built;
    returns their chunk rows."""
    docs = [document_from_ledger(r) for r in page_rows if r["text"]]
    chunks_by_doc = chunk_documents(ctx, docs)
    flat = [c for d in docs for c in chunks_by_doc[d.doc_id]]
    embedded = embed_chunks(ctx, flat)
    s = ctx.summary
    s.chunks += len(flat)
    s.tokens += sum(c.tokens for c in flat)
    s.texts_embedded += embedded.texts_embedded
    s.tokens_embedded += embedded.tokens_embedded
    s.cache_hits += embedded.cache_hits
    records = [
        make_record(ctx, d, c, embedded.vectors[c.text_hash], stamp.isoformat())
        for d in docs
        for c in chunks_by_doc[d.doc_id]
    ]
    if records:
        ctx.store.upsert(records)
    s.vectors_written += len(records)
    rows: list[dict[str, object]] = []
    for d in docs:
        rows.extend(chunk_rows_of(d, chunks_by_doc[d.doc_id]))
        rows.extend(chunk_rows_of(d, ctx.dropped.pop(d.doc_id, []), dropped=True))
    return rows


def finish_build(ctx: RunContext, number: int, chunk_rows: Sequence[dict[str, object]]) -> int:
    """Check the new store holds exactly the expected ids, then cut over; returns the vector count."""
    expected = {str(r["chunk_id"]) for r in chunk_rows if not r["dropped"]}
    have = set(ctx.store.list_ids())
    if have != expected:
        ctx.db.set_version_status(ctx.cfg.name, number, "failed")
        ctx.store.drop()
        raise PermanentError(
            f"re-embed of {ctx.cfg.name} version {number}: the store holds {len(have)} ids, expected "
            f"{len(expected)} ({len(expected - have)} missing, {len(have - expected)} unexpected); "
            "nothing was switched"
        )
    ctx.db.cut_over(
        ctx.cfg.name,
        number,
        ctx.chunk_key,
        chunk_rows,
        ctx.store.target,
        ctx.model_key,
        vectors=len(expected),
    )
    return len(expected)


def refresh_old_vectors(ctx: RunContext, max_age: timedelta, now: datetime | None = None) -> int:
    """Re-embed (bypassing the cache) the live version's vectors written more than ``max_age`` ago."""
    now = now or utcnow()
    written_at = ctx.db.written_at(ctx.store.target)
    due = {cid for cid, at in written_at.items() if now - at >= max_age}
    if not due:
        return 0
    rows = [r for r in ctx.db.all_chunks(ctx.cfg.name) if r["chunk_id"] in due]
    return rewrite_chunks(ctx, rows, bypass_cache=True)


def rollback(cfg: CrawlConfig, db: StateDB) -> tuple[int, int]:
    """Make the most recent previous version live again (pinned); returns (from, to)."""
    versions = db.versions(cfg.name)
    live = next((v for v in versions if v["status"] == "live"), None)
    previous = [v for v in versions if v["status"] == "previous"]
    if live is None or not previous:
        raise ConfigError(f"{cfg.name}: there is no previous version to roll back to (see `webvec status`)")
    target = max(previous, key=lambda v: v["activated_at"] or v["created_at"])
    db.activate_version(cfg.name, int(target["version"]), pinned=True)
    return int(live["version"]), int(target["version"])


def prune(cfg: CrawlConfig, db: StateDB, keep_previous: bool = False) -> list[int]:
    """Drop the stores of versions that are not live (all of them, or all but the newest previous)."""
    candidates = [v for v in db.versions(cfg.name) if v["status"] in ("previous", "failed", "building")]
    if keep_previous:
        previous = [v for v in candidates if v["status"] == "previous"]
        if previous:
            newest = max(previous, key=lambda v: v["activated_at"] or v["created_at"])
            candidates = [v for v in candidates if v is not newest]
    dropped = []
    for v in candidates:
        store = version_store(cfg, int(v["version"]))
        store.drop()
        db.forget_target(store.target)
        db.set_version_status(cfg.name, int(v["version"]), "pruned")
        dropped.append(int(v["version"]))
    return dropped
