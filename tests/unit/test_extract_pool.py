"""The extraction pool: real worker processes, a page past its time or memory, dying workers, exit."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest import extract_pool
from ingest.extract import Document, Skip, extract
from ingest.extract_pool import Extractor
from ingest.model import SkipKind

DATA = Path(__file__).resolve().parents[1] / "data" / "html"
REPO = Path(__file__).resolve().parents[2]
# Generous for pages that take 0.1-0.5 s on a loaded 2-core machine; the slow page needs minutes.
TIMEOUT_S = 8.0


def _page(name: str) -> tuple[str, bytes]:
    return f"http://docs.test/{name}", (DATA / name).read_bytes()


def spans_page(count: int = 30_000) -> bytes:
    """Issue 8's slow page: one paragraph of ``count`` inline spans (619 KB, 150 s to extract)."""
    spans = "".join(f"<span>word{i} is here.</span> " for i in range(count))
    return (
        "<html><head><title>Spans</title></head><body><article><h1>Spans</h1>"
        f"<p>{spans}</p></article></body></html>"
    ).encode()


def _workers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "pebble_pool_worker"]


@pytest.fixture(scope="module")
def extractor() -> Iterator[Extractor]:
    # One pool for the module: starting one costs a second or two.
    with Extractor(workers=2, timeout_s=TIMEOUT_S) as ex:
        yield ex


# Waits out the per-page time limit (~10 s): the full tier's.
@pytest.mark.slow
def test_slow_page_is_skipped_and_the_batch_goes_on(extractor: Extractor) -> None:
    items = [
        _page("python-howto-sorting.html"),
        ("http://docs.test/spans.html#top", spans_page()),
        _page("python-library-functools.html"),
        ("http://docs.test/iframe.html", b"<iframe><html>"),
        _page("python-library-urllib-robotparser.html"),
    ]
    results = extractor.extract_many(items)
    assert [r.url for r in results] == [
        "http://docs.test/python-howto-sorting.html",
        "http://docs.test/spans.html",  # canonical, as extract() gives it
        "http://docs.test/python-library-functools.html",
        "http://docs.test/iframe.html",
        "http://docs.test/python-library-urllib-robotparser.html",
    ]
    slow = Skip("http://docs.test/spans.html", "extraction took over 8 s", SkipKind.EXTRACT_FAILED)
    assert results[1] == slow
    failed = results[3]
    assert isinstance(failed, Skip) and failed.kind == SkipKind.EXTRACT_FAILED
    assert failed.reason.startswith("extraction failed: AssertionError")
    for i in (0, 2, 4):  # the same documents as in-process
        assert isinstance(results[i], Document)
        assert results[i] == extract(items[i][1], items[i][0])


def test_pool_survives_killed_workers(extractor: Extractor) -> None:
    extractor.extract_many([_page("python-search.html")])  # the pool is up
    workers = _workers()
    assert workers
    for worker in workers:
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
    results = extractor.extract_many([_page("python-howto-sorting.html"), _page("python-faq-general.html")])
    assert all(isinstance(r, Document) for r in results)


def test_a_worker_that_dies_is_a_skip(extractor: Extractor) -> None:
    # What a segfault in C code or the kernel's OOM killer does to a worker, on a real one.
    pool = extractor._live_pool()
    exited = extractor._outcome("http://docs.test/x.html", pool.schedule(os._exit, args=(3,)))
    assert exited == Skip(
        "http://docs.test/x.html", "extraction worker died (exit code 3)", SkipKind.EXTRACT_FAILED
    )
    segv = extractor._outcome("http://docs.test/y.html", pool.schedule(_kill_self, args=(signal.SIGSEGV,)))
    assert segv.reason == "extraction worker died (signal SIGSEGV)"
    assert isinstance(extractor.extract_many([_page("python-howto-sorting.html")])[0], Document)


def _kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def test_page_over_the_memory_limit_is_skipped() -> None:
    # One paragraph of 2 MB: trafilatura needs about 70 MB for it, a documentation page under 10 MB.
    hog = b"<html><body><article><p>" + b"word of text, " * 150_000 + b"</p></article></body></html>"
    with Extractor(workers=1, timeout_s=120, memory_mb=32) as ex:
        results = ex.extract_many([("http://docs.test/hog.html", hog), _page("python-howto-sorting.html")])
    hungry = Skip("http://docs.test/hog.html", "extraction needed over 32 MB", SkipKind.EXTRACT_FAILED)
    assert results[0] == hungry
    assert isinstance(results[1], Document)


def test_in_process_mode_gives_the_same_results() -> None:
    items = [_page("python-howto-sorting.html"), ("http://docs.test/iframe.html", b"<iframe><html>")]
    with Extractor(workers=0) as ex:
        assert ex.extract_many(items) == [extract(html, url) for url, html in items]
        assert ex._pool is None  # no processes started


def test_limits_must_be_positive() -> None:
    for kwargs in ({"workers": -1}, {"timeout_s": 0}, {"memory_mb": 0}):
        with pytest.raises(ValueError, match="must be"):
            Extractor(**kwargs)  # type: ignore[arg-type]


def test_unclosed_pool_does_not_hold_up_interpreter_exit() -> None:
    script = (
        "from pathlib import Path\n"
        "from ingest.extract_pool import Extractor\n"
        "import multiprocessing\n"
        f"html = Path({str(DATA / 'python-howto-sorting.html')!r}).read_bytes()\n"
        "ex = Extractor(workers=2)\n"  # never closed
        "print(type(ex.extract_many([('http://docs.test/a', html)])[0]).__name__)\n"
        "print(*[p.pid for p in multiprocessing.active_children() if p.name == 'pebble_pool_worker'])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    lines = done.stdout.split("\n")
    assert lines[0] == "Document"
    pids = [int(p) for p in lines[1].split()]
    assert pids
    for pid in pids:  # the workers went with it (a zombie left to init is gone too)
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "\nState:\tZ" in status.read_text()


def _extract_holding(mb: int) -> Document | Skip:
    """In a fresh process: ``_extract_in_worker`` with an ``extract`` that holds ``mb`` MB, then says
    "no main text" (as trafilatura does when it swallowed a failed allocation)."""

    def fake_extract(html: bytes, url: str, *_: object) -> Skip:  # content type, document limits
        held = bytearray(mb * 1024 * 1024)
        held[::4096] = b"x" * len(held[::4096])  # touch every page: resident
        return Skip(url, "no main text", SkipKind.NO_MAIN_TEXT)

    extract_pool.extract = fake_extract  # type: ignore[assignment]  # this child process only
    return extract_pool._extract_in_worker("http://docs.test/a", b"", 64)


def test_failure_near_the_memory_limit_counts_as_lack_of_memory() -> None:
    # lxml reports some failed allocations as other errors ("XPathEvalError: unknown error") and
    # trafilatura swallows exceptions in its fallbacks: a Skip that came with most of the allowance in
    # use must not pass for "no main text" (which would empty the page). Run in a fresh process, as a
    # worker is: the test process's own heap (freed memory still resident) would blur the measure.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        hungry = child.submit(_extract_holding, 48).result()
        modest = child.submit(_extract_holding, 4).result()
    assert hungry == Skip("http://docs.test/a", "extraction needed over 64 MB", SkipKind.EXTRACT_FAILED)
    assert isinstance(modest, Skip) and modest.kind == SkipKind.NO_MAIN_TEXT


def test_batches_from_several_threads_share_the_pool(extractor: Extractor) -> None:
    # The flow extracts the next batch while the last one is embedded.
    batches = [
        [_page("python-howto-sorting.html"), _page("python-search.html")],
        [_page("python-faq-general.html"), _page("python-copyright.html")],
        [_page("python-library-urllib-robotparser.html")],
    ]
    with ThreadPoolExecutor(len(batches)) as threads:
        results = list(threads.map(extractor.extract_many, batches))
    for batch, got in zip(batches, results, strict=True):
        assert got == [extract(html, url) for url, html in batch]


def test_default_pool_has_a_worker_more_than_cpus() -> None:
    # The spare worker keeps pages extracted while one takes seconds on a heavy page.
    with Extractor() as extractor:
        assert extractor.workers == len(os.sched_getaffinity(0)) + 1
