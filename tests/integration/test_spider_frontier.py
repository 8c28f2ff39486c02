"""``scale.spiders: 2``: two spider processes sharing one Redis frontier, against a counting site.

Redis comes from ``WEBVEC_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); each test uses its
own crawl name and run id, so its keys (``webvec:{crawl}:{run_id}:*``) are its own, and checks they are
gone when the run's crawl is over. Skipped only when Redis does not answer.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.config import parse_crawl
from ingest.run import WHOLE_SITE
from ingest.state import StateDB
from spiders.process import FrontierCrawl, SpiderCrawler, SpiderRun
from spiders.run import SPIDER_NICE
from tests.servers.fault_site import FaultSite, Reply

pytestmark = pytest.mark.slow

REDIS_ENV = "WEBVEC_TEST_REDIS_URL"
FRONTIER_ENV = "WEBVEC_TEST_FRONTIER"  # the variable the crawl's scale.frontier_url_env names
DELAY = 0.3
SLACK = 0.1  # a request is noted when the server's handler thread runs, a little after it arrived
PAGES = [f"/p{i}.html" for i in range(10)]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis; skip when it does not answer."""
    import redis

    url = os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_ENV} ({url}) does not answer: {type(exc).__name__}")
    yield url
    client.close()


@pytest.fixture
def site() -> Iterator[FaultSite]:
    """Every page links to every other (each link is found by both spiders), plus one robots.txt
    forbids."""
    routes: dict[str, Reply] = {
        "/robots.txt": Reply.text("User-agent: *\nDisallow: /private.html\n"),
        "/": Reply.page("Home", *PAGES, "/private.html"),
    }
    for path in PAGES:
        routes[path] = Reply.page(path, "/", *PAGES, "/private.html")
    with FaultSite(routes) as server:
        yield server


def write_crawl(folder: Path, start_url: str, name: str, **source: Any) -> Path:
    data = {
        "name": name,
        "state": {"url": f"sqlite:///{folder / 'state.db'}"},
        "source": {"start_urls": [start_url], "allow_private_networks": True, **source},
        "scale": {"spiders": 2, "frontier_url_env": FRONTIER_ENV},
    }
    path = folder / "crawl.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def start(config: Path, run_id: str, redis_url: str, home: Path) -> FrontierCrawl:
    environ = {**os.environ, FRONTIER_ENV: redis_url, "WEBVEC_HOME": str(home)}
    state_url = parse_crawl(yaml.safe_load(config.read_text())).state_url()
    StateDB(state_url).close()  # created before the spiders share it
    handle = SpiderCrawler(environ).start(
        config, run_id, page_store=state_url, mode=WHOLE_SITE, dry_run=False
    )
    assert isinstance(handle, FrontierCrawl)
    return handle


def rows(config: Path, run_id: str) -> Counter[str]:
    """How many rows each URL has in the run's page store."""
    state = StateDB(parse_crawl(yaml.safe_load(config.read_text())).state_url())
    try:
        return Counter(row.url for row in state.fetched_after(run_id, limit=100_000))
    finally:
        state.close()


def keys_left(redis_url: str, crawl: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return list(client.scan_iter(match=f"webvec:{crawl}:*"))
    finally:
        client.close()


def test_two_spiders_fetch_each_page_once_politely_and_clear_the_frontier(
    tmp_path: Path, site: FaultSite, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBVEC_HOME", str(tmp_path / "home"))
    crawl = f"frontier-{uuid.uuid4().hex[:8]}"
    config = write_crawl(tmp_path, site.url, crawl, concurrency=1, download_delay=DELAY)
    run_id = "run1"
    stats = start(config, run_id, redis_url, tmp_path / "home").result()

    assert stats.complete, stats.raw
    assert stats.raw["spiders"] == 2 and stats.raw["spiders_lost"] == 0
    assert stats.raw["pages_stored"] == len(PAGES) + 1
    # Every page fetched exactly once across both spiders; the disallowed one never.
    for path in ["/", *PAGES]:
        assert site.count(path) == 1, (path, site.count(path))
    assert site.count("/private.html") == 0
    # robots.txt is read by each process (its parser lives in the process): at most once per spider.
    assert 1 <= site.count("/robots.txt") <= 2
    # Both spiders did work (the queue is shared, not one process crawling alone).
    logs = tmp_path / "home" / "logs"
    per_worker = [
        yaml.safe_load((logs / f"{run_id}.stats{suffix}.json").read_text()) for suffix in ("", "-1")
    ]
    assert all(one["pages_stored"] > 0 for one in per_worker), [w["pages_stored"] for w in per_worker]
    # Politeness for the whole crawl: concurrency 1 and DELAY between any two requests, from either.
    arrivals = sorted(hit.at for hit in site.hits)
    assert min(b - a for a, b in pairwise(arrivals)) >= DELAY - SLACK
    # One row per page in the page store, and the run's frontier keys are gone.
    counts = rows(config, run_id)
    assert max(counts.values()) == 1
    assert {url.removeprefix(site.url.rstrip("/")) for url in counts} >= {"/", *PAGES}
    assert keys_left(redis_url, crawl) == []


def test_a_killed_spider_loses_nothing_and_a_rerun_converges(
    tmp_path: Path, site: FaultSite, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBVEC_HOME", str(tmp_path / "home"))
    crawl = f"frontier-{uuid.uuid4().hex[:8]}"
    config = write_crawl(tmp_path, site.url, crawl, concurrency=1, download_delay=DELAY)
    handle = start(config, "run1", redis_url, tmp_path / "home")
    deadline = time.monotonic() + 60
    while sum(site.count(p) for p in PAGES) < 3:  # mid-run: the shared queue is busy
        assert time.monotonic() < deadline, "the crawl did not start"
        time.sleep(0.05)
    os.kill(handle.runs[1].pid, signal.SIGKILL)
    stats = handle.result()

    assert stats.complete, stats.raw
    assert stats.raw["spiders_lost"] == 1
    # Every page reached; what the killed process held in flight was fetched again by the other
    # (one request at most: concurrency 1 takes one request off the queue at a time).
    fetched = {path: site.count(path) for path in ["/", *PAGES]}
    assert min(fetched.values()) >= 1, fetched
    assert sum(fetched.values()) - len(fetched) <= 1, fetched
    assert site.count("/private.html") == 0
    stored = rows(config, "run1")
    assert {url.removeprefix(site.url.rstrip("/")) for url in stored} >= {"/", *PAGES}
    assert keys_left(redis_url, crawl) == []

    # A re-run (a new run id, nothing killed) converges: every page once more, exactly once.
    before = {path: site.count(path) for path in ["/", *PAGES]}
    again = start(config, "run2", redis_url, tmp_path / "home").result()
    assert again.complete, again.raw
    assert {path: site.count(path) - before[path] for path in before} == dict.fromkeys(before, 1)
    assert max(rows(config, "run2").values()) == 1
    assert keys_left(redis_url, crawl) == []


def _wait_for(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_lone_spider_runs_below_the_run_s_priority_and_frontier_spiders_do_not(
    tmp_path: Path, site: FaultSite, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBVEC_HOME", str(tmp_path / "home"))
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    # One spider (no scale section): its pages wait in the page store while the stages after it,
    # which feed the embedder, get the CPU first.
    lone = tmp_path / "lone"
    lone.mkdir()
    config = lone / "crawl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": f"lone-{uuid.uuid4().hex[:8]}",
                "state": {"url": f"sqlite:///{lone / 'state.db'}"},
                "source": {"start_urls": [site.url], "allow_private_networks": True, "download_delay": 1.0},
            }
        )
    )
    before = site.count("/")
    handle = SpiderCrawler().start(
        config, "run1", page_store=f"sqlite:///{lone / 'state.db'}", mode=WHOLE_SITE, dry_run=False
    )
    assert isinstance(handle, SpiderRun)
    try:
        _wait_for(lambda: site.count("/") > before, "the lone spider fetched nothing")
        assert os.getpriority(os.PRIO_PROCESS, handle.pid) == min(19, ours + SPIDER_NICE)
    finally:
        handle.stop()
    # The processes of a shared frontier time their politeness across processes: they keep ours.
    crawl = f"frontier-{uuid.uuid4().hex[:8]}"
    shared = start(
        write_crawl(tmp_path, site.url, crawl, download_delay=DELAY), "run2", redis_url, tmp_path / "home"
    )
    try:
        _wait_for(lambda: site.count("/") > before + 1, "the shared spiders fetched nothing")
        first = shared.runs[0]
        assert isinstance(first, SpiderRun)
        assert os.getpriority(os.PRIO_PROCESS, first.pid) == ours
    finally:
        shared.stop()
    assert keys_left(redis_url, crawl) == []
