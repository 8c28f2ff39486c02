"""The batch steps of a run (stages 2–7 of DESIGN.md), as plain functions over a RunContext.

The Prefect flows wrap each step in a task; the CLI's dry-run ``plan`` and the tests call them
directly. Order inside a batch: extract → plan → chunk → embed (cache first) → write to the
store (upsert, then delete stale ids) → commit the ledger. The ledger is written only after the
store acknowledged, and every id is deterministic, so a re-run after a crash converges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ingest.chunking import HEADING_SEPARATOR, Chunk, chunk_markdown
from ingest.config import CrawlConfig
from ingest.dedup import NearDuplicateIndex, simhash
from ingest.embedders import Embedder, make_embedder
from ingest.extract import Document, Skip, extract
from ingest.ids import doc_prefix, model_key
from ingest.state import FetchedPage, StateDB, utcnow
from ingest.stores import VectorRecord, VectorStore, make_store
from ingest.summary import RunSummary
from ingest.sync import ChangeSet, plan

HTML_TYPES = ("text/html", "application/xhtml+xml")


def base_name(cfg: CrawlConfig) -> str:
    """Collection (Chroma) or namespace (Pinecone) of a crawl."""
    if cfg.store.kind == "chroma":
        return cfg.store.collection or cfg.name
    return cfg.store.namespace or cfg.name


def version_store(cfg: CrawlConfig, version: int = 1) -> VectorStore:
    """The store of one version of a crawl. Version 1 uses the plain names (a crawl that never changes
    model keeps them); version N>1 is the Chroma collection ``<collection>__vN``, or for Pinecone the
    index ``<index>-vN`` (an index has one dimension, so another model needs another index) with the
    same namespace."""
    if cfg.store.kind == "chroma":
        name = base_name(cfg) if version == 1 else f"{base_name(cfg)}__v{version}"
        return make_store(cfg.store, name)
    from ingest.stores.pinecone import index_name_for

    index = cfg.store.index or index_name_for(base_name(cfg))
    if version > 1:
        index = f"{index[:40].rstrip('-')}-v{version}"
    return make_store(cfg.store.model_copy(update={"index": index}), base_name(cfg))


def live_version_number(cfg: CrawlConfig, db: StateDB) -> int:
    """The live version of a crawl (1 before anything was ingested)."""
    live = db.live_version(cfg.name)
    return int(live["version"]) if live else 1


@dataclass
class RunContext:
    """Everything a batch step needs; built once per run."""

    cfg: CrawlConfig
    db: StateDB
    embedder: Embedder
    store: VectorStore
    summary: RunSummary
    fingerprints: dict[str, int] = field(default_factory=dict)  # SimHash of this run's documents
    dropped: dict[str, list[Chunk]] = field(default_factory=dict)  # per doc: kept out as repeated
    _near: NearDuplicateIndex | None = None
    _repeated: dict[str, set[str]] | None = None

    @property
    def near(self) -> NearDuplicateIndex:
        """Fingerprints of the pages kept so far (the ledger's live pages, then this run's)."""
        if self._near is None:
            self._near = NearDuplicateIndex(self.db.fingerprints(self.cfg.name))
        return self._near

    @property
    def repeated(self) -> dict[str, set[str]]:
        """text_hash → documents holding it (ledger, then this run), for drop_repeated_chunks."""
        if self._repeated is None:
            self._repeated = self.db.docs_by_text_hash(self.cfg.name)
        return self._repeated

    @property
    def model_key(self) -> str:
        """The embedder's model key."""
        return self.embedder.model_key

    @property
    def max_tokens(self) -> int:
        """Chunk budget: the configured size capped by what the model reads without truncating."""
        return min(self.cfg.chunk.max_tokens, self.embedder.max_input_tokens)

    @property
    def chunk_key(self) -> str:
        """Changes when chunks would be cut differently (sizes, or the tokenizer that counts)."""
        return model_key(
            {"max_tokens": self.max_tokens, "overlap": self.cfg.chunk.overlap_tokens, "model": self.model_key}
        )


def make_context(
    cfg: CrawlConfig, summary: RunSummary | None = None, db: StateDB | None = None, version: int | None = None
) -> RunContext:
    """Build embedder, store and state DB for a crawl, checking credentials before any work.

    The store is the live version's unless ``version`` picks another.
    """
    embedder = make_embedder(cfg.embedder)
    embedder.check()
    db = db or StateDB(cfg.state_url())
    store = version_store(cfg, version or live_version_number(cfg, db))
    store.check()
    summary = summary or RunSummary(crawl=cfg.name)
    summary.target = store.target
    summary.model_key = embedder.model_key
    return RunContext(cfg, db, embedder, store, summary)


@dataclass
class Extracted:
    """Stage 2's result for one batch of fetched pages."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    not_modified: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # every URL that answered (live or gone)
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


def extract_pages(pages: Sequence[FetchedPage]) -> Extracted:
    """Stage 2: HTML → Documents; 304s, 404/410s and skips sorted out."""
    out = Extracted()
    for page in pages:
        if page.status == 304:
            out.not_modified.append(page.url)
            out.seen.add(page.url)
            out.validators[page.url] = (page.etag, page.last_modified)
            continue
        if page.status in (404, 410):
            out.gone.append(page.url)
            out.seen.add(page.url)
            continue
        if page.skip_reason or page.body is None:
            out.skipped.append(Skip(page.url, page.skip_reason or f"HTTP {page.status}"))
            continue
        ctype = (page.content_type or "text/html").split(";")[0].strip().lower()
        if ctype not in HTML_TYPES:
            out.skipped.append(Skip(page.url, f"not html: {ctype}"))
            continue
        result = extract(page.body, page.final_url or page.url)
        out.seen.update({page.url, result.url})
        if isinstance(result, Skip):
            out.skipped.append(result)
            continue
        out.documents.append(result)
        out.validators[result.url] = (page.etag, page.last_modified)
    # One document per URL within a batch (two requests can land on one page).
    unique: dict[str, Document] = {}
    for doc in out.documents:
        unique.setdefault(doc.url, doc)
    out.documents = list(unique.values())
    return out


def plan_batch(ctx: RunContext, extracted: Extracted) -> ChangeSet:
    """Stage 3: compare with the ledger; near-duplicates of kept pages become aliases."""
    urls = [d.url for d in extracted.documents] + extracted.not_modified + extracted.gone
    ledger = ctx.db.pages_by_url(ctx.cfg.name, urls)
    changes = plan(extracted.documents, extracted.not_modified, extracted.gone, ledger, ctx.chunk_key)
    if ctx.cfg.dedup.near_duplicates:
        keep: dict[str, list[Document]] = {"new": [], "changed": []}
        for kind, docs in (("new", changes.new), ("changed", changes.changed)):
            for doc in docs:
                fp = simhash(doc.markdown)
                ctx.fingerprints[doc.url] = fp
                original = ctx.near.find(doc.url, fp)
                if original is None:
                    ctx.near.add(doc.url, fp)
                    keep[kind].append(doc)
                else:
                    changes.aliases.append((doc, original))
        changes.new, changes.changed = keep["new"], keep["changed"]
    return changes


def alias_documents(ctx: RunContext, aliases: Sequence[tuple[Document, str]]) -> None:
    """Record near-duplicates as aliases of the page they duplicate; drop vectors they had."""
    if not aliases:
        return
    removed: list[str] = []
    for doc, _ in aliases:
        removed.extend(ctx.store.list_ids(doc_prefix(doc.doc_id)))
    if removed:
        ctx.store.delete(removed)
        ctx.summary.vectors_deleted += len(removed)
    rows = [
        {
            "url": doc.url,
            "doc_id": doc.doc_id,
            "canonical_url": doc.canonical,
            "title": doc.title,
            "content_hash": doc.content_hash,
            "fingerprint": ctx.fingerprints.get(doc.url),
            "alias_of": original,
            "status": "alias",
        }
        for doc, original in aliases
    ]
    ctx.db.commit_pages(ctx.cfg.name, ctx.store.target, ctx.model_key, rows, [], [], removed)


def chunk_documents(ctx: RunContext, docs: Sequence[Document]) -> dict[str, list[Chunk]]:
    """Stage 4: chunks of each document, counted with the embedder's tokenizer.

    With ``dedup.drop_repeated_chunks: N``, chunks whose text is on more than N pages are dropped
    (pages processed before the count passed N are cleaned by :func:`sweep_repeated_chunks`).
    """
    out = {
        d.doc_id: chunk_markdown(
            d.markdown, d.doc_id, ctx.embedder.count_tokens, ctx.max_tokens, ctx.cfg.chunk.overlap_tokens
        )
        for d in docs
    }
    limit = ctx.cfg.dedup.drop_repeated_chunks
    if limit:
        for doc_chunks in out.values():
            for c in doc_chunks:
                ctx.repeated.setdefault(c.text_hash, set()).add(c.doc_id)
        for doc, doc_chunks in out.items():
            kept = [c for c in doc_chunks if len(ctx.repeated[c.text_hash]) <= limit]
            ctx.dropped[doc] = [c for c in doc_chunks if len(ctx.repeated[c.text_hash]) > limit]
            ctx.summary.chunks_dropped_repeated += len(ctx.dropped[doc])
            out[doc] = kept
    return out


def sweep_repeated_chunks(ctx: RunContext) -> int:
    """Delete chunks whose text is now on more than ``drop_repeated_chunks`` pages; returns how many."""
    limit = ctx.cfg.dedup.drop_repeated_chunks
    if not limit:
        return 0
    # Counts include occurrences dropped earlier: the ledger records them (chunks.dropped).
    over = {h for h, docs in ctx.db.docs_by_text_hash(ctx.cfg.name).items() if len(docs) > limit}
    ids = [c["chunk_id"] for c in ctx.db.all_chunks(ctx.cfg.name) if c["text_hash"] in over]
    if ids:
        ctx.store.delete(ids)
        ctx.db.drop_chunks(ctx.cfg.name, ctx.store.target, ids)
        ctx.summary.vectors_deleted += len(ids)
        ctx.summary.chunks_dropped_repeated += len(ids)
    return len(ids)


@dataclass
class Embedded:
    """Stage 5's result: a vector for every text hash of the batch."""

    vectors: dict[str, np.ndarray]
    texts_embedded: int
    tokens_embedded: int
    cache_hits: int


def embed_chunks(ctx: RunContext, chunks: Sequence[Chunk]) -> Embedded:
    """Stage 5: embed only texts whose (model_key, text_hash) is not cached; cache the new ones."""
    texts: dict[str, Chunk] = {}
    for c in chunks:
        texts.setdefault(c.text_hash, c)
    cached = ctx.db.cached_vectors(ctx.model_key, list(texts))
    missing = [c for h, c in texts.items() if h not in cached]
    fresh: dict[str, np.ndarray] = {}
    if missing:
        vectors = ctx.embedder.embed([c.text for c in missing])
        fresh = {c.text_hash: vectors[i] for i, c in enumerate(missing)}
        ctx.db.cache_vectors(ctx.model_key, fresh)
    return Embedded(
        vectors={**cached, **fresh},
        texts_embedded=len(missing),
        tokens_embedded=sum(c.tokens for c in missing),
        # Chunks not embedded because their text was known: cached, or repeated within this batch.
        cache_hits=len(chunks) - len(missing),
    )


@dataclass
class Written:
    """Stage 6's result: ids now in the store and ids removed from it."""

    written_ids: list[str]
    removed_ids: list[str]


def make_record(
    ctx: RunContext, doc: Document, chunk: Chunk, vector: np.ndarray, crawled_at: str
) -> VectorRecord:
    """The store record of one chunk: its id, vector, and flat metadata with the text."""
    meta: dict[str, str | int | float | bool] = {
        "url": doc.url,
        "doc_id": doc.doc_id,
        "title": doc.title or "",
        "heading": chunk.heading,
        "chunk_index": chunk.position,
        "content_hash": doc.content_hash,
        "model_key": ctx.model_key,
        "crawled_at": crawled_at,
        "text": chunk.text,
    }
    if doc.lang:
        meta["lang"] = doc.lang
    return VectorRecord(chunk.id, vector, meta)


def write_documents(
    ctx: RunContext,
    docs: Sequence[Document],
    chunks_by_doc: dict[str, list[Chunk]],
    embedded: Embedded,
    crawled_at: datetime,
) -> Written:
    """Stage 6: upsert vectors the store lacks, then delete each page's ids that are no longer chunks.

    What the store holds for a page is listed by its id prefix, so vectors written by a run that
    crashed before its ledger commit are found and reconciled too.
    """
    already = ctx.db.written_ids(ctx.store.target)
    stamp = crawled_at.isoformat()
    records: list[VectorRecord] = []
    removed: list[str] = []
    written_ids: list[str] = []
    for doc in docs:
        new_ids = {c.id for c in chunks_by_doc[doc.doc_id]}
        for chunk in chunks_by_doc[doc.doc_id]:
            written_ids.append(chunk.id)
            if already.get(chunk.id) != ctx.model_key:
                records.append(make_record(ctx, doc, chunk, embedded.vectors[chunk.text_hash], stamp))
        in_store = set(ctx.store.list_ids(doc_prefix(doc.doc_id)))
        removed.extend(sorted(in_store - new_ids))
    if records:
        ctx.store.upsert(records)
    if removed:
        ctx.store.delete(removed)
    ctx.summary.vectors_written += len(records)
    ctx.summary.vectors_deleted += len(removed)
    return Written(written_ids, removed)


def chunk_rows_of(doc: Document, chunks: Sequence[Chunk], dropped: bool = False) -> list[dict[str, object]]:
    """Ledger rows for a document's chunks (``dropped``: recorded, but kept out of the store)."""
    return [
        {
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "url": doc.url,
            "position": c.position,
            "text": c.text,
            "text_hash": c.text_hash,
            "tokens": c.tokens,
            "heading_path": c.heading,
            "dropped": dropped,
        }
        for c in chunks
    ]


def document_from_ledger(row: dict[str, object]) -> Document:
    """Rebuild a Document from its ledger row (re-embeds and re-chunks need no re-crawl)."""
    return Document(
        url=str(row["url"]),
        doc_id=str(row["doc_id"]),
        markdown=str(row["text"] or ""),
        title=row["title"] if isinstance(row["title"], str) else None,
        canonical=row["canonical_url"] if isinstance(row["canonical_url"], str) else None,
        content_hash=str(row["content_hash"] or ""),
    )


def chunk_from_ledger(row: dict[str, Any]) -> Chunk:
    """Rebuild a Chunk from its ledger row."""
    path = tuple(p for p in str(row["heading_path"]).split(HEADING_SEPARATOR) if p)
    return Chunk(
        row["chunk_id"], row["doc_id"], row["text"], path, row["position"], row["tokens"], row["text_hash"]
    )


def rewrite_chunks(ctx: RunContext, rows: Sequence[dict[str, Any]], *, bypass_cache: bool = False) -> int:
    """Write ledger chunks to the store again and record them as written under the current model.

    Vectors come from the embedding cache (embedding only what it lacks), or, with
    ``bypass_cache``, are all embedded afresh and replace the cached ones. Returns records written.
    """
    if not rows:
        return 0
    pages = {p["url"]: p for p in ctx.db.all_pages(ctx.cfg.name)}
    texts = {r["text_hash"]: r for r in rows}
    vectors = {} if bypass_cache else ctx.db.cached_vectors(ctx.model_key, list(texts))
    todo = [h for h in texts if h not in vectors]
    if todo:
        fresh = ctx.embedder.embed([texts[h]["text"] for h in todo])
        new = {h: fresh[i] for i, h in enumerate(todo)}
        ctx.db.cache_vectors(ctx.model_key, new, replace=bypass_cache)
        vectors.update(new)
        ctx.summary.texts_embedded += len(todo)
        ctx.summary.tokens_embedded += sum(int(texts[h]["tokens"]) for h in todo)
    stamp = utcnow().isoformat()
    records = [
        make_record(
            ctx, document_from_ledger(pages[r["url"]]), chunk_from_ledger(r), vectors[r["text_hash"]], stamp
        )
        for r in rows
    ]
    ctx.store.upsert(records)
    ctx.db.mark_written(ctx.store.target, ctx.model_key, [r["chunk_id"] for r in rows], [])
    ctx.summary.vectors_written += len(records)
    return len(records)


def commit_documents(
    ctx: RunContext,
    docs: Sequence[Document],
    chunks_by_doc: dict[str, list[Chunk]],
    written: Written,
    validators: dict[str, tuple[str | None, str | None]],
    changed_at: datetime,
) -> None:
    """Stage 7: the ledger learns the pages, their chunks and what the store now holds."""
    page_rows = []
    chunk_rows = []
    for doc in docs:
        etag, last_modified = validators.get(doc.url, (None, None))
        page_rows.append(
            {
                "url": doc.url,
                "doc_id": doc.doc_id,
                "canonical_url": doc.canonical,
                "title": doc.title,
                "etag": etag,
                "last_modified": last_modified,
                "content_hash": doc.content_hash,
                "chunk_key": ctx.chunk_key,
                "text": doc.markdown,
                "fingerprint": ctx.fingerprints.get(doc.url),
                "status": "live",
                "last_changed": changed_at,
            }
        )
        chunk_rows.extend(chunk_rows_of(doc, chunks_by_doc[doc.doc_id]))
        chunk_rows.extend(chunk_rows_of(doc, ctx.dropped.pop(doc.doc_id, []), dropped=True))
    ctx.db.commit_pages(
        ctx.cfg.name,
        ctx.store.target,
        ctx.model_key,
        page_rows,
        chunk_rows,
        written.written_ids,
        written.removed_ids,
    )


def delete_pages(ctx: RunContext, urls: Sequence[str], status: str) -> int:
    """Delete every vector of the given pages from the store, then mark them in the ledger."""
    if not urls:
        return 0
    rows = ctx.db.pages_by_url(ctx.cfg.name, urls)
    ids: list[str] = []
    for row in rows.values():
        ids.extend(ctx.store.list_ids(doc_prefix(row["doc_id"])))
    if ids:
        ctx.store.delete(ids)
    ctx.db.remove_pages(ctx.cfg.name, ctx.store.target, list(rows), status=status)
    ctx.summary.vectors_deleted += len(ids)
    return len(ids)
