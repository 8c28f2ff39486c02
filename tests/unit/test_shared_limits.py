"""Rate limits across workers (issue 10 item 4): the Redis token bucket two processes share, its keys,
the split of the caps without Redis, and how a crawl's ``scale:`` picks one (ingest.vendor.limits).

Redis from ``WEBVEC_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); each test has its own
crawl name and deletes its keys. Skipped only when Redis does not answer.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ingest.config import OpenAIEmbedderConfig, parse_crawl
from ingest.embedders.openai import OpenAIEmbedder
from ingest.env import shared_limits
from ingest.errors import ConfigError, TransientError
from ingest.vendor import RateLimiter, RedisRateLimiter, SharedLimits
from ingest.vendor import limits as limits_module
from ingest.vendor.limits import KEY_PREFIX, bucket_key, split_cap, wait_bound

REDIS_ENV = "WEBVEC_TEST_REDIS_URL"
URL = os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0")


@pytest.fixture
def crawl() -> Iterator[str]:
    """A fresh crawl name whose rate-limit keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_ENV} ({URL}) does not answer: {type(exc).__name__}")
    name = f"unit-{uuid.uuid4().hex[:8]}"
    yield name
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}:{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _take(key: str, rpm: int | None, tpm: int | None, costs: list[int], out: Any) -> None:
    """In a process of its own: a limiter on ``key`` taking ``costs``; puts (wall time, cost) per go."""
    limiter = RedisRateLimiter(key, rpm, tpm, burst_s=1.0, url=URL)
    for cost in costs:
        limiter.acquire(cost)
        out.put((time.time(), cost))  # wall clock: the processes' clocks are the same machine's


def _two_processes(key: str, rpm: int | None, tpm: int | None, costs: list[int]) -> list[tuple[float, int]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take, args=(key, rpm, tpm, costs, out)) for _ in range(2)]
    for p in procs:
        p.start()
    gone = [out.get(timeout=60) for _ in range(2 * len(costs))]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return sorted(gone)


def _most_in_a_window(gone: list[tuple[float, int]], window_s: float) -> int:
    """The largest total cost of the requests that went within any ``window_s`` seconds."""
    return max(sum(c for t, c in gone if start <= t <= start + window_s) for start, _ in gone)


@pytest.mark.server
def test_two_processes_sharing_a_request_bucket_never_take_more_than_the_cap(crawl: str) -> None:
    # 1200/min = 20/s with a burst of 20: 60 requests in about 2 s. Two unshared limiters would let 40
    # go at once and 80 in a second.
    gone = _two_processes(bucket_key(crawl, "openai:m"), 1200, None, [1] * 30)
    for window in (0.5, 1.0, 2.0):
        # +1: a process that wakes late bunches its request with the next one's.
        assert _most_in_a_window(gone, window) <= wait_bound(1200, window, 1.0) + 1, window
    assert gone[-1][0] - gone[0][0] >= (60 - 20) / 20 * 0.9  # the cap, not less: the shared rate


@pytest.mark.server
def test_two_processes_sharing_a_token_bucket_never_take_more_than_the_cap(crawl: str) -> None:
    # 600k/min = 10k tokens/s with a burst of 10k: 2 x 40 requests of 150-350 tokens (20k) in about 1 s.
    costs = [150 + 50 * (i % 5) for i in range(40)]
    gone = _two_processes(bucket_key(crawl, "openai:m"), None, 600_000, costs)
    for window in (0.25, 0.5):
        assert _most_in_a_window(gone, window) <= wait_bound(600_000, window, 1.0, max(costs)) + max(costs)
    assert gone[-1][0] - gone[0][0] >= (2 * sum(costs) - 10_000 - max(costs)) / 10_000 * 0.9


@pytest.mark.server
def test_the_bucket_refills_at_the_rate(crawl: str) -> None:
    limiter = RedisRateLimiter(bucket_key(crawl, "openai:m"), 600, None, url=URL)  # 10/s, burst 10
    assert sum(limiter.acquire(1) for _ in range(10)) < 0.1  # the burst
    assert 0.05 <= limiter.acquire(1) <= 0.5  # then one each 0.1 s
    time.sleep(1.1)  # a second refills the whole burst
    started = time.monotonic()
    for _ in range(10):
        limiter.acquire(1)
    assert time.monotonic() - started < 0.1


@pytest.mark.server
def test_a_large_request_waits_for_its_whole_cost_and_none_starves(crawl: str) -> None:
    limiter = RedisRateLimiter(bucket_key(crawl, "t"), None, 60_000, url=URL)  # 1000 tokens/s, burst 1000
    assert limiter.acquire(1000) < 0.05
    assert 0.4 <= limiter.acquire(500) <= 0.8  # the bucket must hold all 500 first
    assert 0.9 <= limiter.acquire(1000) <= 1.4  # and a reservation after it waits its own turn


@pytest.mark.server
def test_keys_are_namespaced_by_crawl_and_model_and_expire(
    crawl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    monkeypatch.setenv("WEBVEC_LIMITS", URL)
    monkeypatch.setattr(limits_module, "KEY_SLACK_S", 0.3)
    limiter = SharedLimits(crawl, "WEBVEC_LIMITS").limiter(
        "openai:text-embedding-3-small", 600, 60_000, burst_s=1
    )
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.key == f"webvec-ratelimit:{crawl}:openai:text-embedding-3-small"
    other = SharedLimits(f"{crawl}-b", "WEBVEC_LIMITS").limiter(
        "openai:text-embedding-3-small", 600, 60_000, burst_s=1
    )
    for _ in range(10):
        limiter.acquire(100)  # crawl's bucket is empty; the other crawl's is untouched
    assert other.acquire(100) < 0.05
    client = redis.Redis.from_url(URL)
    try:
        ttl = client.pttl(limiter.key)
        assert 0 < ttl <= (1.0 + 0.3) * 1000 + 50  # until full again (1 s) plus the slack
        time.sleep(ttl / 1000 + 0.2)
        assert not client.exists(limiter.key)  # an idle crawl leaves nothing behind
        assert limiter.acquire(100) < 0.05  # and an expired bucket is a full one
    finally:
        client.delete(bucket_key(f"{crawl}-b", "openai:text-embedding-3-small"))
        client.close()


@pytest.mark.server
def test_a_pause_and_a_slow_down_reach_every_worker(crawl: str) -> None:
    key = bucket_key(crawl, "openai:m")
    one = RedisRateLimiter(key, 6000, None, url=URL)
    two = RedisRateLimiter(key, 6000, None, url=URL)
    one.pause(0.3)  # one got a 429 saying "retry after 0.3 s"
    assert 0.25 <= two.acquire(1) <= 0.6
    one.slow_down()
    assert two.factor == 0.5
    two.recover()
    assert one.factor == pytest.approx(0.55)


def test_an_unreachable_redis_is_a_transient_error_naming_the_variable() -> None:
    limiter = RedisRateLimiter("k", 60, None, url="redis://:s3cret-pw@127.0.0.1:1/0", setting="WEBVEC_LIMITS")
    with pytest.raises(TransientError) as info:
        limiter.acquire(1)
    assert "WEBVEC_LIMITS" in str(info.value) and "s3cret" not in str(info.value)


def test_an_unset_redis_variable_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBVEC_LIMITS", raising=False)
    with pytest.raises(ConfigError, match="WEBVEC_LIMITS is not set"):
        SharedLimits("docs", "WEBVEC_LIMITS").limiter("openai:m", 60, 600, burst_s=1)


def test_without_redis_each_worker_keeps_its_share_of_the_caps() -> None:
    assert split_cap(3000, 2) == 1500 and split_cap(1_000_000, 3) == 333_333 and split_cap(None, 4) is None
    assert split_cap(2, 4) == 1  # the floor of a share
    limiter = SharedLimits("docs", None, workers=2).limiter("openai:m", 120, 20_000, burst_s=1)
    assert isinstance(limiter, RateLimiter)
    # The buckets hold the halves: 1 request/s and 10k tokens/min (capacity: a second's refill, ≥ 1).
    assert [(what, round(rate * 60)) for what, rate, _ in limiter._buckets] == [
        ("requests", 60),
        ("tokens", 10_000),
    ]


def _crawl(**scale: Any) -> Any:
    return parse_crawl(
        {
            "name": "docs",
            "source": {"start_urls": ["https://example.org/"]},
            "state": {"url_env": "WEBVEC_STATE_URL"},
            "embedder": {"kind": "openai"},
            "store": {"kind": "chroma", "host": "127.0.0.1", "port": 8000},
            "scale": scale,
        },
        "crawls/docs.yaml",
    )


def test_a_crawl_picks_its_limits_from_its_scale_section() -> None:
    assert shared_limits(_crawl(), 4) is None  # threads: the one process keeps the caps, as always
    assert shared_limits(_crawl(task_runner="dask"), 3) == SharedLimits("docs", None, 3)
    frontier = _crawl(task_runner="dask", frontier_url_env="WEBVEC_FRONTIER")
    assert shared_limits(frontier, 3) == SharedLimits("docs", "WEBVEC_FRONTIER", 3)
    own = _crawl(task_runner="dask", frontier_url_env="WEBVEC_FRONTIER", limits_url_env="WEBVEC_LIMITS")
    assert shared_limits(own, 3) == SharedLimits("docs", "WEBVEC_LIMITS", 3)
    with pytest.raises(ConfigError, match="limits_url_env is set but task_runner is threads") as info:
        _crawl(limits_url_env="WEBVEC_LIMITS")
    assert "\n" not in str(info.value)


def test_the_openai_embedder_takes_the_shared_bucket_of_its_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBVEC_LIMITS", URL)
    embedder = OpenAIEmbedder(OpenAIEmbedderConfig(kind="openai", requests_per_minute=100))
    assert isinstance(embedder.limiter, RateLimiter)  # its own, until told to share
    embedder.share_limits(SharedLimits("docs", "WEBVEC_LIMITS"))
    assert isinstance(embedder.limiter, RedisRateLimiter)
    assert embedder.limiter.key == "webvec-ratelimit:docs:openai:text-embedding-3-small"
    elsewhere = OpenAIEmbedder(OpenAIEmbedderConfig(kind="openai", base_url="http://127.0.0.1:9/v1"))
    elsewhere.share_limits(SharedLimits("docs", "WEBVEC_LIMITS"))
    assert isinstance(elsewhere.limiter, RedisRateLimiter)
    assert elsewhere.limiter.key.startswith("webvec-ratelimit:docs:openai:text-embedding-3-small@")
