"""Stage overlap in one process (issue 10, item 1): the next batch is extracted while the current one
is embedded and written. Ordering is checked, not speed (speed is in `make bench`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import yaml

from ingest.bookkeeping import Hooks
from ingest.run import BATCH_PAGES, CrawlMode, CrawlStats, run_ingest
from ingest.state import FetchedPage, StateDB
from tests.integration.sites import page_html, prose

P = ParamSpec("P")
T = TypeVar("T")
PAGES = 2 * BATCH_PAGES + 5  # three batches


class Finished:
    """A crawl that already wrote every page into the page store."""

    log_path = "(no log: pages written by the test)"

    def finished(self) -> bool:
        return True

    def result(self) -> CrawlStats:
        return CrawlStats(complete=True, seconds=0.0)

    def stop(self) -> None:
        pass


class PagesCrawler:
    """Writes ``PAGES`` distinct pages into the page store, as the spider's pipeline does."""

    def start(
        self, crawl_path: Path, run_id: str, *, page_store: str, mode: CrawlMode, dry_run: bool
    ) -> Finished:
        db = StateDB(page_store)
        for i in range(PAGES):
            html = page_html(f"Page {i}", [(f"Topic {i}", prose(f"topic{i}", i, salt=f"-{i}"))])
            url = f"http://site.test/p{i}.html"
            db.add_fetched(run_id, FetchedPage(url, url, 200, content_type="text/html", body=html.encode()))
        db.close()
        return Finished()


class RecordingHooks(Hooks):
    """Records when each stage ran; the embed stage is made slow, as a remote embedder is."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, float, float, str]] = []
        self._lock = threading.Lock()

    def stage(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        start = time.monotonic()
        if name == "embed":
            time.sleep(1.0)
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.events.append((name, start, time.monotonic(), threading.current_thread().name))

    def of(self, name: str) -> list[tuple[str, float, float, str]]:
        return sorted((e for e in self.events if e[0] == name), key=lambda e: e[1])


def test_next_batch_is_extracted_while_the_current_one_is_embedded(tmp_path: Path) -> None:
    crawl = tmp_path / "overlap.yaml"
    crawl.write_text(
        yaml.safe_dump(
            {
                "name": "overlap",
                "source": {"start_urls": ["http://site.test/"], "allow_private_networks": True},
                "embedder": {"kind": "fake", "dimension": 32},
                "store": {"kind": "memory"},
                "extract": {"workers": 1},
                "dedup": {"near_duplicates": False},
            }
        )
    )
    hooks = RecordingHooks()
    summary = run_ingest(crawl, PagesCrawler(), hooks=hooks)
    assert summary.status == "ok" and summary.pages_new == PAGES
    extracts, embeds = hooks.of("extract"), hooks.of("embed")
    assert len(extracts) == len(embeds) == 3
    # Batch n+1's extraction starts before batch n's embedding ends, on another thread.
    for n in range(2):
        assert extracts[n + 1][1] < embeds[n][2]
        assert extracts[n + 1][3] != embeds[n][3]
    # Never more than one batch ahead: batch n+2 is not extracted before batch n's embedding began.
    assert extracts[2][1] >= embeds[0][1]
