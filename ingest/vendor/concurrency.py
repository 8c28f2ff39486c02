"""Concurrency of one vendor operation: the client-side rate limiter its requests share, and the bounded
thread fan-out that runs them (the first failure cancels the rest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

from ingest.vendor.retry import Cancelled

T = TypeVar("T")
R = TypeVar("R")


class RateLimiter:
    """Client-side requests-per-minute and tokens-per-minute limits, shared by threads.

    Two token buckets refill continuously at ``rpm/60`` and ``tpm/60`` per second and hold at most
    ``burst_s`` seconds' refill (vendors may enforce per-minute limits over shorter periods). A request
    may go once both levels are non-negative, and then takes its cost, going into debt if need be: a
    large request is never starved, and the next one waits until the debt is repaid. ``slow_down``
    (after a 429) halves the refill rates, down to 1/8; each ``recover`` (after a success) gives 5%
    back. ``pause`` holds every request back until a moment the server named. A limit of None is no
    limit.
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        *,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets: list[tuple[str, float, float]] = []  # (what, rate per second, capacity)
        self._levels: list[float] = []
        for what, per_minute in (("requests", requests_per_minute), ("tokens", tokens_per_minute)):
            if per_minute is not None:
                rate = per_minute / 60.0
                capacity = max(1.0, rate * burst_s)
                self._buckets.append((what, rate, capacity))
                self._levels.append(capacity)
        self._stamp = now
        self._factor = 1.0
        self._paused_until = now

    @property
    def factor(self) -> float:
        """Fraction of the configured rates currently allowed (1.0 until a 429)."""
        return self._factor

    def _reserve(self, tokens: int) -> float:
        now = self._clock()
        elapsed, self._stamp = now - self._stamp, now
        delay = max(0.0, self._paused_until - now)
        for i, (what, rate, capacity) in enumerate(self._buckets):
            r = rate * self._factor
            level = min(capacity, self._levels[i] + elapsed * r)
            if level < 0:
                delay = max(delay, -level / r)
            self._levels[i] = level - (1 if what == "requests" else tokens)
        return delay

    def acquire(self, tokens: int, cancel: threading.Event | None = None) -> float:
        """Block until a request of ``tokens`` tokens may go; return the seconds waited.

        Raises :class:`Cancelled` when ``cancel`` is set while waiting.
        """
        started = self._clock()
        with self._lock:
            go_at = started + self._reserve(tokens)
        while True:
            delay = go_at - self._clock()
            if delay > 0:
                if cancel is not None:
                    if cancel.wait(delay):
                        raise Cancelled
                else:
                    time.sleep(delay)
            with self._lock:  # a pause may have begun while this request waited
                if self._paused_until <= self._clock():
                    return self._clock() - started
                go_at = self._paused_until

    def pause(self, seconds: float) -> None:
        """Let no request go for ``seconds`` (the server's retry-after)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def slow_down(self) -> None:
        """Halve the allowed rates (not below 1/8 of the configured ones) after a 429."""
        with self._lock:
            self._factor = max(0.125, self._factor / 2)

    def recover(self) -> None:
        """Give back 5% of the configured rates after a success."""
        if self._factor < 1.0:
            with self._lock:
                self._factor = min(1.0, self._factor + 0.05)


# -- fan-out -----------------------------------------------------------------------------------------


def fan_out(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    max_workers: int,
    cancel: threading.Event | None = None,
    thread_name: str = "webvec",
) -> list[R]:
    """``[fn(item) for item in items]``, up to ``max_workers`` at a time on threads, results in order.

    The first failure stops the rest: ``cancel`` is set (requests waiting to retry or for the rate
    limiter then raise :class:`Cancelled`), items not started are dropped, and that failure is raised
    at once. Requests already on the wire finish in the background within their timeout; their
    results are discarded (every vendor write is an idempotent upsert, so that is harmless).
    """
    workers = min(max_workers, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)
    futures = [pool.submit(fn, item) for item in items]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        errors = [e for f in futures if f.done() and not f.cancelled() and (e := f.exception()) is not None]
        if errors:
            # A Cancelled is only the echo of another failure: raise the failure itself.
            raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        results = [f.result() for f in futures]
    except BaseException:
        if cancel is not None:
            cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
