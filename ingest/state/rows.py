"""Typed rows of the state DB: what each query hands back (TypedDicts keep ``row["url"]`` access)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired, TypedDict

from ingest.model import SkipKind
from ingest.state.schema import utcnow


class RunRow(TypedDict):
    """One run of a crawl."""

    run_id: str
    crawl: str
    kind: str
    status: str  # RunStatus
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None


class LockRow(TypedDict):
    """The run holding a crawl's lock."""

    crawl: str
    run_id: str
    owner: str  # host:pid
    owner_started: str | None
    acquired_at: datetime
    heartbeat_at: datetime


class PageRow(TypedDict):
    """A page the ledger knows."""

    crawl: str
    url: str
    doc_id: str
    canonical_url: str | None
    title: str | None
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    chunk_key: str | None
    text: str | None
    fingerprint: int | None
    alias_of: str | None
    status: str  # PageStatus
    skip_reason: str | None
    page_starts: list[int] | None  # offsets of a PDF's pages in text (ingest.extract.Document)
    first_seen: datetime
    last_seen: datetime
    last_changed: datetime | None


class NewPage(TypedDict):
    """A page as a batch commits it (the ledger adds crawl, first/last seen)."""

    url: str
    doc_id: str
    canonical_url: str | None
    title: str | None
    etag: str | None
    last_modified: str | None
    content_hash: str
    chunk_key: str | None
    text: str | None
    fingerprint: int | None
    alias_of: str | None
    status: str  # PageStatus
    last_changed: datetime
    page_starts: NotRequired[list[int] | None]


class NewChunk(TypedDict):
    """A chunk as a batch commits it."""

    chunk_id: str
    doc_id: str
    url: str
    position: int
    text: str
    text_hash: str
    tokens: int
    heading_path: str
    dropped: bool


class ChunkRow(NewChunk):
    """A chunk the ledger holds."""

    crawl: str
    created_at: datetime


class QuarantineRow(TypedDict):
    """A chunk the embedder rejected."""

    crawl: str
    chunk_id: str
    doc_id: str
    url: str
    text_hash: str
    reason: str
    run_id: str
    created_at: datetime


class VersionRow(TypedDict):
    """One store version of a crawl."""

    crawl: str
    version: int
    name: str
    target: str
    model_key: str
    chunk_key: str
    status: str  # VersionStatus
    pinned: bool
    vectors: int | None
    created_at: datetime
    activated_at: datetime | None
    store: str | None  # the store settings, JSON (None in versions recorded before they were kept)


class OutcomeRow(TypedDict):
    """What happened to one URL in a run."""

    url: str
    outcome: str  # Outcome
    kind: str | None
    detail: str | None


@dataclass
class FetchedPage:
    """One response the spider kept (body set) or skipped (skip_reason set)."""

    url: str
    final_url: str
    status: int
    fetched_at: datetime = field(default_factory=utcnow)
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    depth: int = 0
    body: bytes | None = None
    skip_reason: str | None = None
    skip_kind: SkipKind | None = None
    # Rendered in a headless browser (source.render): "always", or "auto" when its plain HTML was an app
    # shell (the page needed rendering); None for a plain download.
    rendered: str | None = None
    seq: int = 0
    run_id: str = ""
