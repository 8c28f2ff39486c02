"""The shared frontier's Redis steps (spiders.frontier) and the merged stats of its processes.

Redis from ``WEBVEC_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); each test has its own
crawl name, and deletes its keys. Skipped only when Redis does not answer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from spiders.frontier import Frontier
from spiders.process import merge_stats


@pytest.fixture
def frontiers() -> Iterator[tuple[Frontier, Frontier]]:
    """Workers 0 and 1 of one run, on keys of their own."""
    import redis

    url = os.environ.get("WEBVEC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    crawl = f"unit-{uuid.uuid4().hex[:8]}"
    try:
        one = Frontier.connect(url, crawl, "run", 0, 2)
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis at WEBVEC_TEST_REDIS_URL ({url}) does not answer: {type(exc).__name__}")
    two = Frontier(one.client, crawl, "run", 1, 2)
    yield one, two
    one.clear()
    assert not list(one.client.scan_iter(match=f"webvec:{crawl}:*"))
    one.client.close()


def test_a_taken_request_is_in_flight_until_done_and_a_dead_workers_go_back(
    frontiers: tuple[Frontier, Frontier],
) -> None:
    zero, one = frontiers
    zero.mark_seeded()
    client = zero.client
    client.zadd(zero.keys.queue, {b"a": -1, b"b\x00 binary": 0})
    assert not zero.drained()
    assert one.pop("t1") == b"a"  # the highest priority first
    assert zero.pop("t2") == b"b\x00 binary"
    assert zero.pop("t3") is None
    assert zero.queue_length() == 0 and zero.in_flight() == 2 and not zero.drained()
    zero.done("t2")
    assert one.requeue(1) == 1  # worker 1 died holding "a"
    assert client.zrange(zero.keys.queue, 0, -1, withscores=True) == [(b"a", -1.0)]
    assert zero.pop("t4") == b"a"
    zero.done("t4")
    assert zero.drained()


def test_leases_space_a_host_and_a_dead_workers_are_given_back(frontiers: tuple[Frontier, Frontier]) -> None:
    zero, one = frontiers
    first = zero.acquire("h", zero.lease_token("a"), limit=2, delay=10.0, lease=60.0)
    second = one.acquire("h", one.lease_token("b"), limit=2, delay=10.0, lease=60.0)
    assert first == 0.0
    assert second is not None and 9.0 < second <= 10.0  # ten seconds after the first, whoever asks
    assert zero.acquire("h", zero.lease_token("c"), limit=2, delay=10.0, lease=60.0) is None  # two out
    assert one.release_leases(1) == 1
    assert zero.acquire("h", zero.lease_token("c"), limit=2, delay=10.0, lease=60.0) is not None


def test_merged_stats_are_complete_only_when_drained_and_every_survivor_was() -> None:
    a = {"complete": True, "finish_reason": "finished", "pages_stored": 3, "failed": [{"url": "x"}]}
    b = {"complete": True, "finish_reason": "finished", "pages_stored": 4, "failed": []}
    merged = merge_stats([a, b], workers=3, lost=1, drained=True)
    assert merged["complete"] and merged["pages_stored"] == 7 and merged["failed"] == [{"url": "x"}]
    assert merged["spiders"] == 3 and merged["spiders_lost"] == 1
    assert not merge_stats([a, b], workers=2, lost=0, drained=False)["complete"]
    c = {**b, "complete": False, "finish_reason": "max_pages"}
    assert merge_stats([a, c], workers=2, lost=0, drained=True)["finish_reason"] == "max_pages"
