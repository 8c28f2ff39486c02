"""Extraction in worker processes, each page under a wall-clock limit and a memory limit.

trafilatura has no bound of its own: its cost grows with about the cube of the number of inline
elements (30,000 ``<span>``s in 619 KB take 150 s) and a page can need gigabytes. Inside the flow
process such a page would stall or kill the whole run. :class:`Extractor` runs :func:`extract` in a
pool of worker processes instead; a page over either limit is recorded as a ``Skip`` of kind
``EXTRACT_FAILED`` and the rest of the batch goes on.

- The pool is pebble's ``ProcessPool``: it times each task from the moment a worker takes it, kills
  the worker of a task past its timeout (SIGTERM, SIGKILL 3 s later), and starts a replacement.
  ``concurrent.futures`` can only stop waiting for such a task, not stop it.
- Memory: before each page a worker caps its address space (``RLIMIT_AS``) at what it holds (its
  libraries, caches and freed heap) plus ``memory_mb``; an allocation past that fails, and the page's
  ``MemoryError`` becomes the Skip. Libraries do not always let a failed allocation through as a
  MemoryError, so a failure that came with over half the allowance in use counts as one too (see
  :func:`_extract_in_worker`). Linux only (``/proc/self``); the pipeline runs on Linux.
- Workers start with the ``forkserver`` method: forked from a small server process, not from the flow
  process, which runs threads (fork would copy their held locks) and may hold gigabytes of model
  weights (which would count against the address-space cap). As with any non-fork start method the
  main module is imported in the workers: a script must keep its work under
  ``if __name__ == "__main__":`` (console scripts and ``python -m`` entry points do).
- The pool starts on first use, is reused across batches (a worker takes about a second to import and
  warm up trafilatura), serves batches from several threads at once, and is stopped by
  :meth:`Extractor.close`, by garbage collection, or at interpreter exit (pebble's own exit hook),
  so it never holds the interpreter up. Each worker is replaced after PAGES_PER_WORKER pages.

``workers=0`` runs :func:`extract` in the calling process, without limits: for tests and debugging.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType

from pebble import ProcessExpired, ProcessFuture, ProcessPool

from ingest.errors import WebvecError
from ingest.extract import Document, Skip, extract
from ingest.formats import DocumentLimits
from ingest.model import SkipKind
from ingest.urls import canonicalize_url

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_MB = 1024
# A worker is replaced after this many pages, so that what trafilatura's and htmldate's caches keep
# and what the heap fragments into cannot grow without bound (Apache's MaxConnectionsPerChild,
# Celery's worker_max_tasks_per_child). Replacing one costs about a second.
PAGES_PER_WORKER = 1000

# Parsed by the worker warm-up: loads trafilatura, htmldate, justext and their data before the limits.
_WARM_UP_PAGE = (
    b"<html lang='en'><head><title>Warm-up</title></head><body><article><h1>Warm-up</h1>"
    b"<p>This page loads the extraction libraries, their models and their caches, once.</p>"
    b"<p>Published on 2024-01-02, it has a date, a title, and sentences enough to be prose.</p>"
    b"</article></body></html>"
)


def default_workers() -> int:
    """One worker per CPU this process may run on, and one more: a page that takes seconds (the Python
    docs' ``contents.html``, 11 s) then holds one worker while as many as there are CPUs keep the
    embedder supplied. On two cores, the Python docs' first 20 s on the OpenAI stand-in used 16.3 and
    16.6 s' worth of the cap in two runs of three (12.1 in the third), against 13.0 twice with two
    workers. The CPUs are shared either way; the spare worker costs its memory."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus + 1


def _status_kb(field: str) -> int:
    """A size from /proc/self/status, in KiB (VmSize: address space, VmHWM: peak resident memory)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _start_worker() -> None:
    """Worker initializer: load the libraries and their data now, not within the first page's time."""
    extract(_WARM_UP_PAGE, "http://localhost/warm-up")


def _extract_in_worker(
    url: str,
    html: bytes,
    memory_mb: int,
    content_type: str | None = None,
    limits: DocumentLimits | None = None,
) -> Document | Skip:
    """The task a worker runs for one page (HTML or a document): extract it with ``memory_mb`` to spend.

    The address-space cap is set for this page alone, at what the worker holds now plus
    ``memory_mb``, so that neither the libraries' own size nor what their caches grow to counts
    against a page; it is lifted again before pebble sends the result and takes the next page.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _status_kb("VmSize") * 1024 + memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")  # resets VmHWM, the peak resident size, to the current size
    resident_kb = _status_kb("VmHWM")
    too_much = Skip(canonicalize_url(url), f"extraction needed over {memory_mb} MB", SkipKind.EXTRACT_FAILED)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        result = extract(html, url, content_type, limits)
    except MemoryError:
        return too_much
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    # Failed allocations do not always reach us as MemoryError: libxml2's come back as lxml errors of
    # other kinds ("XPathEvalError: unknown error"), and trafilatura swallows exceptions in its
    # fallbacks, which may leave "no main text". A failure that came with more than half the allowance
    # in use is taken for a lack of memory, so that it never empties the page.
    if isinstance(result, Skip) and (_status_kb("VmHWM") - resident_kb) * 2 > memory_mb * 1024:
        return too_much
    return result


def _stop(pool: ProcessPool) -> None:
    pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves stop() unannotated
    pool.join()


class Extractor:
    """Extracts batches of pages in a reusable pool of worker processes, under time and memory limits.

    ``workers``: processes in the pool (default: one per CPU and one more); 0 extracts in the calling process,
    without limits. ``timeout_s``: wall-clock seconds one page may take. ``memory_mb``: memory one
    page may need beyond what a loaded worker holds. ``limits``: what a PDF may declare (pages). Use as
    a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int = DEFAULT_MEMORY_MB,
        limits: DocumentLimits | None = None,
    ) -> None:
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be above 0, not {timeout_s}")
        if memory_mb <= 0:
            raise ValueError(f"memory_mb must be above 0, not {memory_mb}")
        self.workers = default_workers() if workers is None else workers
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.limits = limits or DocumentLimits()
        self._pool: ProcessPool | None = None  # started on first use
        self._lock = threading.Lock()  # batches may come from several threads; one pool serves them
        self._finalizer: weakref.finalize[[ProcessPool], Extractor] | None = None

    def extract_many(
        self, items: Sequence[tuple[str, bytes]], content_types: Sequence[str | None] | None = None
    ) -> list[Document | Skip]:
        """Extract ``(url, html)`` pages; one Document or Skip per page, in the order given.

        ``content_types`` (one per item, the response headers) choose the reader; without them every
        page is read as HTML.

        A page that raises, runs past ``timeout_s``, needs more than ``memory_mb`` or kills its worker
        comes back as a Skip of kind ``EXTRACT_FAILED``. Raises :class:`WebvecError` only when the
        pool cannot run at all (its workers die before they take a page, twice in a row).
        """
        types = list(content_types) if content_types is not None else [None] * len(items)
        if len(types) != len(items):
            raise ValueError("one content type per item")
        if self.workers == 0 or not items:
            pairs = zip(items, types, strict=True)
            return [extract(html, url, ctype, self.limits) for (url, html), ctype in pairs]
        results: list[Document | Skip | None] = [None] * len(items)
        pending = list(range(len(items)))
        # A pool whose workers all died while it was idle (killed from outside, failed to start) is
        # "broken" for pebble and fails every task; a new pool gets one more try.
        for _ in range(2):
            pool = self._live_pool()
            pending = self._run(pool, items, types, pending, results)
            if not pending:
                return [r for r in results if r is not None]
            self._discard(pool)
        raise WebvecError(
            "extraction workers die before they take a page; their error is on stderr "
            "(a memory limit too low to load trafilatura, or a broken install?)"
        )

    def _run(
        self,
        pool: ProcessPool,
        items: Sequence[tuple[str, bytes]],
        types: Sequence[str | None],
        indexes: list[int],
        results: list[Document | Skip | None],
    ) -> list[int]:
        """Extract ``items[i]`` into ``results[i]`` for each index; return the indexes a broken pool lost."""
        futures: list[tuple[int, ProcessFuture[Document | Skip]]] = []
        try:
            for i in indexes:
                url, html = items[i]
                future = pool.schedule(
                    _extract_in_worker,
                    args=(url, html, self.memory_mb, types[i], self.limits),
                    timeout=self.timeout_s,
                )
                futures.append((i, future))
        except RuntimeError:  # the pool broke while taking tasks
            pass
        broken = indexes[len(futures) :]
        for i, future in futures:
            try:
                results[i] = self._outcome(items[i][0], future)
            except BrokenProcessPool:
                broken.append(i)
        return sorted(broken)

    def _outcome(self, url: str, future: ProcessFuture[Document | Skip]) -> Document | Skip:
        try:
            result: Document | Skip = future.result()
            return result
        except FutureTimeout:
            reason = f"extraction took over {self.timeout_s:g} s"
        except ProcessExpired as exc:  # a crash in C code, or the kernel's OOM killer (SIGKILL)
            code = exc.exitcode
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            reason = f"extraction worker died ({how})"
        return Skip(canonicalize_url(url), reason, SkipKind.EXTRACT_FAILED)

    def _live_pool(self) -> ProcessPool:
        with self._lock:
            if self._pool is not None and not self._pool.active:  # broken: its tasks have failed
                self._close()
            if self._pool is None:
                self._pool = ProcessPool(
                    max_workers=self.workers,
                    max_tasks=PAGES_PER_WORKER,
                    initializer=_start_worker,
                    context=multiprocessing.get_context("forkserver"),
                )
                # Stops the workers when the Extractor is garbage-collected without close().
                self._finalizer = weakref.finalize(self, _stop, self._pool)
            return self._pool

    def _discard(self, pool: ProcessPool) -> None:
        """Close ``pool`` if it is still the current one (another thread may have replaced it)."""
        with self._lock:
            if self._pool is pool:
                self._close()

    def _close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # calls _stop(pool) once
        self._pool = None
        self._finalizer = None

    def close(self) -> None:
        """Stop the worker processes; a later batch starts a new pool.

        Not while a batch is running: pebble leaves the pages of a stopped pool unanswered.
        """
        with self._lock:
            self._close()

    def __enter__(self) -> Extractor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
