"""Progress that moves: totals grow as pages are planned, the embedding bar advances per embedding
batch (not once per batch of pages), and every bar ends at its total. Fake embedder, memory store."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ingest.bookkeeping import Hooks
from ingest.run import run_ingest
from spiders.process import SpiderCrawler
from tests.integration.sites import make_site


def test_bars_have_totals_and_the_embedding_bar_moves_per_embedding_batch(  # type: ignore[no-untyped-def]
    tmp_path: Path, serve_dir, write_crawl
) -> None:
    root = tmp_path / "site"
    make_site(root)
    server = serve_dir(root)
    crawl = write_crawl(
        server.url,
        name="progress",
        source={"sitemaps": []},
        chunk={"max_tokens": 32, "overlap_tokens": 4},  # many small chunks per page
        embedder={"kind": "fake", "dimension": 64, "batch_size": 8},
        store={"kind": "memory"},
    )
    events: list[tuple[str, int, int]] = []
    summary = run_ingest(crawl, SpiderCrawler(), hooks=Hooks(lambda *e: events.append(e)))
    advanced: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    for event, advance, total in events:
        advanced[event] += advance
        totals[event] += total
    assert summary.status == "ok" and summary.texts_embedded > 64
    assert advanced["fetched"] == summary.pages_fetched
    assert totals["embedded"] == advanced["embedded"] == summary.chunks  # the bar ends full
    assert totals["written"] == advanced["written"] == summary.pages_new
    embed_steps = [a for e, a, _ in events if e == "embedded" and a]
    assert len(embed_steps) >= summary.texts_embedded // 8  # one step per embedding batch of 8
    assert max(embed_steps) <= max(8, summary.cache_hits)
