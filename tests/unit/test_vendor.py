"""ingest.vendor: retries, Retry-After, rate limits, fan-out, keys and scrubbing, shared by the adapters."""

from __future__ import annotations

import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ingest.errors import (
    ConfigError,
    InputRejectedError,
    MissingExtraError,
    PermanentError,
    TransientError,
)
from ingest.vendor import (
    Backoff,
    Cancelled,
    RateLimiter,
    RetryBudget,
    api_key_from_env,
    call_with_retries,
    fan_out,
    import_extra,
    parse_duration,
    retry_after_from_headers,
    scrub,
)

# -- Retry-After -------------------------------------------------------------------------------------


def test_retry_after_header_forms() -> None:
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_from_headers({"Retry-After": "2"}) == 2.0
    assert retry_after_from_headers({"Retry-After": "1.5"}) == 1.5
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    assert 8 < (retry_after_from_headers({"retry-after": date}) or 0) <= 10
    past = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 100))
    assert retry_after_from_headers({"retry-after": past}) == 0.0
    assert retry_after_from_headers({"x-ratelimit-reset-requests": "1m2.5s"}) == 62.5
    exhausted = {
        "x-ratelimit-reset-requests": "20ms",
        "x-ratelimit-reset-tokens": "6m0s",
        "x-ratelimit-remaining-tokens": "0",
    }
    assert retry_after_from_headers(exhausted) == 360
    assert (
        retry_after_from_headers({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "1s"}) == 1
    )


@pytest.mark.parametrize(
    "headers",
    [{}, None, {"retry-after": "soon"}, {"retry-after": "-3"}, {"retry-after-ms": "nan"}, {"x-other": "1"}],
)
def test_retry_after_absent_or_unparsable_is_none(headers: dict[str, str] | None) -> None:
    assert retry_after_from_headers(headers) is None


def test_parse_duration() -> None:
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration(" 7 ") == 7.0
    assert parse_duration("5 minutes") is None
    assert parse_duration("1s2x") is None


# -- retries -----------------------------------------------------------------------------------------


class RecordingBudget(RetryBudget):
    """A budget whose sleeps are recorded instead of slept: waits are checked without timing anything."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(budget_s, setting="test.retry_budget_s")
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        if self.cancel.is_set():
            raise Cancelled
        self.slept.append(seconds)


def failing(*errors: Exception, result: str = "ok") -> Callable[[], str]:
    """A callable that raises ``errors`` one per call, then returns ``result``; counts its calls."""
    queue = list(errors)

    def fn() -> str:
        fn.calls += 1  # type: ignore[attr-defined]
        if queue:
            raise queue.pop(0)
        return result

    fn.calls = 0  # type: ignore[attr-defined]
    return fn


FAST = Backoff(initial_s=0.01, max_s=0.05)


def test_transient_errors_are_retried_then_succeed() -> None:
    fn = failing(TransientError("503"), TransientError("503"))
    seen: list[TransientError] = []
    budget = RecordingBudget(10)
    assert call_with_retries(fn, budget, backoff=FAST, on_retry=seen.append) == "ok"
    assert fn.calls == 3 and len(seen) == 2  # type: ignore[attr-defined]
    assert all(0.005 <= s <= 0.05 for s in budget.slept)  # equal jitter: half to all of the step


def test_permanent_errors_are_not_retried() -> None:
    fn = failing(PermanentError("401"))
    with pytest.raises(PermanentError, match="401"):
        call_with_retries(fn, RecordingBudget(10), backoff=FAST)
    assert fn.calls == 1  # type: ignore[attr-defined]


def test_retry_after_is_waited_in_full_even_above_the_backoff_ceiling() -> None:
    # The Pinecone store used to cap the server's ask at its 20 s backoff ceiling; now the ask wins.
    budget = RecordingBudget(100)
    fn = failing(TransientError("429", retry_after=25.0))
    assert call_with_retries(fn, budget, backoff=Backoff(0.5, 20.0)) == "ok"
    assert len(budget.slept) == 1
    assert 25.0 <= budget.slept[0] <= 25.0 * 1.1 + 0.25


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    budget = RecordingBudget(10)
    fn = failing(TransientError("rate limited (429)", retry_after=30.0))
    with pytest.raises(TransientError) as info:
        call_with_retries(fn, budget, backoff=FAST)
    message = str(info.value)
    assert "rate limited (429)" in message and "asked to wait 30s" in message
    assert "test.retry_budget_s" in message and "try again later" in message
    assert info.value.retry_after == 30.0
    assert fn.calls == 1 and budget.slept == []  # type: ignore[attr-defined]


def test_jitter_on_a_retry_after_never_overruns_the_budget() -> None:
    budget = RecordingBudget(1.0)
    fn = failing(TransientError("429", retry_after=0.99))
    call_with_retries(fn, budget, backoff=Backoff(0.5, 1.0))
    assert 0.99 <= budget.slept[0] <= 1.0


def test_spent_budget_raises_transient_error_naming_the_setting() -> None:
    fn = failing(*[TransientError("server error 500") for _ in range(1000)])
    budget = RetryBudget(0.2, setting="store.retry_budget_s")
    with pytest.raises(
        TransientError,
        match=r"server error 500 — gave up after \d+ attempts: the retry budget "
        r"of 0.2s \(store.retry_budget_s\) is spent",
    ):
        call_with_retries(fn, budget, backoff=FAST)
    assert fn.calls > 2  # type: ignore[attr-defined]


def test_max_attempts_caps_the_attempts() -> None:
    fn = failing(*[TransientError("server error 500") for _ in range(10)])
    with pytest.raises(TransientError, match=r"gave up after 3 attempts \(the most allowed\)"):
        call_with_retries(fn, RecordingBudget(100), backoff=FAST, max_attempts=3)
    assert fn.calls == 3  # type: ignore[attr-defined]


def test_a_cancelled_operation_stops_retrying() -> None:
    budget = RecordingBudget(100)
    fn = failing(TransientError("503"))
    budget.cancel.set()
    with pytest.raises(Cancelled):
        call_with_retries(fn, budget, backoff=FAST)
    assert fn.calls == 0  # type: ignore[attr-defined]


def test_backoff_grows_to_its_ceiling() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (500, 8.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert Backoff.for_budget(300) == Backoff(0.5, 20.0)
    assert Backoff.for_budget(2) == Backoff(0.1, 0.5)


def test_budget_counts_overlapping_failures_once() -> None:
    budget = RetryBudget(10, setting="x")
    budget.enter()
    budget.enter()  # a second request fails while the first still is
    time.sleep(0.05)
    budget.leave()
    budget.leave()
    spent = budget.spent()
    time.sleep(0.02)
    assert budget.spent() == spent  # nothing failing: the budget stands still
    assert spent >= 0.05 and budget.left() == pytest.approx(10 - spent)


# -- rate limiter ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, None, clock=clock)  # 10/s, a burst of one second: 10
    assert all(limiter._reserve(0) == 0 for _ in range(11))  # the 11th goes into debt
    assert limiter._reserve(0) == pytest.approx(0.1)
    clock.now += 1.0
    assert limiter._reserve(0) == 0


def test_rate_limiter_tokens_and_slow_down() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, 6000, clock=clock)  # 100 tokens/s
    assert limiter._reserve(300) == 0  # a large request is never starved...
    assert limiter._reserve(10) == pytest.approx(2.0)  # ...the next waits until the debt is repaid
    limiter.slow_down()
    assert limiter.factor == 0.5
    for _ in range(5):
        limiter.slow_down()
    assert limiter.factor == 0.125
    limiter.recover()
    assert limiter.factor == pytest.approx(0.175)


def test_rate_limiter_wait_is_cancellable() -> None:
    limiter = RateLimiter(60, None)  # one request per second
    cancel = threading.Event()
    limiter.acquire(1, cancel)
    limiter.acquire(1, cancel)  # the burst of one, plus one in debt
    cancel.set()
    with pytest.raises(Cancelled):
        limiter.acquire(1, cancel)


def test_rate_limiter_pause_holds_requests() -> None:
    limiter = RateLimiter(None, None)
    limiter.pause(0.2)
    assert limiter.acquire(1) >= 0.2


# -- fan-out -----------------------------------------------------------------------------------------


def test_fan_out_keeps_order() -> None:
    def slow_square(x: int) -> int:
        time.sleep(0.01 * (5 - x))
        return x * x

    assert fan_out(slow_square, [1, 2, 3, 4], max_workers=4) == [1, 4, 9, 16]
    assert fan_out(slow_square, [3], max_workers=4) == [9]
    assert fan_out(slow_square, [], max_workers=4) == []


def test_fan_out_first_failure_cancels_the_rest() -> None:
    cancel = threading.Event()
    started: list[int] = []

    def work(x: int) -> int:
        started.append(x)
        if x == 0:
            raise PermanentError("boom")
        if cancel.wait(5):  # a request waiting to retry
            raise Cancelled
        return x

    with pytest.raises(PermanentError, match="boom"):
        fan_out(work, list(range(20)), max_workers=2, cancel=cancel)
    assert cancel.is_set()
    assert len(started) < 20  # items not started were dropped


def test_fan_out_runs_inline_with_one_worker() -> None:
    threads: set[str] = set()

    def work(x: int) -> int:
        threads.add(threading.current_thread().name)
        return x

    assert fan_out(work, [1, 2, 3], max_workers=1) == [1, 2, 3]
    assert threads == {threading.current_thread().name}


# -- keys, SDKs, messages ----------------------------------------------------------------------------


def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBVEC_TEST_KEY", "  sk-secret-value  ")
    assert api_key_from_env("WEBVEC_TEST_KEY", setting="store.api_key_env", vendor="Pinecone") == (
        "sk-secret-value"
    )
    for value in (None, "   "):
        if value is None:
            monkeypatch.delenv("WEBVEC_TEST_KEY")
        else:
            monkeypatch.setenv("WEBVEC_TEST_KEY", value)
        with pytest.raises(ConfigError) as info:
            api_key_from_env("WEBVEC_TEST_KEY", setting="store.api_key_env", vendor="Pinecone")
        assert str(info.value) == (
            "store.api_key_env: environment variable WEBVEC_TEST_KEY is not set; "
            "export your Pinecone API key in it"
        )


def test_import_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert import_extra("json", "core").dumps([]) == "[]"
    monkeypatch.setitem(sys.modules, "webvec_no_such_sdk", None)
    with pytest.raises(
        MissingExtraError, match=r"webvec_no_such_sdk is not installed: pip install 'webvec\[x\]'"
    ):
        import_extra("webvec_no_such_sdk", "x")


def test_scrub_removes_secrets_and_key_like_strings() -> None:
    secret = "my-very-own-secret-123"
    text = (
        f"bad key {secret}\n  Incorrect API key provided: sk-proj-abc123XYZ. "
        "Also pcsk_4abc_DEF and Authorization: Bearer eyJhbGciOi.payload.sig"
    )
    clean = scrub(text, secret, None)
    assert secret not in clean and "abc123XYZ" not in clean and "4abc_DEF" not in clean
    assert "eyJhbGciOi" not in clean
    assert "\n" not in clean and "  " not in clean
    assert "sk-***" in clean and "pcsk_***" in clean and "Bearer ***" in clean
    assert len(scrub("x" * 1000)) == 300 and scrub("x" * 1000).endswith("…")


# -- errors survive pickling (Prefect results, Dask workers) -----------------------------------------


def test_errors_survive_pickling() -> None:
    transient = pickle.loads(pickle.dumps(TransientError("429", retry_after=3.5)))
    assert isinstance(transient, TransientError) and transient.retry_after == 3.5 and str(transient) == "429"
    missing = pickle.loads(pickle.dumps(MissingExtraError("openai", "openai")))
    assert isinstance(missing, MissingExtraError) and "webvec[openai]" in str(missing)
    vectors = np.array([[1.0, 2.0], [np.nan, np.nan]], dtype=np.float32)
    rejected: Any = pickle.loads(
        pickle.dumps(InputRejectedError("1 of 2", rejected={1: "bad"}, vectors=vectors))
    )
    assert isinstance(rejected, InputRejectedError) and isinstance(rejected, PermanentError)
    assert rejected.rejected == {1: "bad"} and rejected.accepted == [0]
    np.testing.assert_array_equal(rejected.vectors, vectors)


def test_retry_after_zero_does_not_retry_forever() -> None:
    fn = failing(*[TransientError("429", retry_after=0.0) for _ in range(100_000)])
    with pytest.raises(TransientError, match=r"retry budget of 0.2s \(test.retry_budget_s\) is spent"):
        call_with_retries(fn, RetryBudget(0.2, setting="test.retry_budget_s"), backoff=FAST)
