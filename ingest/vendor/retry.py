"""The one retry loop of vendor requests, :func:`call_with_retries`, and what it needs.

Retries (:func:`call_with_retries`)
    One retry loop (tenacity) for every vendor request; the SDKs' own retries are switched off so
    that budgets do not multiply. Only :class:`TransientError` is retried (429, 408/409, 5xx,
    timeouts, dropped connections, as each adapter maps them); anything else stops at once.

    *Budget.* All retries of one operation (one ``embed`` or ``upsert`` call, however many
    requests it fans out to) share one :class:`RetryBudget` of wall time: the time during which at
    least one request of the operation is failing. Concurrent requests that fail together spend it
    once, not once each; time spent succeeding or queueing in the rate limiter is not spent. No
    retry starts once the next wait would overrun it: the operation raises TransientError saying
    that the budget (named by its setting, e.g. ``store.retry_budget_s``) is spent.

    *Backoff.* When the server did not say how long to wait: exponential backoff with "equal
    jitter" (:class:`Backoff`: a random delay between half and all of ``initial·2^(n-1)``, at most
    ``max``), so clients that failed together do not come back together.

    *Retry-After, the one rule.* When the server did say (:func:`retry_after_from_headers`:
    ``retry-after-ms``, then ``retry-after`` in seconds or as an HTTP date, then the
    ``x-ratelimit-reset-*`` of the exhausted limit), the client waits at least that long, plus a
    little jitter (×1.0-1.1, and up to half the initial backoff) so that clients told the same
    moment do not return together; the exponential backoff does not apply (the server knows
    better). When the server asks for more than is left of the budget, the operation gives up at
    once, without sleeping: TransientError says how long the server asked for and how much budget
    was left, and carries the ask in ``retry_after`` so a scheduler can come back later. There is no
    cap on the ask: retrying earlier than the server allows only earns another 429 (RFC 9110
    §10.2.3; OpenAI's and Pinecone's rate-limit guides both say to honour it). A budget larger than
    the longest wait a vendor is likely to ask for (OpenAI: a minute for per-minute limits) lets the
    operation ride such waits out.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type

from ingest.errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")

# A private generator: jitter never moves the global `random` state other code (or a test) relies on.
_RNG = random.Random()


# -- Retry-After -------------------------------------------------------------------------------------


def parse_duration(value: str) -> float | None:
    """'1s', '6m0s', '20ms', '1h2m3.5s', '0.5' → seconds; None when it is not a duration."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None  # nan >= 0 is False too
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked the client to wait, or None when it did not say.

    ``retry-after-ms`` first (OpenAI), then ``retry-after`` (RFC 9110: seconds or an HTTP date),
    then the ``x-ratelimit-reset-requests|tokens`` of the exhausted limit(s) (OpenAI: the limit whose
    ``x-ratelimit-remaining-*`` is 0; of all present, the soonest, if none says it is exhausted).
    Header names are matched case-insensitively; unparsable values are ignored.
    """
    if not headers:
        return None
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        ms = parse_duration(h["retry-after-ms"])
        if ms is not None:
            return ms / 1000.0
    if "retry-after" in h:
        seconds = parse_duration(h["retry-after"])
        if seconds is not None:
            return seconds
        try:
            return max(0.0, parsedate_to_datetime(h["retry-after"]).timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            pass
    resets: dict[str, float] = {}
    for what in ("requests", "tokens"):
        raw = h.get(f"x-ratelimit-reset-{what}")
        seconds = parse_duration(raw) if raw else None
        if seconds is not None:
            resets[what] = seconds
    exhausted = [s for what, s in resets.items() if h.get(f"x-ratelimit-remaining-{what}", "").strip() == "0"]
    if exhausted:
        return max(exhausted)
    return min(resets.values()) if resets else None


# -- retries -----------------------------------------------------------------------------------------


class Cancelled(Exception):
    """Another request of the same operation failed: this one stops waiting (internal to fan-outs)."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: retry ``n`` waits between half and all of
    ``min(max_s, initial_s · 2^(n-1))`` seconds."""

    initial_s: float
    max_s: float

    @classmethod
    def for_budget(cls, budget_s: float) -> Backoff:
        """0.5 s doubling up to 20 s, scaled down for small budgets (tests) so that they too see retries."""
        return cls(initial_s=min(0.5, budget_s / 20), max_s=min(20.0, budget_s / 4))

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.initial_s * 2 ** min(attempt - 1, 60))
        return _RNG.uniform(ceiling / 2, ceiling)


class RetryBudget:
    """The retry budget of one operation: wall time during which at least one of its requests fails.

    ``setting`` names the config key of the budget (``embedder.retry_budget_s``) for messages.
    ``cancel`` is set when the operation is abandoned: its waiting requests then raise
    :class:`Cancelled` instead of retrying.
    """

    def __init__(self, budget_s: float, *, setting: str) -> None:
        self.budget_s = budget_s
        self.setting = setting
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._failing = 0
        self._since = 0.0
        self._spent = 0.0

    def enter(self) -> None:
        """A request of the operation starts failing."""
        with self._lock:
            if self._failing == 0:
                self._since = time.monotonic()
            self._failing += 1

    def leave(self) -> None:
        """A failing request of the operation is done (succeeded or gave up)."""
        with self._lock:
            self._failing -= 1
            if self._failing == 0:
                self._spent += time.monotonic() - self._since

    def spent(self) -> float:
        """Seconds of the budget used so far."""
        with self._lock:
            return self._spent + (time.monotonic() - self._since if self._failing else 0.0)

    def left(self) -> float:
        """Seconds of the budget still available (never negative)."""
        return max(0.0, self.budget_s - self.spent())

    def sleep(self, seconds: float) -> None:
        """Sleep, unless the operation is cancelled meanwhile (then raise :class:`Cancelled`)."""
        if self.cancel.wait(seconds):
            raise Cancelled


def call_with_retries(
    attempt: Callable[[], T],
    budget: RetryBudget,
    *,
    backoff: Backoff,
    max_attempts: int | None = None,
    on_retry: Callable[[TransientError], None] | None = None,
) -> T:
    """``attempt()``, retried on :class:`TransientError` within ``budget`` (see the module docstring).

    ``max_attempts`` optionally caps the attempts too. ``on_retry`` is called with the error before
    each retry's wait (for counters). When retrying stops, raises TransientError: the last error's
    message, how many attempts were made and why they stopped, with the server's last ask in
    ``retry_after``. Raises :class:`Cancelled` when ``budget.cancel`` is set.
    """
    failing = False
    why = ""

    def tracked() -> T:
        nonlocal failing
        if budget.cancel.is_set():
            raise Cancelled
        try:
            return attempt()
        except TransientError:
            if not failing:
                failing = True
                budget.enter()
            raise

    def ask(state: RetryCallState) -> float | None:
        exc = state.outcome.exception() if state.outcome else None
        return exc.retry_after if isinstance(exc, TransientError) else None

    def wait(state: RetryCallState) -> float:
        asked = ask(state)
        if asked is None:
            return backoff.delay(state.attempt_number)
        jittered = asked * _RNG.uniform(1.0, 1.1) + _RNG.uniform(0.0, backoff.initial_s / 2)
        return min(jittered, max(asked, budget.left()))  # the jitter never overruns the budget

    def stop(state: RetryCallState) -> bool:
        nonlocal why
        n, asked, left = state.attempt_number, ask(state), budget.left()
        attempts = f"{n} attempt{'s' if n != 1 else ''}"
        if budget.cancel.is_set():
            why = "cancelled"
        elif max_attempts is not None and n >= max_attempts:
            why = f"gave up after {attempts} (the most allowed)"
        elif asked is not None and asked > left:
            why = (
                f"gave up after {attempts}: the server asked to wait {asked:.3g}s, more than the "
                f"{left:.3g}s left of the retry budget of {budget.budget_s:g}s ({budget.setting}); "
                "try again later"
            )
        # A wait the server asked for fits (``wait`` keeps its jitter within what is left); a backoff
        # that would overrun the budget is not started.
        elif left <= 0 or (asked is None and state.upcoming_sleep > left):
            why = (
                f"gave up after {attempts}: the retry budget of {budget.budget_s:g}s "
                f"({budget.setting}) is spent"
            )
        else:
            return False
        return True

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s; retry %d in %.2fs", exc, state.attempt_number, state.upcoming_sleep)
        if on_retry is not None and isinstance(exc, TransientError):
            on_retry(exc)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait,
        stop=stop,
        sleep=budget.sleep,
        before_sleep=before_sleep,
    )
    try:
        return retrying(tracked)
    except RetryError as err:
        if why == "cancelled":
            raise Cancelled from None
        last = err.last_attempt.exception()
        raise TransientError(
            f"{last} — {why}", retry_after=last.retry_after if isinstance(last, TransientError) else None
        ) from None
    finally:
        if failing:
            budget.leave()
