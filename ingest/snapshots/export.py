"""``webvec export``: the live version of a crawl as a self-describing snapshot.

The vectors come from the ledger and the embedding cache, not from the store: the ledger's chunk rows
say which chunks are live (with their text and page), the cache holds their vectors under the live
version's model_key. That works the same for every store kind, with nothing added to the VectorStore
seam. The store is still asked which ids it holds, so a snapshot is never made of a ledger and a
store that disagree (``webvec verify --repair`` first).

An export only reads, so it does not take the crawl's lock: a run that commits while it reads makes
the ledger and the store disagree for a moment, the id check fails, and the export is run again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from ingest.config import CrawlConfig
from ingest.context import embedding_texts
from ingest.env import RunEnv, make_env
from ingest.errors import ConfigError, NothingIngestedError, PermanentError
from ingest.extract import Document
from ingest.ids import text_hash
from ingest.query import open_ledger
from ingest.records import make_record
from ingest.snapshots.formats import SnapshotRecord, make_writer, require
from ingest.snapshots.locations import parse_location
from ingest.snapshots.manifest import (
    MANIFEST_VERSION,
    check_format,
    file_entries,
    snapshot_id,
    webvec_version,
    write_manifest,
)
from ingest.state import IN_BATCH, ChunkRow, VersionRow, utcnow
from ingest.versions import chunk_from_ledger, document_from_ledger


def export_snapshot(cfg: CrawlConfig, fmt: str, to: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Write the crawl's live version (ids, vectors, text, metadata) as a new snapshot
    ``<to>/<crawl>/<snapshot id>/`` in ``fmt`` (faiss, annoy, parquet, jsonl); ``to`` is a folder
    (relative to the current directory) or ``s3://bucket/prefix``. Returns the manifest and where it
    went (``location``). Earlier snapshots are kept. NothingIngestedError when there is nothing live."""
    check_format(fmt)
    require(fmt)  # a missing extra fails before any work
    location = parse_location(to)
    db = open_ledger(cfg)
    try:
        live = db.live_version(cfg.name)
        if live is None:
            raise NothingIngestedError(
                f"{cfg.name}: no live version to export (see `webvec status {cfg.name}`)"
            )
        env = make_env(cfg, db, version=live["version"])
        if live["model_key"] != env.keys.model_key:
            raise ConfigError(
                f"embedder: the live version of {cfg.name} was embedded with model {live['model_key']}, the "
                f"crawl definition gives {env.keys.model_key}: revert it (the snapshot would describe the "
                f"wrong model) or run `webvec reembed {cfg.name}`"
            )
        chunks = db.all_chunks(cfg.name)
        _check_store(env, chunks)
        with location.staging(cfg.name) as folder:
            writer = make_writer(fmt, folder, env.metric)
            dimension = count = 0
            try:
                for batch in _records(env, live, chunks):
                    dimension = dimension or int(batch[0].vector.shape[0])
                    if any(r.vector.shape != (dimension,) for r in batch):
                        raise PermanentError(
                            f"{cfg.name}: cached vectors of several dimensions; not exported"
                        )
                    writer.add(batch)
                    count += len(batch)
            except BaseException:
                writer.abort()
                raise
            names, index = writer.close()
            files = file_entries(folder, names)
            stamp = now or utcnow()
            manifest: dict[str, Any] = {
                "manifest_version": MANIFEST_VERSION,
                "snapshot_id": snapshot_id(stamp, files),
                "format": fmt,
                "crawl": cfg.name,
                "version": live["version"],
                "target": env.store.target,
                "embedder": cfg.embedder.kind,
                "model": str(getattr(cfg.embedder, "model", cfg.embedder.kind)),
                "model_key": live["model_key"],
                "chunk_key": live["chunk_key"],
                "dimension": dimension,
                "metric": env.metric,
                "count": count,
                "index": index,
                "files": files,
                "webvec_version": webvec_version(),
                "created_at": stamp.isoformat(timespec="seconds"),
            }
            write_manifest(folder, manifest)  # last: it marks the snapshot complete
            where = location.publish(cfg.name, manifest["snapshot_id"], folder)
    finally:
        db.close()
    return {**manifest, "location": where}


def _check_store(env: RunEnv, chunks: Sequence[ChunkRow]) -> None:
    """The store must hold exactly the ledger's live chunks; else the snapshot would lie about it."""
    expected = {c["chunk_id"] for c in chunks}
    if not expected:
        raise NothingIngestedError(f"{env.cfg.name}: the live version holds no vectors: nothing to export")
    have = set(env.store.list_ids())
    if have != expected or env.store.count() != len(expected):
        raise PermanentError(
            f"{env.cfg.name}: the store {env.store.target} holds {len(have)} vectors, the ledger "
            f"{len(expected)} ({len(expected - have)} missing, {len(have - expected)} unexpected): run "
            f"`webvec verify {env.cfg.name} --repair`, then export again"
        )


def _records(env: RunEnv, live: VersionRow, chunks: Sequence[ChunkRow]) -> Iterator[list[SnapshotRecord]]:
    """The live chunks with their cached vectors and the metadata the store holds (``make_record``'s),
    in batches. ``crawled_at`` is when the ledger recorded the write; ``lang`` is not in the ledger."""
    key = live["model_key"]
    pages = {p["url"]: document_from_ledger(p) for p in env.db.all_pages(env.cfg.name)}
    written = env.db.written_at(env.store.target)
    for start in range(0, len(chunks), IN_BATCH):
        part = chunks[start : start + IN_BATCH]
        # The cache is keyed by the hash of the text the embedder read (the chunk in its context).
        hashes = _embedded_hashes(env, pages, part)
        vectors = env.db.cached_vectors(key, list(hashes.values()))
        missing = [c["chunk_id"] for c in part if hashes[c["chunk_id"]] not in vectors]
        if missing:
            raise PermanentError(
                f"{env.cfg.name}: the embedding cache has no vector for {len(missing)} live chunk(s), e.g. "
                f"{missing[0]} (was the cache cleared?): `webvec reembed {env.cfg.name}` embeds them again"
            )
        batch = []
        for row in part:
            doc, chunk = pages[row["url"]], chunk_from_ledger(row)
            at = written.get(row["chunk_id"])
            vector = vectors[hashes[row["chunk_id"]]]
            record = make_record(doc, chunk, vector, key, at.isoformat() if at else "")
            # The text is a field of its own in every format, so not repeated in the metadata.
            meta = {k: v for k, v in record.metadata.items() if k != "text"}
            batch.append(SnapshotRecord(chunk.id, vector, chunk.text, hashes[row["chunk_id"]], meta))
        yield batch


def _embedded_hashes(env: RunEnv, pages: dict[str, Document], rows: Sequence[ChunkRow]) -> dict[str, str]:
    """Chunk id → the embedding cache's key of its vector: the hash of the text the embedder read
    (``chunk.context_template`` applied, as the run applied it)."""
    keys = env.keys
    chunks = {r["chunk_id"]: chunk_from_ledger(r) for r in rows}
    texts = embedding_texts(
        ((r["chunk_id"], pages[r["url"]].title, chunks[r["chunk_id"]].heading_path, r["text"]) for r in rows),
        keys.context_template,
        env.embedder.count_tokens,
        keys.context_tokens,
    )
    return {
        cid: chunks[cid].text_hash if text == chunks[cid].text else text_hash(text)
        for cid, text in texts.items()
    }
