"""What every HTTP vendor adapter needs, in one place: the OpenAI embedder and the Pinecone store use it.

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

Also here: the client-side requests/tokens-per-minute :class:`RateLimiter`, the bounded thread
:func:`fan_out` (the first failure cancels the rest), :func:`api_key_from_env` (the key comes from the
environment variable a config names; a missing one is one line naming the variable, the key itself
never appears in a message), :func:`import_extra` (vendor SDKs are imported lazily; a missing one is
:class:`MissingExtraError`) and :func:`scrub` (server messages cleaned of secrets before they reach an
error message or a log).
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import TypeVar

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type

from ingest.errors import ConfigError, MissingExtraError, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Server messages are quoted in error messages at most this long: enough to say what is wrong,
# short enough not to paste a whole HTML error page into a log line.
MAX_MESSAGE_CHARS = 300

# Key-like strings scrubbed from any server message: OpenAI ("sk-...", "sk-proj-..."), Pinecone
# ("pcsk_..."), and whatever follows "Bearer".
_KEYLIKE_RES = (
    (re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}"), "sk-***"),
    (re.compile(r"\bpcsk_[A-Za-z0-9_*.\-]{3,}"), "pcsk_***"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9_*.\-~+/=]{3,}"), "Bearer ***"),
)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


# -- SDKs and keys -----------------------------------------------------------------------------------


def import_extra(module: str, extra: str) -> ModuleType:
    """Import an optional vendor SDK lazily; MissingExtraError ("pip install 'webvec[extra]'") if absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(extra, module) from None


def env_secret(env: str) -> str | None:
    """The value of ``$env``, stripped, or None when unset or blank."""
    return os.environ.get(env, "").strip() or None


def api_key_from_env(env: str, *, setting: str, vendor: str) -> str:
    """The API key in ``$env``; ConfigError naming the variable (and the ``setting`` that names it)
    when it is unset or blank. The key itself never appears in any message."""
    key = env_secret(env)
    if key is None:
        raise ConfigError(
            f"{setting}: environment variable {env} is not set; export your {vendor} API key in it"
        )
    return key


def scrub(text: str, *secrets: str | None, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` (a server's message) safe for an error message or a log line.

    Every given secret becomes ``***``, key-like strings are masked, whitespace is collapsed to single
    spaces, and the result is cut to ``max_chars`` characters.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern, replacement in _KEYLIKE_RES:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


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
        return random.uniform(ceiling / 2, ceiling)


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
        jittered = asked * random.uniform(1.0, 1.1) + random.uniform(0.0, backoff.initial_s / 2)
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


# -- rate limits -------------------------------------------------------------------------------------


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


__all__ = [
    "MAX_MESSAGE_CHARS",
    "Backoff",
    "Cancelled",
    "RateLimiter",
    "RetryBudget",
    "api_key_from_env",
    "call_with_retries",
    "env_secret",
    "fan_out",
    "import_extra",
    "parse_duration",
    "retry_after_from_headers",
    "scrub",
]
