"""Planning: what changed since the ledger last saw a crawl (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ingest.extract import Document
from ingest.ids import doc_id


@dataclass
class ChangeSet:
    """Pages of one batch sorted by what must happen to them."""

    new: list[Document] = field(default_factory=list)
    changed: list[Document] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # URLs: content and chunking as in the ledger
    gone: list[str] = field(default_factory=list)  # URLs now 404/410 that the ledger holds live
    aliases: list[tuple[Document, str]] = field(default_factory=list)  # near-duplicates → kept page

    @property
    def to_write(self) -> list[Document]:
        """Documents whose chunks must be (re)built."""
        return [*self.new, *self.changed]


def plan(
    documents: Iterable[Document],
    not_modified: Iterable[str],
    gone: Iterable[str],
    ledger: Mapping[str, Mapping[str, Any]],
    chunk_key: str,
) -> ChangeSet:
    """Compare a batch with the ledger rows of its URLs.

    A page is unchanged when its content hash and the chunking it was cut with (``chunk_key``)
    both match; a 304 answer counts as unchanged content, and if the chunking changed since, the
    page is rebuilt from the markdown the ledger kept.
    """
    out = ChangeSet()
    for doc in documents:
        row = ledger.get(doc.url)
        if row is None or row["status"] != "live":
            out.new.append(doc)
        elif row["content_hash"] == doc.content_hash and row["chunk_key"] == chunk_key:
            out.unchanged.append(doc.url)
        else:
            out.changed.append(doc)
    for url in not_modified:
        row = ledger.get(url)
        if row is None or row["status"] != "live":
            continue  # validators are only sent for live pages; nothing to keep
        if row["chunk_key"] == chunk_key or not row["text"]:
            out.unchanged.append(url)
        else:
            out.changed.append(
                Document(
                    url=url,
                    doc_id=doc_id(url),
                    markdown=row["text"],
                    title=row["title"],
                    content_hash=row["content_hash"],
                    canonical=row["canonical_url"],
                )
            )
    for url in gone:
        row = ledger.get(url)
        if row is not None and row["status"] == "live":
            out.gone.append(url)
    return out


@dataclass
class StalePlan:
    """Live pages a crawl did not reach, and whether it is safe to delete them."""

    unseen: list[str]
    to_delete: list[str]
    coverage: float
    degraded: bool
    reason: str = ""


def plan_stale(
    live_pages: Mapping[str, datetime],
    seen: set[str],
    *,
    complete: bool,
    now: datetime,
    delete_after: timedelta,
    min_coverage: float,
) -> StalePlan:
    """Which live pages (URL → last_seen) a crawl did not reach may be deleted now.

    Only a complete crawl (not cut short by max_pages or errors) that reached at least
    ``min_coverage`` of the known pages may delete, and only pages unseen for ``delete_after``.
    """
    unseen = sorted(url for url in live_pages if url not in seen)
    coverage = 1.0 if not live_pages else (len(live_pages) - len(unseen)) / len(live_pages)
    if not unseen:
        return StalePlan([], [], coverage, False)
    if coverage < min_coverage:
        return StalePlan(
            unseen, [], coverage, True, f"crawl reached {coverage:.0%} of known pages (< min_coverage)"
        )
    if not complete:
        return StalePlan(unseen, [], coverage, False, "crawl was cut short: nothing deleted for being unseen")
    expired = [url for url in unseen if now - live_pages[url] >= delete_after]
    return StalePlan(unseen, expired, coverage, False)
