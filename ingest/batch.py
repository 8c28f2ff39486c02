"""The decisions of one batch of fetched pages (DESIGN.md stages 2–7), as plain functions.

extract → plan → chunk → embed (cache first) → write (upsert, then delete ids a page no longer has)
→ commit the ledger. Each stage takes what it needs as arguments and returns a typed result that
also tallies its own summary counters (``tally``); nothing is stashed between stages. Run-wide
knowledge that later batches need — the near-duplicate index and, with ``drop_repeated_chunks``, how
many pages hold each text — is passed in explicitly (:class:`ingest.run.RunState`).

Every stage also runs with ``write=False`` (the dry run, ``webvec plan``): the same decisions, with the
embedder, the store's writes and the ledger switched off, so a plan cannot drift from a run.

The store is written before the ledger commits and every id is deterministic, so a run that crashes
between the two converges on the next run: the write stage lists each page's ids by prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ingest.chunking import Chunk, chunk_markdown
from ingest.context import embedding_texts
from ingest.dedup import NearDuplicateIndex, simhash

# Stage 5 lives in its own module; re-exported here, where the stages are looked up.
from ingest.embed_stage import Embedded as Embedded
from ingest.embed_stage import embed_chunks as embed_chunks
from ingest.extract import Document, Skip
from ingest.formats import kind_of, mime_of
from ingest.ids import doc_prefix
from ingest.model import Outcome, PageStatus, SkipKind
from ingest.records import Validators, chunk_rows_of, make_record, page_row
from ingest.state import FetchedPage, NewChunk, NewPage, OutcomeRow, PageRow, StateDB
from ingest.stores import VectorRecord, VectorStore
from ingest.summary import RunSummary
from ingest.sync import ChangeSet, Removal, plan


@dataclass(frozen=True)
class BatchKeys:
    """What decides how a crawl's pages are cut and embedded; one per run, serialisable."""

    crawl: str
    model_key: str
    chunk_key: str
    max_tokens: int
    overlap_tokens: int
    near_duplicates: bool
    drop_repeated_chunks: int | None
    context_template: str | None = None  # what the embedder reads for a chunk (ingest.context)
    context_tokens: int = 0  # tokens of the embedder's input left for that context
    # With embedder.reduce: the full model's key, its full vectors' cache key (ingest.embedders.reduce).
    source_model_key: str | None = None


class Extractor(Protocol):
    """Extraction of a batch (:class:`ingest.extract_pool.Extractor`: worker processes with limits)."""

    def extract_many(
        self, items: Sequence[tuple[str, bytes]], content_types: Sequence[str | None] | None = None
    ) -> list[Document | Skip]:
        """Documents (or skips) for ``(url, body)`` pairs, in order; ``content_types`` choose the
        reader (HTML, PDF, DOCX, dataset page)."""
        ...

    def close(self) -> None:
        """Stop worker processes (a later batch starts them again)."""
        ...


def _outcome(url: str, outcome: Outcome, kind: str | None = None, detail: str | None = None) -> OutcomeRow:
    return {"url": url, "outcome": str(outcome), "kind": kind, "detail": detail}


# -- stage 2: extract --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkipRecord:
    """A fetched URL that yields no document this time."""

    url: str
    kind: SkipKind
    reason: str
    depth: int = 0

    @property
    def failed(self) -> bool:
        """A passing failure (network, server, extraction) rather than a page with nothing to index;
        a live page that fails keeps its previous version."""
        return self.kind in (SkipKind.FAILED, SkipKind.EXTRACT_FAILED, SkipKind.TRUNCATED)


@dataclass
class Extracted:
    """Stage 2's result: the batch's pages sorted by what their answer was."""

    fetched: int = 0
    documents: list[Document] = field(default_factory=list)
    not_modified: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    skips: list[SkipRecord] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # URLs that answered (live, gone or emptied)
    validators: dict[str, Validators] = field(default_factory=dict)

    @property
    def emptied(self) -> list[tuple[str, str]]:
        """(url, reason) of pages that now have nothing to index (their vectors should go)."""
        return [(s.url, s.reason) for s in self.skips if s.kind.empties_page]

    def tally(self, summary: RunSummary) -> list[OutcomeRow]:
        """Count into the summary; returns the outcome rows of the skipped and failed pages."""
        summary.add(
            {
                "pages_fetched": self.fetched,
                "pages_not_modified": len(self.not_modified),
                "pages_extracted": len(self.documents),
                "pages_gone": len(self.gone),
            }
        )
        rows = [_outcome(url, Outcome.GONE) for url in self.gone]
        for s in self.skips:
            summary.add_skip(s.kind, s.url, s.reason, s.failed)
            rows.append(_outcome(s.url, Outcome.FAILED if s.failed else Outcome.SKIPPED, s.kind, s.reason))
            if s.kind == SkipKind.TRUNCATED:
                summary.warnings.append(f"{s.url}: {s.reason}; its previous version is kept")
        return rows


def extract_pages(pages: Sequence[FetchedPage], extractor: Extractor) -> Extracted:
    """Stage 2: HTML, PDF, DOCX and dataset pages → Documents; 304s, 404/410s and the spider's skips
    sorted out. A page without a Content-Type is read as HTML."""
    out = Extracted(fetched=len(pages))
    todo: list[FetchedPage] = []
    for page in pages:
        if page.status == 304:
            out.not_modified.append(page.url)
            out.seen.add(page.url)
            out.validators[page.url] = (page.etag, page.last_modified)
        elif page.status in (404, 410):
            out.gone.append(page.url)
            out.seen.add(page.url)
        elif page.skip_reason or page.body is None:
            kind = page.skip_kind or SkipKind.IGNORED
            reason = page.skip_reason or f"HTTP {page.status}"
            out.skips.append(SkipRecord(page.url, kind, reason, page.depth))
            if kind.empties_page:
                out.seen.add(page.url)
        elif page.content_type and kind_of(page.content_type, page.body) is None:
            ctype = mime_of(page.content_type)
            out.skips.append(SkipRecord(page.url, SkipKind.NOT_HTML, f"not html: {ctype}", page.depth))
            out.seen.add(page.url)
        else:
            todo.append(page)
    results = extractor.extract_many(
        [(p.final_url or p.url, p.body or b"") for p in todo], [p.content_type for p in todo]
    )
    for page, result in zip(todo, results, strict=True):
        out.seen.update({page.url, result.url})
        if isinstance(result, Skip):
            out.skips.append(SkipRecord(page.url, result.kind, result.reason, page.depth))
            continue
        out.documents.append(result)
        out.validators[result.url] = (page.etag, page.last_modified)
    # One document per URL within a batch (two requests can land on one page).
    out.documents = list({d.url: d for d in reversed(out.documents)}.values())[::-1]
    return out


# -- stage 3: plan -----------------------------------------------------------------------------------
@dataclass
class Planned:
    """Stage 3's result: the batch's changes against the ledger."""

    changes: ChangeSet
    new_aliases: list[tuple[Document, str]]  # near-duplicates that were not live: recorded, no vectors
    fingerprints: dict[str, int]  # SimHash of each document to write
    validators: dict[str, Validators]

    def tally(self, summary: RunSummary) -> list[OutcomeRow]:
        """Count into the summary; returns the outcome rows of the planned pages."""
        c = self.changes
        summary.add(
            {
                "pages_new": len(c.new),
                "pages_changed": len(c.changed),
                "pages_unchanged": len(c.unchanged),
                "pages_duplicate": len(c.aliases),
            }
        )
        rows = [_outcome(d.url, Outcome.NEW) for d in c.new]
        rows += [_outcome(d.url, Outcome.CHANGED) for d in c.changed]
        rows += [_outcome(u, Outcome.UNCHANGED) for u in c.unchanged]
        rows += [_outcome(d.url, Outcome.ALIAS, None, original) for d, original in c.aliases]
        return rows


def plan_batch(
    extracted: Extracted, ledger: Mapping[str, PageRow], keys: BatchKeys, near: NearDuplicateIndex | None
) -> Planned:
    """Stage 3: compare with the ledger rows of the batch's URLs; near-duplicates of pages kept so far
    (``near``, which this stage extends with the pages it keeps) become aliases."""
    changes = plan(
        extracted.documents,
        extracted.not_modified,
        extracted.gone,
        ledger,
        keys.chunk_key,
        extracted.emptied,
    )
    fingerprints: dict[str, int] = {}
    new_aliases: list[tuple[Document, str]] = []
    if near is not None:
        keep: dict[str, list[Document]] = {"new": [], "changed": []}
        for kind, docs in (("new", changes.new), ("changed", changes.changed)):
            for doc in docs:
                fp = simhash(doc.markdown)
                original = near.find(doc.url, fp)
                if original is None:
                    near.add(doc.url, fp)
                    fingerprints[doc.url] = fp
                    keep[kind].append(doc)
                    continue
                changes.aliases.append((doc, original))
                if kind == "changed":  # a live page turned duplicate: its vectors go at the run's end
                    reason = f"near-duplicate of {original}"
                    changes.removals.append(Removal(doc.url, PageStatus.ALIAS, reason, alias_of=original))
                else:
                    new_aliases.append((doc, original))
        changes.new, changes.changed = keep["new"], keep["changed"]
    else:
        fingerprints = {d.url: simhash(d.markdown) for d in changes.to_write}
    return Planned(changes, new_aliases, fingerprints, extracted.validators)


# -- stage 4: chunk ----------------------------------------------------------------------------------
@dataclass
class Chunked:
    """Stage 4's result: each document's chunks, and those kept out as repeated text."""

    by_doc: dict[str, list[Chunk]]
    dropped: dict[str, list[Chunk]]
    texts: dict[str, str] = field(default_factory=dict)  # chunk id → what the embedder reads

    @property
    def flat(self) -> list[Chunk]:
        """Every kept chunk, in document order."""
        return [c for chunks in self.by_doc.values() for c in chunks]

    def tally(self, summary: RunSummary) -> None:
        """Count into the summary."""
        flat = self.flat
        summary.add(
            {
                "chunks": len(flat),
                "tokens": sum(c.tokens for c in flat),
                "chunks_dropped_repeated": sum(len(d) for d in self.dropped.values()),
            }
        )


def chunk_documents(
    docs: Sequence[Document],
    count_tokens: Callable[[str], int],
    keys: BatchKeys,
    repeated: dict[str, set[str]] | None = None,
) -> Chunked:
    """Stage 4: chunks of each document, counted with the embedder's tokenizer.

    With ``dedup.drop_repeated_chunks: N``, ``repeated`` maps each text hash to the documents holding
    it (the ledger's, then this run's: this stage adds the batch's); chunks whose text is on more than
    N pages are dropped. Pages processed before a count passed N are cleaned at the run's end.
    """
    by_doc = {
        d.doc_id: chunk_markdown(d.markdown, d.doc_id, count_tokens, keys.max_tokens, keys.overlap_tokens)
        for d in docs
    }
    dropped: dict[str, list[Chunk]] = {}
    limit = keys.drop_repeated_chunks
    if limit and repeated is not None:
        for chunks in by_doc.values():
            for c in chunks:
                repeated.setdefault(c.text_hash, set()).add(c.doc_id)
        for doc, chunks in by_doc.items():
            dropped[doc] = [c for c in chunks if len(repeated[c.text_hash]) > limit]
            by_doc[doc] = [c for c in chunks if len(repeated[c.text_hash]) <= limit]
    titles = {d.doc_id: d.title for d in docs}
    texts = embedding_texts(
        ((c.id, titles[c.doc_id], c.heading_path, c.text) for cs in by_doc.values() for c in cs),
        keys.context_template,
        count_tokens,
        keys.context_tokens,
    )
    return Chunked(by_doc, dropped, texts)


# -- stage 6: write ----------------------------------------------------------------------------------
@dataclass
class Written:
    """Stage 6's result: ids now in the store, ids removed from it, chunks kept out."""

    written_ids: list[str]
    removed_ids: list[str]
    upserted: int
    quarantined: list[tuple[str, Chunk, str]]  # (url, chunk, why the embedder refused it)

    def tally(self, summary: RunSummary) -> list[OutcomeRow]:
        """Count into the summary; returns outcome rows of pages with quarantined chunks."""
        summary.add(
            {
                "vectors_written": self.upserted,
                "vectors_deleted": len(self.removed_ids),
                "chunks_quarantined": len(self.quarantined),
            }
        )
        first = {url: reason for url, _, reason in reversed(self.quarantined)}
        return [_outcome(url, Outcome.QUARANTINED, None, reason) for url, reason in first.items()]


def rewritable(
    db: StateDB,
    keys: BatchKeys,
    target: str,
    docs: Sequence[Document],
    chunked: Chunked,
    ledger: Mapping[str, PageRow],
) -> dict[str, str]:
    """Stage 6's ``already``: chunk id → model_key of the batch's chunks that ``target`` holds and
    need not be written again. With a context template, a chunk whose text stayed but whose page
    title or heading path changed has another vector (its id is of the text alone): it is left out,
    so it is written again."""
    already = db.written_models(target, [c.id for c in chunked.flat])
    if not keys.context_template or not already:
        return already
    headings = db.heading_paths(keys.crawl, list(already))
    for doc in docs:
        row = ledger.get(doc.url)
        for c in chunked.by_doc[doc.doc_id]:
            moved = row is None or row["title"] != doc.title or headings.get(c.id) != c.heading
            if c.id in already and moved:
                del already[c.id]
    return already


def write_documents(
    docs: Sequence[Document],
    chunked: Chunked,
    embedded: Embedded,
    store: VectorStore,
    already: Mapping[str, str],
    model_key: str,
    crawled_at: datetime,
    *,
    aliases: Sequence[Document] = (),
    store_exists: bool = True,
    write: bool = True,
) -> Written:
    """Stage 6: upsert the vectors the store lacks (``already``: id → model_key the ledger says the
    store holds), then delete each page's ids that are no longer its chunks (and every id of pages
    that became ``aliases``). What the store holds for a page is listed by its id prefix, so vectors
    of a run that crashed before its commit are reconciled too."""
    stamp = crawled_at.isoformat()
    records: list[VectorRecord] = []
    removed: list[str] = []
    written_ids: list[str] = []
    quarantined: list[tuple[str, Chunk, str]] = []
    upserts = 0
    for doc in docs:
        keep: set[str] = set()
        for chunk in chunked.by_doc[doc.doc_id]:
            if chunk.id in embedded.rejected:
                quarantined.append((doc.url, chunk, embedded.rejected[chunk.id]))
                continue
            keep.add(chunk.id)
            written_ids.append(chunk.id)
            if already.get(chunk.id) != model_key:
                upserts += 1
                if write:
                    vector = embedded.vectors[chunk.id]
                    records.append(make_record(doc, chunk, vector, model_key, stamp))
        if store_exists:
            removed.extend(sorted(set(store.list_ids(doc_prefix(doc.doc_id))) - keep))
    if store_exists:
        for doc in aliases:
            removed.extend(store.list_ids(doc_prefix(doc.doc_id)))
    if write and records:
        store.upsert(records)
    if write and removed:
        store.delete(removed)
    return Written(written_ids, removed, upserts, quarantined)


# -- stage 7: commit ---------------------------------------------------------------------------------
def commit_batch(
    db: StateDB,
    keys: BatchKeys,
    target: str,
    run_id: str,
    planned: Planned,
    chunked: Chunked,
    written: Written,
    changed_at: datetime,
) -> None:
    """Stage 7: the ledger learns the pages, their chunks, quarantined chunks and what the store holds;
    unchanged pages get their last_seen (and validators) refreshed."""
    docs = planned.changes.to_write
    quarantined_by_doc: dict[str, list[tuple[Chunk, str]]] = {}
    for _url, chunk, reason in written.quarantined:
        quarantined_by_doc.setdefault(chunk.doc_id, []).append((chunk, reason))
    page_rows: list[NewPage] = []
    chunk_rows: list[NewChunk] = []
    quarantine_rows: list[tuple[NewChunk, str]] = []
    for doc in docs:
        page_rows.append(
            page_row(
                doc,
                PageStatus.LIVE,
                changed_at,
                validators=planned.validators.get(doc.url, (None, None)),
                chunk_key=keys.chunk_key,
                fingerprint=planned.fingerprints.get(doc.url),
            )
        )
        bad = {c.id for c, _ in quarantined_by_doc.get(doc.doc_id, [])}
        chunk_rows += chunk_rows_of(doc, [c for c in chunked.by_doc[doc.doc_id] if c.id not in bad])
        chunk_rows += chunk_rows_of(doc, chunked.dropped.get(doc.doc_id, []), dropped=True)
        quarantine_rows += [
            (chunk_rows_of(doc, [c])[0], reason) for c, reason in quarantined_by_doc.get(doc.doc_id, [])
        ]
    for doc, original in planned.new_aliases:
        validators = planned.validators.get(doc.url, (None, None))
        page_rows.append(
            page_row(doc, PageStatus.ALIAS, changed_at, validators=validators, alias_of=original)
        )
    db.commit_pages(
        keys.crawl,
        target,
        keys.model_key,
        page_rows,
        chunk_rows,
        written.written_ids,
        written.removed_ids,
        quarantine_rows,
        run_id,
        [d.url for d in planned.changes.changed],
    )
    db.touch_pages(keys.crawl, planned.changes.unchanged, planned.validators)
