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

from ingest.batch import Chunked, Embedded, chunk_documents, embed_chunks
from ingest.bookkeeping import Hooks
from ingest.chunking import HEADING_SEPARATOR, Chunk
from ingest.config import CrawlConfig
from ingest.context import embedding_texts
from ingest.env import RunEnv, make_env, store_of_version, store_settings_json
from ingest.errors import ConfigError, PermanentError
from ingest.extract import Document
from ingest.model import PageStatus, VersionStatus
from ingest.records import chunk_rows_of, make_record
from ingest.run import BATCH_PAGES, timed
from ingest.state import ChunkRow, NewChunk, PageRow, StateDB, utcnow
from ingest.summary import RunSummary


def document_from_ledger(row: PageRow) -> Document:
    """Rebuild a Document from its ledger row (re-embeds and re-chunks need no re-crawl)."""
    return Document(
        url=row["url"],
        doc_id=row["doc_id"],
        markdown=row["text"] or "",
        title=row["title"],
        canonical=row["canonical_url"],
        content_hash=row["content_hash"] or "",
        page_starts=tuple(row.get("page_starts") or ()),
    )


def chunk_from_ledger(row: ChunkRow) -> Chunk:
    """Rebuild a Chunk from its ledger row."""
    path = tuple(p for p in row["heading_path"].split(HEADING_SEPARATOR) if p)
    return Chunk(
        row["chunk_id"], row["doc_id"], row["text"], path, row["position"], row["tokens"], row["text_hash"]
    )


def model_changed(env: RunEnv) -> bool:
    """True when the live version was embedded by another model than the configured one."""
    live = env.db.live_version(env.cfg.name)
    if live is None or live["model_key"] == env.keys.model_key:
        return False
    if live["pinned"]:
        raise ConfigError(
            f"embedder: {env.cfg.name} was rolled back to version {live['version']} "
            f"(model {live['model_key']}) but the crawl definition gives model {env.keys.model_key}: revert "
            f"the embedder settings, or run `webvec reembed {env.cfg.name}` to build a new version"
        )
    return True


def _build_batch(
    env: RunEnv, rows: Sequence[PageRow], stamp: datetime, summary: RunSummary, hooks: Hooks
) -> list[NewChunk]:
    """Chunk, embed (cache first) and write one batch of ledger pages into the version being built;
    returns their chunk rows."""
    docs = [document_from_ledger(r) for r in rows if r["text"]]
    chunked: Chunked = timed(
        summary,
        hooks,
        "chunk",
        chunk_documents,
        docs,
        env.embedder.count_tokens,
        env.keys,
        {} if env.keys.drop_repeated_chunks else None,
    )
    chunked.tally(summary)
    embedded: Embedded = timed(
        summary,
        hooks,
        "embed",
        embed_chunks,
        chunked.flat,
        env.db,
        env.embedder,
        env.keys.model_key,
        texts=chunked.texts,
        source_key=env.keys.source_model_key,
    )
    embedded.tally(summary)
    if embedded.rejected:
        raise PermanentError(
            f"re-embed of {env.cfg.name}: the embedder rejected {len(embedded.rejected)} text(s), e.g. "
            f"{next(iter(embedded.rejected.values()))}; nothing was switched"
        )
    records = [
        make_record(d, c, embedded.vectors[c.id], env.keys.model_key, stamp.isoformat())
        for d in docs
        for c in chunked.by_doc[d.doc_id]
    ]
    if records:
        timed(summary, hooks, "write", env.store.upsert, records)
    summary.add({"vectors_written": len(records)})
    out: list[NewChunk] = []
    for d in docs:
        out += chunk_rows_of(d, chunked.by_doc[d.doc_id])
        out += chunk_rows_of(d, chunked.dropped.get(d.doc_id, []), dropped=True)
    return out


def rebuild_version(env: RunEnv, summary: RunSummary, hooks: Hooks | None = None) -> int:
    """Build the next version with the configured embedder from the ledger's page text, check that it
    holds exactly the expected ids, and cut over; returns its number. The caller holds the lock."""
    hooks = hooks or Hooks()
    cfg, db = env.cfg, env.db
    number = max((v["version"] for v in db.versions(cfg.name)), default=0) + 1
    new = make_env(cfg, db, version=number, extractor=env.extractor)
    new.store.drop()  # leftovers of an earlier, failed build of this number
    new.store.ensure(new.embedder.dimension, new.metric, new.labels())
    keys = new.keys
    db.add_version(
        cfg.name,
        number,
        new.store.target,
        keys.model_key,
        keys.chunk_key,
        VersionStatus.BUILDING,
        store_settings_json(cfg.store),
    )
    pages = [r for r in db.all_pages(cfg.name, PageStatus.LIVE) if r["text"]]
    stamp = utcnow()
    rows: list[NewChunk] = []
    for i in range(0, len(pages), BATCH_PAGES):
        rows += _build_batch(new, pages[i : i + BATCH_PAGES], stamp, summary, hooks)
    expected = {r["chunk_id"] for r in rows if not r["dropped"]}
    have = set(new.store.list_ids())
    if have != expected:
        db.set_version_status(cfg.name, number, VersionStatus.FAILED)
        new.store.drop()
        raise PermanentError(
            f"re-embed of {cfg.name} version {number}: the store holds {len(have)} ids, expected "
            f"{len(expected)} ({len(expected - have)} missing, {len(have - expected)} unexpected); "
            "nothing was switched"
        )
    db.cut_over(
        cfg.name, number, keys.chunk_key, rows, new.store.target, keys.model_key, vectors=len(expected)
    )
    summary.target, summary.model_key = new.store.target, keys.model_key
    return number


def rewrite_chunks(
    env: RunEnv, rows: Sequence[ChunkRow], summary: RunSummary, *, bypass_cache: bool = False
) -> int:
    """Write ledger chunks to the store again and record them as written under the current model.

    Vectors come from the embedding cache (embedding only what it lacks), or, with ``bypass_cache``,
    are all embedded afresh and replace the cached ones. Returns records written.
    """
    if not rows:
        return 0
    pages = {p["url"]: document_from_ledger(p) for p in env.db.all_pages(env.cfg.name)}
    chunks = [chunk_from_ledger(r) for r in rows]
    keys = env.keys
    texts = embedding_texts(
        ((c.id, pages[r["url"]].title, c.heading_path, c.text) for r, c in zip(rows, chunks, strict=True)),
        keys.context_template,
        env.embedder.count_tokens,
        keys.context_tokens,
    )
    embedded = embed_chunks(
        chunks,
        env.db,
        env.embedder,
        keys.model_key,
        texts=texts,
        bypass_cache=bypass_cache,
        source_key=keys.source_model_key,
    )
    embedded.tally(summary)
    stamp = utcnow().isoformat()
    records = [
        make_record(pages[r["url"]], c, embedded.vectors[c.id], keys.model_key, stamp)
        for r, c in zip(rows, chunks, strict=True)
        if c.id in embedded.vectors
    ]
    env.store.ensure(env.embedder.dimension, env.metric, env.labels())
    env.store.upsert(records)
    env.db.mark_written(env.store.target, env.keys.model_key, [r.id for r in records], [])
    summary.add({"vectors_written": len(records)})
    return len(records)


def refresh_old_vectors(
    env: RunEnv, max_age: timedelta, summary: RunSummary, now: datetime | None = None
) -> int:
    """Re-embed (bypassing the cache) the live version's vectors written more than ``max_age`` ago."""
    now = now or utcnow()
    due = {cid for cid, at in env.db.written_at(env.store.target).items() if now - at >= max_age}
    if not due:
        return 0
    rows = [r for r in env.db.all_chunks(env.cfg.name) if r["chunk_id"] in due]
    return rewrite_chunks(env, rows, summary, bypass_cache=True)


def rollback(cfg: CrawlConfig, db: StateDB) -> tuple[int, int]:
    """Make the most recent previous version live again (pinned); returns (from, to)."""
    versions = db.versions(cfg.name)
    live = next((v for v in versions if v["status"] == VersionStatus.LIVE), None)
    previous = [v for v in versions if v["status"] == VersionStatus.PREVIOUS]
    if live is None or not previous:
        raise ConfigError(f"{cfg.name}: there is no previous version to roll back to (see `webvec status`)")
    target = max(previous, key=lambda v: v["activated_at"] or v["created_at"])
    db.activate_version(cfg.name, target["version"], pinned=True)
    return live["version"], target["version"]


def prune(cfg: CrawlConfig, db: StateDB, keep_previous: bool = False) -> list[int]:
    """Drop the stores of versions that are not live (all of them, or all but the newest previous)."""
    dead = (VersionStatus.PREVIOUS, VersionStatus.FAILED, VersionStatus.BUILDING)
    candidates = [v for v in db.versions(cfg.name) if v["status"] in dead]
    if keep_previous:
        previous = [v for v in candidates if v["status"] == VersionStatus.PREVIOUS]
        if previous:
            newest = max(previous, key=lambda v: v["activated_at"] or v["created_at"])
            candidates = [v for v in candidates if v is not newest]
    dropped = []
    for v in candidates:
        store = store_of_version(cfg, v, v["version"])
        store.drop()
        db.forget_target(store.target)
        db.set_version_status(cfg.name, v["version"], VersionStatus.PRUNED)
        dropped.append(v["version"])
    return dropped
