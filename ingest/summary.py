"""RunSummary: what one run did, for the CLI table, ``--json`` and the Prefect artifact."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """Counters of one run; ``seconds`` is wall time, ``stage_seconds`` the time inside each stage."""

    crawl: str
    run_id: str = ""
    kind: str = "ingest"
    status: str = "running"  # ok | degraded | failed
    message: str = ""
    target: str = ""
    model_key: str = ""
    pages_fetched: int = 0  # responses with an HTML body
    pages_not_modified: int = 0  # 304 answers to conditional requests
    pages_extracted: int = 0
    pages_skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    pages_new: int = 0
    pages_changed: int = 0
    pages_unchanged: int = 0
    pages_gone: int = 0
    pages_duplicate: int = 0  # near-duplicates stored as aliases of another page
    pages_stale_deleted: int = 0
    chunks: int = 0  # chunks of new and changed pages
    chunks_dropped_repeated: int = 0  # dedup.drop_repeated_chunks
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

    def add_time(self, stage: str, seconds: float) -> None:
        """Accumulate time spent in a stage."""
        self.stage_seconds[stage] = round(self.stage_seconds.get(stage, 0.0) + seconds, 4)

    def add_skips(self, reasons: list[str]) -> None:
        """Count skipped pages by reason (the reason's first words, so URLs don't split the tally)."""
        self.pages_skipped += len(reasons)
        tally = Counter(self.skip_reasons)
        tally.update(r.split(":")[0] for r in reasons)
        self.skip_reasons = dict(tally)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Markdown table for the Prefect artifact."""
        rows = [
            ("status", self.status + (f" — {self.message}" if self.message else "")),
            ("target", f"`{self.target}`"),
            ("model key", f"`{self.model_key}`"),
            ("pages fetched / not modified", f"{self.pages_fetched} / {self.pages_not_modified}"),
            (
                "pages new / changed / unchanged",
                f"{self.pages_new} / {self.pages_changed} / {self.pages_unchanged}",
            ),
            ("pages gone / stale deleted", f"{self.pages_gone} / {self.pages_stale_deleted}"),
            ("pages near-duplicate (aliases)", str(self.pages_duplicate)),
            ("pages skipped", f"{self.pages_skipped} {self.skip_reasons or ''}"),
            ("chunks / tokens", f"{self.chunks} / {self.tokens}"),
            ("texts embedded (cache hits)", f"{self.texts_embedded} ({self.cache_hits})"),
            ("vectors written / deleted", f"{self.vectors_written} / {self.vectors_deleted}"),
            ("estimated cost", f"${self.estimated_cost_usd:.4f}"),
            ("seconds", f"{self.seconds:.1f}"),
        ]
        rows += [(f"  {stage}", f"{secs:.2f}s") for stage, secs in self.stage_seconds.items()]
        lines = [f"# webvec {self.kind}: {self.crawl}", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(lines)
