"""Politeness under faults: ``python -m spiders.run`` against fault sites on 127.0.0.1.

robots.txt failures (RFC 9309: 5xx or no answer disallows the host, 4xx allows everything, five
redirects are followed), Crawl-delay within and above ``source.max_crawl_delay``, and retries:
Retry-After (seconds and HTTP date) pausing the whole host, over-the-cap Retry-After failing the page,
exponential backoff without it, and the failed pages in the stats file.

Waits are checked from the server's side: the gap between two requests it received must be at least
what was asked (a lower bound holds however slow the machine is; no upper bound is asserted).
"""

from __future__ import annotations

import email.utils
import json
import math
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.config import parse_crawl
from ingest.state import FetchedPage, StateDB
from tests.conftest import REPO
from tests.servers.fault_site import FaultSite, Reply

pytestmark = pytest.mark.slow

CRAWL = "politeness"
# Slack of a lower bound measured at the server: a request is noted when its handler thread runs, which
# on a loaded machine can lag by a fraction of a second, and shrinks the gap to the next request by as
# much. The bounds stay far above what the old code did (retries at once, 0.25 s AutoThrottle delays).
SLACK = 0.2


def write_crawl(folder: Path, start_urls: list[str], **source: Any) -> Path:
    """A crawl definition whose state DB lives in ``folder`` (private networks allowed)."""
    data = {
        "name": CRAWL,
        "state": {"url": f"sqlite:///{folder / 'state.db'}"},
        "source": {"start_urls": start_urls, "allow_private_networks": True, **source},
    }
    path = folder / "crawl.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def crawl(config: Path, run_id: str = "run") -> tuple[dict[str, Any], dict[str, FetchedPage]]:
    """Run the spider subprocess; return its stats and its rows keyed by URL."""
    stats_file = config.parent / f"stats-{run_id}.json"
    command = [sys.executable, "-m", "spiders.run", "--crawl", str(config), "--run-id", run_id]
    proc = subprocess.run(
        [*command, "--stats-file", str(stats_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = StateDB(parse_crawl(yaml.safe_load(config.read_text())).state_url())
    try:
        rows = state.fetched_after(run_id, limit=100_000)
    finally:
        state.close()
    return json.loads(stats_file.read_text()), {row.url: row for row in rows}


def gaps(times: list[float]) -> list[float]:
    """Differences between consecutive times."""
    return [b - a for a, b in pairwise(times)]


# -- robots.txt failures ---------------------------------------------------------------------------


def test_unreachable_robots_txt_disallows_its_host_and_4xx_allows_all(tmp_path: Path) -> None:
    home = Reply.page("Home", "/a.html")
    page = Reply.page("A")
    hops = {f"/r{i}": Reply.redirect(f"/r{i + 1}") for i in range(1, 6)}  # /robots.txt -> /r1 -> ... /r6
    sites = {
        "503": FaultSite({"/robots.txt": Reply.text("busy", 503), "/": home, "/a.html": page}),
        "reset": FaultSite({"/robots.txt": Reply.reset(), "/": home, "/a.html": page}),
        "timeout": FaultSite({"/robots.txt": Reply.hang(), "/": home, "/a.html": page}),
        "404": FaultSite(
            {"/robots.txt": Reply.text("no such file", 404), "/": home, "/a.html": Reply.reset()}
        ),
        # Five redirects are followed (RFC 9309 §2.3.1.2): the rules at the end apply...
        "5 redirects": FaultSite(
            {
                "/robots.txt": Reply.redirect("/r1"),
                **hops,
                "/r5": Reply.text("User-agent: *\nDisallow: /a.html\n"),
                "/": home,
                "/a.html": page,
            }
        ),
        # ...a sixth is not: robots.txt is then "unavailable", like a 404 (RFC 9309 §2.3.1.2, Google).
        "6 redirects": FaultSite(
            {
                "/robots.txt": Reply.redirect("/r1"),
                **hops,
                "/r6": Reply.text("User-agent: *\nDisallow: /\n"),
                "/": home,
                "/a.html": page,
            }
        ),
    }
    for site in sites.values():
        site.start()
    try:
        config = write_crawl(tmp_path, [s.url for s in sites.values()], download_timeout=1)
        stats, rows = crawl(config)
    finally:
        for site in sites.values():
            site.stop()

    causes = {
        "503": "http 503 after 3 attempts",
        "reset": "connection lost (reset or closed by the server) after 3 attempts",
        "timeout": "timed out (source.download_timeout) after 3 attempts",
    }
    for name, cause in causes.items():
        site = sites[name]
        assert site.count("/robots.txt") == 3, name  # retried, as for any request
        assert [hit.path for hit in site.hits] == ["/robots.txt"] * 3, f"{name}: a page was requested"
        row = rows[site.url]
        assert row.body is None and row.status == 0
        assert row.skip_reason == (
            f"robots.txt unreachable: {cause}; the host {site.netloc} is fully disallowed for this run "
            "(RFC 9309)"
        )
    assert stats["robots_unreachable"] == 3
    assert {h["host"] for h in stats["skipped_hosts"]} == {sites[n].netloc for n in causes}
    assert stats["complete"] is False  # their pages were not visited: nothing may be taken for gone

    # 404: no rules, everything allowed; its failing page is a failed row, not a robots refusal.
    missing = sites["404"]
    assert missing.count("/robots.txt") == 1
    assert rows[missing.url].body is not None
    assert rows[missing.url + "a.html"].skip_reason == (
        "connection lost (reset or closed by the server) after 3 attempts"
    )
    assert stats["failed_pages"] == 1
    assert stats["failed"] == [
        {"url": missing.url + "a.html", "reason": rows[missing.url + "a.html"].skip_reason}
    ]

    five = sites["5 redirects"]
    assert [five.count(f"/r{i}") for i in range(1, 6)] == [1] * 5
    assert rows[five.url].body is not None
    assert five.count("/a.html") == 0
    assert rows[five.url + "a.html"].skip_reason == "disallowed by robots.txt"
    six = sites["6 redirects"]
    assert [six.count(f"/r{i}") for i in range(1, 7)] == [1] * 5 + [0]
    assert rows[six.url].body is not None and rows[six.url + "a.html"].body is not None


def test_every_request_waiting_for_robots_txt_gets_its_rules(tmp_path: Path) -> None:
    # Scrapy 2.19's RobotsTxtMiddleware awaits one shared Deferred from every waiting request; the
    # first consumes the parser and the others get None, i.e. "allowed". Four start URLs wait at once.
    site = FaultSite(
        {
            "/robots.txt": Reply.text(
                "User-agent: *\nDisallow: /b.html\nDisallow: /c.html\nDisallow: /d.html\n"
            ),
            **{f"/{name}.html": Reply.page(name) for name in "abcd"},
        }
    )
    with site:
        config = write_crawl(tmp_path, [f"{site.url}{name}.html" for name in "abcd"])
        stats, rows = crawl(config)
    assert [hit.path for hit in site.hits] == ["/robots.txt", "/a.html"]
    assert [rows[f"{site.url}{name}.html"].skip_reason for name in "bcd"] == ["disallowed by robots.txt"] * 3
    assert stats["robots_disallowed"] == 3


# -- Crawl-delay ---------------------------------------------------------------------------------


def test_crawl_delay_is_honoured_and_a_host_asking_too_much_is_skipped(tmp_path: Path) -> None:
    paced = FaultSite(
        {
            "/robots.txt": Reply.text("User-agent: *\nCrawl-delay: 1\n"),
            "/": Reply.page("Home", "/a.html", "/b.html", "/c.html"),
            "/a.html": Reply.page("A"),
            "/b.html": Reply.page("B"),
            "/c.html": Reply.page("C"),
        }
    )
    greedy = FaultSite(
        {"/robots.txt": Reply.text("User-agent: *\nCrawl-delay: 5\n"), "/": Reply.page("Greedy")}
    )
    with paced, greedy:
        config = write_crawl(tmp_path, [paced.url, greedy.url], max_crawl_delay=2)
        stats, rows = crawl(config)

    pages = [hit.at for hit in paced.hits if hit.path != "/robots.txt"]
    assert len(pages) == 4
    assert all(gap >= 1 - SLACK for gap in gaps(pages)), gaps(pages)
    assert {url for url, row in rows.items() if row.body is not None} == {
        paced.url,
        paced.url + "a.html",
        paced.url + "b.html",
        paced.url + "c.html",
    }

    assert [hit.path for hit in greedy.hits] == ["/robots.txt"]
    assert rows[greedy.url].body is None
    assert rows[greedy.url].skip_reason == (
        f"crawl-delay too long: robots.txt of {greedy.netloc} asks 5 s between requests, "
        "over source.max_crawl_delay (2 s)"
    )
    assert stats["crawl_delay"] == 1
    assert stats["skipped_hosts"] == [{"host": greedy.netloc, "reason": rows[greedy.url].skip_reason}]
    assert stats["complete"] is False


# -- retries: Retry-After, backoff, failed pages -------------------------------------------------


def test_retry_after_pauses_the_host_and_backoff_spaces_out_retries(tmp_path: Path) -> None:
    retry_at: list[float] = []  # the HTTP date /b asked for, as a timestamp

    def http_date(now: float) -> str:  # 1 to 2 s ahead (HTTP dates have whole seconds)
        retry_at.append(math.floor(now) + 2)
        return email.utils.formatdate(retry_at[-1], usegmt=True)

    # A second host asks for more than source.max_retry_after; its other page is found later, on /a.
    away = FaultSite(
        {
            "/robots.txt": Reply.text("User-agent: *\nAllow: /\n"),
            "/now.html": Reply(503, "down for maintenance", {"Retry-After": "100"}),
            "/later.html": Reply.page("Later"),
        }
    )
    site = FaultSite(
        {
            "/robots.txt": Reply.text("User-agent: *\nAllow: /\n"),
            "/": Reply.page("Home", "/a.html", "/b.html", "/c.html"),
            "/a.html": [
                Reply(429, "slow down", {"Retry-After": "2"}),
                Reply.page("A", away.url + "later.html"),
            ],
            "/b.html": [Reply(503, "maintenance", {"Retry-After": http_date}), Reply.page("B")],
            "/c.html": Reply(503, "overloaded"),
        }
    )
    with site, away:
        # One request at a time, so "nothing reached the host while it was paused" is exact.
        config = write_crawl(tmp_path, [site.url, away.url + "now.html"], concurrency=1, max_retry_after=2)
        stats, rows = crawl(config)

    # 429 + Retry-After: 2 -> the retry comes at least 2 s later...
    first_a, second_a = site.times("/a.html")
    assert second_a - first_a >= 2 - SLACK
    assert rows[site.url + "a.html"].body is not None
    # ...and the whole host waits: at most the one request the slot had already sent arrives meanwhile.
    during = [hit.path for hit in site.hits if first_a < hit.at < first_a + 2 - SLACK]
    assert len(during) <= 1, during

    # 503 + Retry-After as an HTTP date: not retried before that date.
    b_hits = [hit for hit in site.hits if hit.path == "/b.html"]
    assert len(b_hits) == 2 and len(retry_at) == 1
    assert b_hits[1].wall >= retry_at[0] - SLACK
    assert rows[site.url + "b.html"].body is not None

    # 503 without Retry-After: three attempts, backoff of at least 0.5 s then 1 s (equal jitter of 1, 2 s).
    c_gaps = gaps(site.times("/c.html"))
    assert len(c_gaps) == 2
    assert c_gaps[0] >= 0.5 - SLACK and c_gaps[1] >= 1 - SLACK, c_gaps
    assert rows[site.url + "c.html"].skip_reason == "http 503 after 3 attempts"

    # Retry-After over source.max_retry_after: not retried, the page fails with both numbers, and the
    # host's page found afterwards is not requested while the server asked to be left alone.
    assert [hit.path for hit in away.hits] == ["/robots.txt", "/now.html"]
    now_reason = "http 503: server asks to retry after 100 s, over source.max_retry_after (2 s)"
    assert rows[away.url + "now.html"].skip_reason == now_reason
    later_reason = (
        f"not requested: {away.netloc} answered http 503 asking to retry after 100 s, "
        "over source.max_retry_after (2 s)"
    )
    assert rows[away.url + "later.html"].skip_reason == later_reason

    assert stats["failed_pages"] == 3 and stats["errors"] == 3
    assert {(f["url"], f["reason"]) for f in stats["failed"]} == {
        (site.url + "c.html", "http 503 after 3 attempts"),
        (away.url + "now.html", now_reason),
        (away.url + "later.html", later_reason),
    }
    assert stats["complete"] is False
