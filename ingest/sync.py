"""Planning: what changed since the ledger last saw a crawl, and what may be deleted (pure, no I/O).

Deletion policy (the coverage guard). Pages leave the index for four reasons: they answer 404/410
(``gone``), they no longer have main text or are no longer HTML (``skipped``), they became a
near-duplicate of another page (``alias``), or a complete crawl stopped reaching them for
``sync.delete_after`` (``stale``). A site in trouble produces all of these at once — a maintenance
template on every URL, a burst of 404s, a broken navigation — so the run's deletions are decided
together at its end: when the pages that would vanish (removed plus unseen) are more than
``1 - sync.min_coverage`` of the live pages, nothing is deleted and the run is ``degraded``; the next
healthy run decides again. A single page that really goes away still goes at once (like the
"fetch errors before removal" counters of Nutch and Heritrix, but per run, since webvec re-crawls
whole sites).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest.extract import Document
from ingest.ids import doc_id
from ingest.model import PageStatus
from ingest.state.rows import PageRow


@dataclass(frozen=True)
class Removal:
    """A live page whose vectors should go, and why."""

    url: str
    status: PageStatus  # GONE, SKIPPED, ALIAS or STALE: what the ledger will call it
    reason: str
    alias_of: str | None = None


@dataclass
class ChangeSet:
    """Pages of one batch sorted by what must happen to them."""

    new: list[Document] = field(default_factory=list)
    changed: list[Document] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # URLs: content and chunking as in the ledger
    aliases: list[tuple[Document, str]] = field(default_factory=list)  # near-duplicates → kept page
    removals: list[Removal] = field(default_factory=list)  # live pages to remove (decided at run end)

    @property
    def to_write(self) -> list[Document]:
        """Documents whose chunks must be (re)built."""
        return [*self.new, *self.changed]


def _is_live(row: PageRow | None) -> bool:
    return row is not None and row["status"] == PageStatus.LIVE


def plan(
    documents: Iterable[Document],
    not_modified: Iterable[str],
    gone: Iterable[str],
    ledger: Mapping[str, PageRow],
    chunk_key: str,
    emptied: Iterable[tuple[str, str]] = (),
) -> ChangeSet:
    """Compare a batch with the ledger rows of its URLs.

    A page is unchanged when its content hash and the chunking it was cut with (``chunk_key``)
    both match; a 304 answer counts as unchanged content (an alias that answers 304 stays one), and
    if the chunking changed since, the page is rebuilt from the markdown the ledger kept. Live pages
    that answered 404/410 (``gone``) or now have nothing to index (``emptied``: url, reason) become
    removals.
    """
    out = ChangeSet()
    for doc in documents:
        row = ledger.get(doc.url)
        if row is None or not _is_live(row):
            out.new.append(doc)
        elif row["content_hash"] == doc.content_hash and row["chunk_key"] == chunk_key:
            out.unchanged.append(doc.url)
        else:
            out.changed.append(doc)
    for url in not_modified:
        row = ledger.get(url)
        if row is None or row["status"] not in (PageStatus.LIVE, PageStatus.ALIAS):
            continue  # validators are only sent for live pages and aliases; nothing to keep
        if row["status"] == PageStatus.ALIAS or row["chunk_key"] == chunk_key or not row["text"]:
            out.unchanged.append(url)
        else:
            out.changed.append(
                Document(
                    url=url,
                    doc_id=doc_id(url),
                    markdown=row["text"],
                    title=row["title"],
                    content_hash=row["content_hash"] or "",
                    canonical=row["canonical_url"],
                    page_starts=tuple(row.get("page_starts") or ()),
                )
            )
    for url in gone:
        if _is_live(ledger.get(url)):
            out.removals.append(Removal(url, PageStatus.GONE, "answered 404/410"))
    for url, reason in emptied:
        if _is_live(ledger.get(url)):
            out.removals.append(Removal(url, PageStatus.SKIPPED, reason))
    return out


@dataclass
class DeletionPlan:
    """What a run deletes at its end, and what the coverage guard held back."""

    delete: list[Removal]
    held_back: list[Removal]
    unseen: list[str]  # live pages this crawl did not reach (and did not remove)
    coverage: float  # share of live pages that neither vanished nor went unseen
    degraded: bool
    reason: str = ""


def plan_deletions(
    live_pages: Mapping[str, datetime],
    seen: set[str],
    removals: Iterable[Removal],
    *,
    whole_site: bool,
    complete: bool,
    now: datetime,
    delete_after: timedelta,
    min_coverage: float,
) -> DeletionPlan:
    """Decide a run's deletions (see the module docstring).

    ``live_pages``: URL → last_seen of every live page; ``seen``: URLs the crawl reached;
    ``whole_site``: the crawl tried to reach every page (not a backfill of chosen URLs), so pages it did
    not reach count as vanished; ``complete``: it was not cut short (only then are unseen pages
    deleted, after ``delete_after``).
    """
    removing = {r.url: r for r in removals if r.url in live_pages}
    unseen = (
        sorted(url for url in live_pages if url not in seen and url not in removing) if whole_site else []
    )
    vanished = len(removing) + len(unseen)
    coverage = 1.0 if not live_pages else (len(live_pages) - vanished) / len(live_pages)
    if vanished and coverage < min_coverage:
        reason = (
            f"{vanished} of {len(live_pages)} live pages vanished at once ({len(removing)} gone, emptied "
            f"or duplicated, {len(unseen)} not reached): coverage {coverage:.0%} < sync.min_coverage "
            f"{min_coverage:.0%}, nothing deleted"
        )
        return DeletionPlan([], list(removing.values()), unseen, coverage, True, reason)
    delete = list(removing.values())
    reason = ""
    if unseen and not complete:
        reason = "crawl was cut short: nothing deleted for being unseen"
    elif unseen:
        delete += [
            Removal(url, PageStatus.STALE, f"not reached for {delete_after}")
            for url in unseen
            if now - live_pages[url] >= delete_after
        ]
    return DeletionPlan(delete, [], unseen, coverage, False, reason)
