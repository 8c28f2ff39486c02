"""Stage overlap in one process (issue 10, item 1): the next batch is extracted while the current one
is embedded and written. Ordering is checked, not speed (speed is in `make bench`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest
import yaml

from ingest.ahead import StagesBehind
from ingest.bookkeeping import Hooks
from ingest.run import BATCH_PAGES, CrawlMode, CrawlStats, run_ingest
from ingest.state import FetchedPage, StateDB
from ingest.summary import RunSummary
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

    def sections(self, i: int) -> list[tuple[str, str]]:
        """Page ``i``'s headings and prose."""
        return [(f"Topic {i}", prose(f"topic{i}", i, salt=f"-{i}"))]

    def html(self, i: int) -> bytes:
        """Page ``i`` as served."""
        return page_html(f"Page {i}", self.sections(i)).encode()

    def start(
        self, crawl_path: Path, run_id: str, *, page_store: str, mode: CrawlMode, dry_run: bool
    ) -> Finished:
        db = StateDB(page_store)
        for i in range(PAGES):
            url = f"http://site.test/p{i}.html"
            db.add_fetched(run_id, FetchedPage(url, url, 200, content_type="text/html", body=self.html(i)))
        db.close()
        return Finished()


def write_crawl(folder: Path, name: str) -> Path:
    """A crawl of the pages :class:`PagesCrawler` writes: fake embedder, in-memory store, one
    extraction worker, no near-duplicate detection."""
    crawl = folder / f"{name}.yaml"
    crawl.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "source": {"start_urls": ["http://site.test/"], "allow_private_networks": True},
                "embedder": {"kind": "fake", "dimension": 32},
                "store": {"kind": "memory"},
                "extract": {"workers": 1},
                "dedup": {"near_duplicates": False},
            }
        )
    )
    return crawl


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


def run_three_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, hooks: Hooks) -> RunSummary:
    """Run a crawl of :class:`PagesCrawler`'s pages in three full batches; checks it went through."""
    monkeypatch.setattr("ingest.run.FIRST_BATCH_PAGES", BATCH_PAGES)
    summary = run_ingest(write_crawl(tmp_path, name), PagesCrawler(), hooks=hooks)
    assert summary.status == "ok" and summary.pages_new == PAGES
    return summary


def pages_in_ledger(name: str) -> int:
    """How many pages crawl ``name`` has in the run's ledger."""
    db = StateDB(f"sqlite:///{os.environ['WEBVEC_HOME']}/state.db")
    try:
        return len(db.all_pages(name))
    finally:
        db.close()


def test_next_batch_is_extracted_while_the_current_one_is_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.run.EXTRACT_AHEAD", 2)
    hooks = RecordingHooks()
    run_three_batches(tmp_path, monkeypatch, "overlap", hooks)
    extracts, embeds = hooks.of("extract"), hooks.of("embed")
    assert len(extracts) == len(embeds) == 3
    # Batch n+1's extraction starts before batch n's embedding ends, on another thread.
    for n in range(2):
        assert extracts[n + 1][1] < embeds[n][2]
        assert extracts[n + 1][3] != embeds[n][3]
    # Never more than EXTRACT_AHEAD batches ahead: with 2, batch n+2 is not extracted before batch n
    # was chunked.
    chunks = hooks.of("chunk")
    assert extracts[2][1] >= chunks[0][2]


class SlowFirstExtraction(RecordingHooks):
    """The first batch's extraction takes a while, as one with a slow page does."""

    slow_end = 0.0

    def stage(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            slow, self._slowed = name == "extract" and not self._slowed, self._slowed or name == "extract"
        if not slow:
            return super().stage(name, fn, *args, **kwargs)
        time.sleep(1.5)
        try:
            return super().stage(name, fn, *args, **kwargs)
        finally:
            self.slow_end = time.monotonic()

    _slowed = False


def test_a_batch_slow_to_extract_holds_back_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = SlowFirstExtraction()
    run_three_batches(tmp_path, monkeypatch, "straggler", hooks)
    extracts, chunks = hooks.of("extract"), hooks.of("chunk")
    assert len(extracts) == len(chunks) == 3
    # The batches taken after the slow one were chunked (and so sent on to the embedder) before it.
    assert sum(c[1] < hooks.slow_end for c in chunks) == 2, (hooks.slow_end, chunks)
    assert pages_in_ledger("straggler") == PAGES  # every page all the same


class SlowStagesHooks(RecordingHooks):
    """Embedding and writing both take a while, as with a remote embedder and a remote store."""

    def stage(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if name == "write":
            time.sleep(0.5)
        return super().stage(name, fn, *args, **kwargs)


def test_embedding_overlaps_planning_writing_and_committing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = SlowStagesHooks()
    summary = run_three_batches(tmp_path, monkeypatch, "behind", hooks)
    assert summary.chunks_quarantined == 0
    chunks, embeds = hooks.of("chunk"), hooks.of("embed")
    writes, commits = hooks.of("write"), hooks.of("commit")
    assert len(chunks) == len(embeds) == len(writes) == len(commits) == 3
    for n in range(2):
        # Batch n+1 is planned and chunked while batch n is embedded, and embedded while n is written.
        assert chunks[n + 1][1] < embeds[n][2]
        assert embeds[n + 1][1] < writes[n][2]
        assert len({chunks[n][3], embeds[n][3], writes[n][3]}) == 3  # three threads
    for n in range(3):
        # A batch is written after its own embedding and committed after its own write, in order.
        assert embeds[n][2] <= writes[n][1] and writes[n][2] <= commits[n][1]
        if n:
            assert commits[n - 1][2] <= writes[n][1]
    # Every page is in the ledger, with its chunks, as when the stages ran one after another.
    assert pages_in_ledger("behind") == PAGES
    assert summary.vectors_written == summary.chunks > 0


class BatchSizes(Hooks):
    """Records how many pages each extraction took."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def stage(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if name == "extract":
            self.sizes.append(len(args[0]))  # type: ignore[arg-type]
        return fn(*args, **kwargs)


class HeavyPageCrawler(PagesCrawler):
    """:class:`PagesCrawler`'s pages, the third of them padded to several times the size of the others."""

    def sections(self, i: int) -> list[tuple[str, str]]:
        more = [(f"More {n}", prose(f"more{n}", n, salt="-heavy")) for n in range(12)] if i == 2 else []
        return super().sections(i) + more


class ExtractedUrls(RecordingHooks):
    """Records the URLs of each extraction, in the order they started."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def stage(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if name == "extract":
            with self._lock:
                self.batches.append([p.url for p in args[0]])  # type: ignore[attr-defined]
        return super().stage(name, fn, *args, **kwargs)


def test_a_heavy_page_waits_until_the_embedder_has_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.run.HEAVY_PAGE_BYTES", 3 * len(PagesCrawler().html(0)))  # page 2 only
    hooks = ExtractedUrls()  # each embed call takes a second: a reserve builds up
    summary = run_ingest(write_crawl(tmp_path, "heavy"), HeavyPageCrawler(), hooks=hooks)
    assert summary.status == "ok" and summary.pages_new == PAGES
    heavy = "http://site.test/p2.html"
    # Taken with the first 8 pages, extracted on its own once two batches were past chunking.
    assert heavy not in hooks.batches[0] and len(hooks.batches[0]) == 7
    (alone,) = [n for n, urls in enumerate(hooks.batches) if heavy in urls]
    assert hooks.batches[alone] == [heavy] and alone >= 2
    assert pages_in_ledger("heavy") == PAGES


def test_first_batches_are_small_and_double_up_to_the_batch_size(tmp_path: Path) -> None:
    crawl = write_crawl(tmp_path, "slowstart")
    hooks = BatchSizes()
    summary = run_ingest(crawl, PagesCrawler(), hooks=hooks)
    assert summary.status == "ok" and summary.pages_new == PAGES
    # The embedder gets its first texts after 8 pages, not 64; then the batches double to BATCH_PAGES.
    assert hooks.sizes == [8, 8, 16, 32, 64, PAGES - 128]


def test_stages_behind_keeps_order_and_stops_at_the_first_failure() -> None:
    embedded: list[int] = []
    written: list[tuple[int, str]] = []

    def embed(n: int) -> str:
        if n == 2:
            raise ValueError("embedder refused batch 2")
        embedded.append(n)
        time.sleep(0.05)
        return f"v{n}"

    behind: StagesBehind[int, str] = StagesBehind(embed, lambda n, v: written.append((n, v)), depth=2)
    try:
        behind.submit(0)
        behind.submit(1)
        with pytest.raises(ValueError, match="batch 2"):
            for n in range(2, 6):
                behind.submit(n)
            behind.drain()
    finally:
        behind.close()
    assert written == [(0, "v0"), (1, "v1")]  # in order; nothing written after the failure
    assert embedded[:2] == [0, 1] and 2 not in embedded
    assert len(embedded) <= 3  # at most the one batch already queued behind the failed one


def test_stages_behind_holds_at_most_depth_batches() -> None:
    written: list[int] = []
    returned: dict[int, int] = {}  # batch → batches written when its submit returned
    gate = threading.Event()

    def write(n: int, _: int) -> None:
        gate.wait(5)
        written.append(n)

    behind: StagesBehind[int, int] = StagesBehind(lambda n: n, write, depth=2)
    try:
        timer = threading.Timer(0.3, gate.set)
        timer.start()
        for n in range(4):
            behind.submit(n)
            returned[n] = len(written)
        behind.drain()
        timer.cancel()
    finally:
        behind.close()
    assert written == [0, 1, 2, 3]
    # Batches 0 and 1 fit; batch 2 waits for batch 0's write, batch 3 for batch 1's.
    assert returned[0] == returned[1] == 0 and returned[2] >= 1 and returned[3] >= 2
