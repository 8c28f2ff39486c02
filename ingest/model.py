"""The statuses and kinds webvec records, as enums in one place.

Everything that is stored or compared (ledger rows, run rows, skip records, summaries) uses these
values; nothing re-parses a free-text message to learn what happened. The enums are ``StrEnum``s, so
a value is stored and printed as its plain string (``PageStatus.LIVE == "live"``).
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """How a run ended (``running`` while it holds its lock)."""

    RUNNING = "running"
    OK = "ok"  # did its job
    DEGRADED = "degraded"  # did what was safe, held back the rest (deletions, quarantined chunks)
    FAILED = "failed"  # stopped by an error
    CRASHED = "crashed"  # its process died without finishing (found by a later run)


class PageStatus(StrEnum):
    """What the ledger holds for a page."""

    LIVE = "live"  # its chunks are in the live store
    ALIAS = "alias"  # a near-duplicate of another page; no vectors of its own
    GONE = "gone"  # answered 404/410; vectors deleted
    SKIPPED = "skipped"  # now has nothing to index (no main text, not html); vectors deleted
    STALE = "stale"  # a complete crawl stopped reaching it for sync.delete_after; vectors deleted


class VersionStatus(StrEnum):
    """Life of a store version (one collection/index per embedding model)."""

    BUILDING = "building"
    LIVE = "live"
    PREVIOUS = "previous"
    FAILED = "failed"
    PRUNED = "pruned"


class SkipKind(StrEnum):
    """Why a fetched URL yields no document. The reason text beside it gives the details."""

    ROBOTS = "robots"  # disallowed by robots.txt (or robots.txt unreachable: RFC 9309 full disallow)
    CRAWL_DELAY = "crawl_delay"  # the host asks for a Crawl-delay above source.max_crawl_delay
    PRIVATE = "private"  # a private / loopback / metadata address, refused
    OFFSITE = "offsite"  # redirected off the allowed domains
    DUPLICATE = "duplicate"  # the same final URL was already stored in this run
    FILTERED = "filtered"  # does not pass source.include / source.exclude
    NOT_HTML = "not_html"  # a content type webvec does not index
    TOO_LARGE = "too_large"  # over source.max_page_bytes (documents: max_document_bytes / _pages)
    ENCRYPTED = "encrypted"  # a PDF that needs a password
    HTTP_ERROR = "http_error"  # a 4xx other than 404/410 (not retried)
    FAILED = "failed"  # 5xx, 429, timeouts, connection errors after retries
    IGNORED = "ignored"  # dropped by a Scrapy component for another reason
    NO_MAIN_TEXT = "no_main_text"  # extraction found no prose
    EXTRACT_FAILED = "extract_failed"  # extraction raised, ran out of time or memory
    UNPARSEABLE = "unparseable"  # not HTML that lxml can read
    # The parser stopped reading the page at one of its limits (nesting deeper than
    # ingest.extract.MAX_DEPTH), so its text is incomplete: keep the previous version, warn.
    TRUNCATED = "truncated"

    @property
    def empties_page(self) -> bool:
        """True when the page itself now has nothing to index (as opposed to a passing failure)."""
        return self in (SkipKind.NO_MAIN_TEXT, SkipKind.NOT_HTML, SkipKind.ENCRYPTED)


class Outcome(StrEnum):
    """What one run did with one URL (``webvec report``)."""

    NEW = "new"  # indexed for the first time
    CHANGED = "changed"  # re-indexed: its text or its chunking changed
    UNCHANGED = "unchanged"  # same content as the ledger (hash equal)
    NOT_MODIFIED = "not_modified"  # 304 to a conditional request
    ALIAS = "alias"  # a near-duplicate of another page (detail: that page)
    GONE = "gone"  # answered 404/410
    SKIPPED = "skipped"  # yields nothing to index (kind: SkipKind, detail: reason)
    FAILED = "failed"  # could not be fetched or read this time (kind: SkipKind, detail: reason)
    QUARANTINED = "quarantined"  # some chunks were rejected by the embedder (detail: reason)
    DELETED = "deleted"  # its vectors were deleted (kind: the page's new PageStatus)
    KEPT = "kept"  # a deletion held back by the coverage guard, or an unreadable fetch of a live page
