"""Bookkeeping of every run — ingest, re-embed, repair, rollback, prune — in one place.

:func:`recorded_run` gives a run its ``runs`` row, the crawl's lock (a dead holder's is taken over and
its run recorded ``crashed``), a heartbeat thread that keeps the lock fresh during every stage, and at
the end its status and summary, in the ledger and published by the run's :class:`Hooks`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from ingest.errors import WebvecError
from ingest.model import RunStatus
from ingest.state import StateDB
from ingest.summary import RunSummary

HEARTBEAT_SECONDS = 15.0  # well inside runs.STALE_AFTER_S: a live holder is never taken over
P = ParamSpec("P")
T = TypeVar("T")


class RunFailed(WebvecError):
    """A run ended without doing its job; ``summary`` says how far it got."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


class Hooks:
    """How a run is driven. This base calls each stage directly and reports progress to a callback;
    ``flows/`` overrides :meth:`stage` to run stages as Prefect tasks and :meth:`publish` to write the
    summary as an artifact."""

    def __init__(self, on_progress: Callable[[str, int, int], None] | None = None) -> None:
        self._on_progress = on_progress

    def stage(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one stage of a batch."""
        return fn(*args, **kwargs)

    def progress(self, event: str, advance: int = 0, total: int = 0) -> None:
        """``event`` (fetched, embedded, written) advanced by ``advance``, its total grown by ``total``."""
        if self._on_progress is not None:
            self._on_progress(event, advance, total)

    def publish(self, summary: RunSummary) -> None:
        """Make the finished run's summary visible (nothing to do without an orchestrator)."""


class Heartbeat:
    """A thread that keeps a run's lock fresh during every stage, however long; ``lost`` turns true
    if the lock stopped being this run's (taken over after the ledger decided this process was dead)."""

    def __init__(self, db: StateDB, crawl: str, run_id: str, every: float = HEARTBEAT_SECONDS) -> None:
        self.db, self.crawl, self.run_id, self.every = db, crawl, run_id, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"webvec-heartbeat-{crawl}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.db.heartbeat(self.crawl, self.run_id):
                    self.lost = True
            except Exception:  # a ledger hiccup: the next beat retries; STALE_AFTER_S leaves room
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> None:
        """Raise when the lock was lost: two processes must never write one crawl's store."""
        if self.lost:
            raise WebvecError(f"run {self.run_id} lost the lock of {self.crawl!r}; stopping")


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its class name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def recorded_run(
    db: StateDB,
    summary: RunSummary,
    hooks: Hooks | None = None,
    finish: Callable[[RunSummary], None] | None = None,
) -> Iterator[Heartbeat]:
    """Bookkeeping of every run: a ``runs`` row, the crawl's lock (taking over a dead holder's, whose
    run is recorded ``crashed``), a heartbeat thread, and at the end the status, the summary (in the
    ledger, and published by ``hooks``). The body's exception becomes :class:`RunFailed` with the
    summary; ``finish`` completes the summary (cost, seconds) whatever happened."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    summary.run_id = db.start_run(summary.crawl, summary.kind)
    error: BaseException | None = None
    try:
        crashed = db.acquire_lock(summary.crawl, summary.run_id)
        if crashed:
            summary.warnings.append(f"run {crashed} had crashed (its process died); its lock was taken over")
        try:
            with Heartbeat(db, summary.crawl, summary.run_id) as heartbeat:
                yield heartbeat
        finally:
            db.release_lock(summary.crawl, summary.run_id)
    except BaseException as exc:
        error = exc
        summary.status = RunStatus.FAILED
        summary.message = first_line(exc)
    finally:
        if summary.status == RunStatus.RUNNING:
            summary.status = RunStatus.OK
        if finish is not None:
            finish(summary)
        summary.seconds = round(time.monotonic() - started, 3)
        db.finish_run(summary.run_id, RunStatus(summary.status), summary.to_dict())
        hooks.publish(summary)
    if error is not None:
        if isinstance(error, Exception):
            raise RunFailed(summary.message, summary) from error
        raise error  # KeyboardInterrupt, SystemExit: recorded failed, then on their way
