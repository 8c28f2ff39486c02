"""RunSummary: what one run did, for the CLI table, ``--json``, the Prefect artifact and ``runs.summary``.

The page counters partition the URLs the crawl answered for, so they add up:
``pages_fetched = new + changed + unchanged + duplicate + gone + skipped + failed``
(``pages_not_modified`` is the part of ``unchanged`` that answered 304). Each stage reports its own
counters (``counts()`` of its result) and the run adds them with :meth:`RunSummary.add`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.model import RunStatus

# Failed URLs listed in the summary (all of them are in `webvec report`).
MAX_LISTED_FAILURES = 20
# A run's stages tally from several threads (extraction ahead, embedding, writing: ingest.ahead); one
# lock for every summary of the process, at module level so that a summary stays plain picklable data.
_TALLY = threading.RLock()


@dataclass
class RunSummary:
    """Counters of one run; ``seconds`` is wall time, ``stage_seconds`` the time inside each stage."""

    crawl: str
    run_id: str = ""
    kind: str = "ingest"
    status: str = RunStatus.RUNNING
    message: str = ""
    target: str = ""
    model_key: str = ""
    dry_run: bool = False
    pages_fetched: int = 0  # every URL the crawl answered for (pages, 304s, skips, failures)
    pages_not_modified: int = 0  # 304 answers to conditional requests (counted in pages_unchanged)
    pages_extracted: int = 0
    pages_new: int = 0
    pages_changed: int = 0
    pages_unchanged: int = 0
    pages_duplicate: int = 0  # near-duplicates stored as aliases of another page
    pages_gone: int = 0  # answered 404/410
    pages_skipped: int = 0  # nothing to index: robots, not html, too large, no main text, ...
    pages_failed: int = 0  # could not be fetched or read this time (network, 5xx, extraction)
    pages_rendered: int = 0  # source.render: downloaded and rendered by the browser (of pages_fetched)
    pages_render_needed: int = 0  # render: auto: of those, app shells whose plain HTML had no text
    skip_reasons: dict[str, int] = field(default_factory=dict)  # SkipKind → pages (skipped + failed)
    failed_urls: list[list[str]] = field(default_factory=list)  # [url, reason], the first few
    pages_deleted: int = 0  # pages whose vectors were deleted (gone, emptied, duplicate, stale)
    pages_stale_deleted: int = 0  # of those: unseen by complete crawls for sync.delete_after
    pages_held_back: int = 0  # deletions the coverage guard held back
    chunks: int = 0  # chunks of new and changed pages
    chunks_dropped_repeated: int = 0  # dedup.drop_repeated_chunks
    chunks_quarantined: int = 0  # rejected by the embedder; kept out of the store
    tokens: int = 0
    texts_embedded: int = 0
    tokens_embedded: int = 0
    cache_hits: int = 0
    vectors_written: int = 0
    vectors_deleted: int = 0
    estimated_cost_usd: float = 0.0
    crawl_complete: bool = False
    coverage: float = 1.0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    spider_log: str = ""

    def add(self, counts: Mapping[str, int]) -> None:
        """Add a stage's counters (names of int fields of this class)."""
        with _TALLY:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def add_time(self, stage: str, seconds: float) -> None:
        """Accumulate time spent in a stage."""
        with _TALLY:
            self.stage_seconds[stage] = round(self.stage_seconds.get(stage, 0.0) + seconds, 4)

    def add_skip(self, kind: str, url: str, reason: str, failed: bool) -> None:
        """Count one skipped (or failed) page by kind; failed pages are also listed."""
        with _TALLY:
            self.skip_reasons[kind] = self.skip_reasons.get(kind, 0) + 1
            if failed:
                self.pages_failed += 1
                if len(self.failed_urls) < MAX_LISTED_FAILURES:
                    self.failed_urls.append([url, reason])
            else:
                self.pages_skipped += 1

    def degrade(self, message: str) -> None:
        """Mark the run degraded (it did what was safe) with the reason; the first reason is kept
        as the message, later ones as warnings."""
        with _TALLY:
            self.status = RunStatus.DEGRADED
            if not self.message:
                self.message = message
            else:
                self.warnings.append(message)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows, for the CLI table and the Prefect artifact."""
        s = self
        unchanged = str(s.pages_unchanged)
        if s.pages_not_modified:
            unchanged += f" ({s.pages_not_modified} × 304)"
        deleted = f"{s.pages_deleted} ({s.pages_stale_deleted}) / {s.pages_held_back}"
        rows = [
            ("pages fetched", str(s.pages_fetched)),
            ("  new / changed / unchanged", f"{s.pages_new} / {s.pages_changed} / {unchanged}"),
            ("  near-duplicates (aliases)", str(s.pages_duplicate)),
            ("  gone (404/410)", str(s.pages_gone)),
            ("  skipped / failed", f"{s.pages_skipped} / {s.pages_failed}"),
            ("pages deleted (stale) / held back", deleted),
            ("chunks / tokens", f"{s.chunks} / {s.tokens}"),
            ("texts embedded / cache hits", f"{s.texts_embedded} / {s.cache_hits}"),
            ("vectors written / deleted", f"{s.vectors_written} / {s.vectors_deleted}"),
            ("estimated cost", f"${s.estimated_cost_usd:.4f}"),
            ("seconds", f"{s.seconds:.1f}"),
        ]
        if s.chunks_quarantined:
            rows.insert(7, ("chunks quarantined", str(s.chunks_quarantined)))
        if s.pages_rendered or s.pages_render_needed:
            rows.insert(5, ("  rendered (app shells)", f"{s.pages_rendered} ({s.pages_render_needed})"))
        rows += [(f"  {stage}", f"{secs:.2f}s") for stage, secs in s.stage_seconds.items()]
        if s.skip_reasons:
            rows.append(("skip reasons", ", ".join(f"{k} ×{v}" for k, v in sorted(s.skip_reasons.items()))))
        rows += [("failed", f"{url}: {reason}") for url, reason in s.failed_urls[:5]]
        if s.message:
            rows.append(("message", s.message))
        rows += [("warning", w) for w in s.warnings]
        rows.append(("target", s.target))
        return rows

    def title(self) -> str:
        """One line: kind, crawl and status (and how many pages failed, when some did)."""
        dry = " (dry run)" if self.dry_run else ""
        failed = f", {self.pages_failed} page(s) failed" if self.pages_failed else ""
        return f"webvec {self.kind}{dry}: {self.crawl} — {self.status}{failed}"

    def to_markdown(self) -> str:
        """Markdown table for the Prefect artifact."""
        lines = [f"# {self.title()}", "", "| | |", "|---|---|"]
        pipe = "\\|"
        lines += [f"| {k.strip()} | {v.replace('|', pipe)} |" for k, v in self.rows()]
        return "\n".join(lines)
