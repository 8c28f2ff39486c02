"""Stage 2 of the next batch on a thread of its own, while the caller takes the current batch through
stages 3–7: extraction (worker processes) overlaps embedding and writing."""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import Future, ThreadPoolExecutor

from ingest.batch import Extracted, extract_pages
from ingest.bookkeeping import Hooks
from ingest.env import RunEnv
from ingest.state import FetchedPage
from ingest.summary import RunSummary


class ExtractAhead:
    """Stage 2 on a thread of its own (one batch ahead of the rest), timed into the summary.

    The stage runs through ``hooks`` in a copy of the caller's context, so under Prefect it is still
    a task of the flow run."""

    def __init__(self, env: RunEnv, summary: RunSummary, hooks: Hooks) -> None:
        self.env, self.summary, self.hooks = env, summary, hooks
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webvec-extract")

    def _extract(self, pages: list[FetchedPage]) -> tuple[Extracted, float]:
        start = time.perf_counter()
        extracted = self.hooks.stage("extract", extract_pages, pages, self.env.extractor)
        return extracted, time.perf_counter() - start

    def submit(self, pages: list[FetchedPage]) -> Future[tuple[Extracted, float]]:
        """Start extracting ``pages``."""
        return self._pool.submit(contextvars.copy_context().run, self._extract, pages)

    def result(self, future: Future[tuple[Extracted, float]]) -> Extracted:
        """Wait for one batch's extraction (its error, if any, raised here)."""
        extracted, seconds = future.result()
        self.summary.add_time("extract", seconds)
        return extracted

    def close(self) -> None:
        """Wait for a running extraction to end (a failed run does not wait for queued ones)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
