"""The run's stages overlapped on threads of their own: stage 2 of the next batches (:class:`ExtractAhead`)
and stages 5–7 of the previous ones (:class:`StagesBehind`) run while the caller plans and chunks the
current batch, so extraction (worker processes), embedding and writing overlap."""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from ingest.batch import Extracted, extract_pages
from ingest.bookkeeping import Hooks
from ingest.env import RunEnv
from ingest.state import FetchedPage
from ingest.summary import RunSummary

T = TypeVar("T")


class ExtractAhead:
    """Stage 2 on threads of its own, timed into the summary: up to ``batches`` batches are extracted
    at once, all feeding the one pool of extraction processes, which thus stays busy across a batch's
    end instead of waiting for its slowest page. The caller takes each batch when its extraction
    ends, in whatever order that is.

    The stage runs through ``hooks`` in a copy of the caller's context, so under Prefect it is still
    a task of the flow run."""

    def __init__(self, env: RunEnv, summary: RunSummary, hooks: Hooks, batches: int = 2) -> None:
        self.env, self.summary, self.hooks = env, summary, hooks
        self._pool = ThreadPoolExecutor(max_workers=max(1, batches), thread_name_prefix="webvec-extract")

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


B = TypeVar("B")
E = TypeVar("E")


class StagesBehind(Generic[B, E]):
    """Stage 5 (embed) and stages 6–7 (write, commit) of successive batches, each on a thread of its
    own, while the caller plans and chunks the next batch: the embedder is not left idle while a
    batch is planned, chunked, written or committed (issue 10: the OpenAI cap's share over a whole
    run was bounded by those stages, not by the embed stage).

    Batches are embedded, then written, in the order they were submitted, one at a time per stage, so
    a batch's texts are in the embedding cache before the next batch looks them up, and commits keep
    the run's order. Bounded: at most ``depth`` batches past stage 4 (one writing, one embedding, the
    rest waiting for the embedder); :meth:`submit` waits for the oldest to be written first, so a
    slow embedder holds the crawl's pages in the page store, not in memory. The first failure is
    raised by the next :meth:`submit` or :meth:`drain`, and batches queued behind it are not
    started. Both stages run in a copy of the caller's context, so under Prefect they are still
    tasks of the flow run."""

    def __init__(self, embed: Callable[[B], E], write: Callable[[B, E], None], depth: int = 4) -> None:
        self._embed_fn, self._write_fn, self.depth = embed, write, max(1, depth)
        self._embedder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webvec-embed")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webvec-write")
        self._in_flight: deque[Future[None]] = deque()
        self._submitted = 0
        self._failed_at: int | None = None  # the first batch that failed: later ones are not started
        self._lock = threading.Lock()

    def _guarded(self, seq: int, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._failed_at is not None and seq > self._failed_at:
                # Never raised to the caller: the earlier batch's error comes first.
                raise RuntimeError(f"batch {self._failed_at} failed")
        try:
            return fn(*args)
        except BaseException:
            with self._lock:
                self._failed_at = seq if self._failed_at is None else min(seq, self._failed_at)
            raise

    def _write(self, seq: int, batch: B, embedded: Future[E]) -> None:
        self._guarded(seq, self._write_fn, batch, embedded.result())

    def submit(self, batch: B) -> None:
        """Queue ``batch`` for embedding and writing, after waiting for room."""
        while len(self._in_flight) >= self.depth:
            self._in_flight.popleft().result()
        seq, self._submitted = self._submitted, self._submitted + 1
        embedded = self._embedder.submit(
            contextvars.copy_context().run, self._guarded, seq, self._embed_fn, batch
        )
        self._in_flight.append(
            self._writer.submit(contextvars.copy_context().run, self._write, seq, batch, embedded)
        )

    @property
    def queued(self) -> int:
        """Batches submitted and not yet written: the embedder's reserve, and the writer's."""
        return sum(not f.done() for f in self._in_flight)

    def drain(self) -> None:
        """Wait until every submitted batch is written (the first failure raised here)."""
        while self._in_flight:
            self._in_flight.popleft().result()

    def close(self) -> None:
        """Stop: queued batches are dropped, a running stage is waited for (a failed run's end)."""
        with self._lock:
            self._failed_at = -1
        self._in_flight.clear()
        for pool in (self._embedder, self._writer):
            pool.shutdown(wait=True, cancel_futures=True)
