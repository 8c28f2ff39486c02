"""Backfills through the spider: ``python -m spiders.run --sitemap-only [--sitemaps URL...] [--since DAY]``
and ``--urls`` against sites on 127.0.0.1, then whole backfill runs (``run_ingest`` with a
:class:`~ingest.run.CrawlMode`, and ``backfill_flow`` under a Prefect test server).

The sites answer from a dict (:class:`Site`), so a test can serve gzip, redirects, a body that
announces 60 MB, and count every request it got.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.config import parse_crawl
from ingest.errors import ConfigError
from ingest.run import CrawlMode, RunFailed, run_ingest
from ingest.state import StateDB
from spiders.process import SpiderCrawler
from spiders.settings import WEBVEC_SITEMAP_MAXSIZE
from tests.conftest import REPO
from tests.integration.conftest import run_spider

pytestmark = pytest.mark.slow

CRAWL = "backfilltest"
Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


def page(title: str, *links: str) -> str:
    """A small HTML page with some text (so extraction keeps it) linking to ``links``."""
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    text = f"{title} is a page of the backfill test site, with a paragraph long enough to be kept. " * 3
    return (
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p>{anchors}</body></html>"
    )


def urlset(*entries: tuple[str, str | None]) -> str:
    """A sitemap urlset of ``(loc, lastmod)`` entries."""
    rows = "".join(
        f"<url><loc>{loc}</loc>{f'<lastmod>{lastmod}</lastmod>' if lastmod else ''}</url>\n"
        for loc, lastmod in entries
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{rows}</urlset>\n'


def index(*locs: str) -> str:
    """A sitemap index of ``locs``."""
    rows = "".join(f"<sitemap><loc>{loc}</loc></sitemap>\n" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{rows}</sitemapindex>\n'


def _content_type(path: str) -> str:
    if path.endswith(".gz"):
        return "application/gzip"
    if path.endswith(".xml"):
        return "application/xml"
    return "text/plain" if path.endswith(".txt") else "text/html; charset=utf-8"


class Site:
    """An HTTP server on 127.0.0.1 answering from ``files``: path → body, or (status, headers, body).

    ``requests`` counts the paths asked for; ``url`` is the base URL (``http://127.0.0.1:PORT/``).
    """

    def __init__(self) -> None:
        self.files: dict[str, str | bytes | Answer] = {}
        self.requests: Counter[str] = Counter()
        site, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                with lock:
                    site.requests[self.path] += 1
                found = site.files.get(self.path)
                if found is None:
                    found = (404, {"Content-Type": "text/plain"}, b"not found")
                elif not isinstance(found, tuple):
                    body = found.encode() if isinstance(found, str) else found
                    found = (200, {"Content-Type": _content_type(self.path)}, body)
                status, headers, body = found
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A spider that hung up (a body it refused, a closed spider) is not a test failure.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    """A site with pages a–d, p1–p3, a urlset, an index (a gzipped child, itself again) and a robots.txt."""
    s = Site()
    base = s.url
    s.files.update(
        {
            "/": page("Home", "/a.html"),
            "/a.html": page("A", "/z.html"),  # never followed
            "/b.html": page("B"),
            "/c.html": page("C"),
            "/d.html": page("D"),
            "/z.html": page("Z"),
            "/p1.html": page("P1"),
            "/p2.html": page("P2"),
            "/p3.html": page("P3"),
            "/pages.xml": urlset(
                (base + "a.html", "2026-10-31"),
                (base + "b.html#frag", "2026-11-01"),
                (base + "c.html?utm_source=x", "2026-10-31T23:30:00-02:00"),  # 01:30 UTC on Nov 1
                (base + "d.html", None),
                (base + "a.html", "2026-10-31"),  # listed twice
                ("http://elsewhere.example/e.html", "2026-12-01"),
                ("ftp://127.0.0.1/f.html", "2026-12-01"),
            ),
            "/index.xml": index(
                base + "part1.xml", base + "part2.xml.gz", base + "index.xml", base + "part1.xml"
            ),
            "/part1.xml": urlset((base + "p1.html", "2025-01-01")),
            "/part2.xml.gz": gzip.compress(
                urlset((base + "p2.html", "2026-11-05"), (base + "p3.html", "2026-01-05")).encode()
            ),
            "/robots.txt": f"User-agent: *\nDisallow:\n\nSitemap: {base}index.xml\n",
        }
    )
    yield s
    s.stop()


def crawl_yaml(folder: Path, start_url: str, name: str = CRAWL, **source: Any) -> Path:
    """A crawl definition in ``folder`` (private networks allowed unless overridden); its state DB is
    under the test's own $WEBVEC_HOME."""
    data = {
        "name": name,
        "source": {"start_urls": [start_url], "allow_private_networks": True, **source},
        "embedder": {"kind": "local"},
        "store": {"kind": "chroma"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def stored(config: Path, run_id: str) -> list[str]:
    """Paths of the pages a spider run stored with a body, sorted."""
    state = StateDB(parse_crawl(yaml.safe_load(config.read_text())).state_url())
    try:
        rows = state.fetched_after(run_id, limit=10_000)
    finally:
        state.close()
    return sorted("/" + row.url.split("/", 3)[3] for row in rows if row.body is not None)


# -- the spider's sitemap-only mode -------------------------------------------------------------------


def test_urlset_pages_are_canonical_deduplicated_and_on_the_allowed_domains(
    site: Site, tmp_path: Path
) -> None:
    config = crawl_yaml(tmp_path, site.url)
    stats = run_spider(config, "all", "--sitemap-only", "--sitemaps", site.url + "pages.xml")
    assert stored(config, "all") == ["/a.html", "/b.html", "/c.html", "/d.html"]
    assert stats["mode"] == "sitemap-only" and stats["offsite_links"] == 1 and stats["sitemap_failed"] == []
    assert "/z.html" not in site.requests and "/" not in site.requests  # no link followed, no start URL
    assert site.requests["/a.html"] == 1


def test_since_keeps_pages_modified_on_or_after_the_day(site: Site, tmp_path: Path) -> None:
    config = crawl_yaml(tmp_path, site.url)
    stats = run_spider(
        config, "since", "--sitemap-only", "--sitemaps", site.url + "pages.xml", "--since", "2026-11-01"
    )
    # a.html is older (twice listed), d.html has no <lastmod>; c.html's date is Nov 1 in UTC.
    assert stored(config, "since") == ["/b.html", "/c.html"]
    assert stats["sitemap_older"] == 2 and stats["sitemap_undated"] == 1
    assert "/a.html" not in site.requests and "/d.html" not in site.requests


def test_sitemap_index_with_a_gzipped_child_and_itself(site: Site, tmp_path: Path) -> None:
    config = crawl_yaml(tmp_path, site.url)
    stats = run_spider(config, "index", "--sitemap-only", "--sitemaps", site.url + "index.xml")
    assert stored(config, "index") == ["/p1.html", "/p2.html", "/p3.html"]
    assert site.requests["/index.xml"] == 1 and site.requests["/part1.xml"] == 1  # each file read once
    assert stats["sitemap_failed"] == [] and stats["complete"] is True


def test_robots_txt_sitemap_lines_the_crawls_sitemaps_and_the_start_urls_robots_txt(
    site: Site, tmp_path: Path
) -> None:
    for folder in ("given", "own", "fallback"):
        (tmp_path / folder).mkdir()
    given = crawl_yaml(tmp_path / "given", site.url)
    run_spider(given, "robots", "--sitemap-only", "--sitemaps", site.url + "robots.txt")
    assert stored(given, "robots") == ["/p1.html", "/p2.html", "/p3.html"]

    own = crawl_yaml(tmp_path / "own", site.url, sitemaps=[site.url + "robots.txt"])
    stats = run_spider(own, "own", "--sitemap-only", "--since", "2026-11-01")
    assert stored(own, "own") == ["/p2.html"] and stats["sitemap_older"] == 2

    fallback = crawl_yaml(tmp_path / "fallback", site.url + "a.html")  # no sitemaps: robots.txt of the origin
    run_spider(fallback, "fallback", "--sitemap-only", "--since", "2026-01-01")
    assert stored(fallback, "fallback") == ["/p2.html", "/p3.html"]


def test_selection_is_capped_at_max_pages(site: Site, tmp_path: Path) -> None:
    config = crawl_yaml(tmp_path, site.url, max_pages=2)
    stats = run_spider(config, "cap", "--sitemap-only", "--sitemaps", site.url + "pages.xml")
    assert len(stored(config, "cap")) == 2 and stats["limit_reached"] is True


def test_unreadable_sitemaps_are_failures_with_their_reason(site: Site, tmp_path: Path) -> None:
    base = site.url
    bomb = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    bomb += f"<url><loc>{base}b.html</loc></url>".encode() + b" " * (WEBVEC_SITEMAP_MAXSIZE + 1024)
    site.files.update(
        {
            "/robots.txt": "User-agent: *\nDisallow:\n",  # no Sitemap: lines
            "/moved.xml": (302, {"Location": f"http://127.0.0.2:{site.port}/pages.xml"}, b""),
            # Announces more than the cap: refused at the headers.
            "/big.xml": (
                200,
                {"Content-Type": "application/xml", "Content-Length": str(60 * 2**20)},
                b"<urlset>",
            ),
            "/bomb.xml.gz": gzip.compress(bomb, compresslevel=1),
        }
    )
    # 127.0.0.1 is allowed by address; any other private address (a redirect to 127.0.0.2) is not.
    config = crawl_yaml(tmp_path, base, allow_private_networks=False, allow_hosts=["127.0.0.1"])
    sitemaps = ["a.html", "missing.xml", "robots.txt", "moved.xml", "big.xml", "bomb.xml.gz"]
    stats = run_spider(config, "bad", "--sitemap-only", "--sitemaps", *[base + s for s in sitemaps])
    reasons = {f["url"].removeprefix(base): f["reason"] for f in stats["sitemap_failed"]}
    assert reasons == {
        "a.html": "not a sitemap (neither <urlset> nor <sitemapindex>)",
        "missing.xml": "http 404",
        "robots.txt": "no Sitemap: lines in this robots.txt",
        "moved.xml": reasons["moved.xml"],
        "big.xml": f"larger than {WEBVEC_SITEMAP_MAXSIZE} bytes",
        "bomb.xml.gz": f"larger than {WEBVEC_SITEMAP_MAXSIZE} bytes uncompressed",
    }
    assert reasons["moved.xml"].startswith("refused private or loopback address 127.0.0.2")
    assert "reached by a redirect" in reasons["moved.xml"]
    assert stats["sitemap_errors"] == 6 and stats["complete"] is False
    assert stored(config, "bad") == ["/b.html"]  # listed before the bomb went off


def test_private_hosts_are_refused_unless_the_crawl_allows_them(site: Site, tmp_path: Path) -> None:
    config = crawl_yaml(tmp_path, site.url, allow_private_networks=False)
    stats = run_spider(config, "private", "--sitemap-only", "--sitemaps", site.url + "pages.xml")
    assert site.requests == {}  # not even robots.txt
    [failure] = stats["sitemap_failed"]
    assert failure["url"] == site.url + "pages.xml" and "allow_private_networks" in failure["reason"]


def test_bad_mode_arguments_exit_2(tmp_path: Path) -> None:
    config = crawl_yaml(tmp_path, "http://127.0.0.1:9/")
    for extra, expected in (
        (["--since", "2026-11-01"], "need --sitemap-only"),
        (["--sitemap-only", "--since", "2026-02-30"], "not a date"),
        (["--sitemap-only", "--urls", "http://127.0.0.1:9/a"], "not allowed with"),
        (["--sitemap-only", "--sitemaps", "file:///etc/passwd"], "--sitemaps: not an http(s) URL"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "spiders.run", "--crawl", str(config), "--run-id", "x", *extra],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and expected in proc.stderr, (extra, proc.stderr)


# -- whole backfill runs --------------------------------------------------------------------------------


def _sitemap_run(config: Path, **mode: Any) -> dict[str, Any]:
    return run_ingest(config, SpiderCrawler(), mode=CrawlMode(sitemap_only=True, **mode)).to_dict()


def test_empty_selections_are_ok_runs_with_a_message(site: Site, tmp_path: Path) -> None:
    site.files["/empty.xml"] = urlset()
    config = crawl_yaml(tmp_path, site.url)
    summary = _sitemap_run(config, sitemaps=(site.url + "empty.xml",))
    assert summary["status"] == "ok" and summary["kind"] == "backfill"
    assert summary["message"] == "nothing to backfill: the sitemaps list no page on the allowed domains"
    summary = _sitemap_run(config, sitemaps=(site.url + "pages.xml",), since=date(2027, 1, 1))
    assert summary["status"] == "ok" and summary["pages_fetched"] == 0
    assert (
        summary["message"]
        == "nothing to backfill: the sitemaps list no page with a <lastmod> on or after 2027-01-01"
    )
    assert summary["warnings"] == ["left out 1 sitemap entries without a usable <lastmod>"]
    db = StateDB(parse_crawl(yaml.safe_load(config.read_text())).state_url())
    assert [r["status"] for r in db.last_runs(CRAWL)] == ["ok", "ok"] and db.all_pages(CRAWL) == []


def test_a_sitemap_that_cannot_be_read_fails_the_run_with_one_line(site: Site, tmp_path: Path) -> None:
    config = crawl_yaml(tmp_path, site.url)
    with pytest.raises(RunFailed) as failed:
        _sitemap_run(config, sitemaps=(site.url + "a.html",))
    message = failed.value.summary.message
    assert message == f"sitemap {site.url}a.html: not a sitemap (neither <urlset> nor <sitemapindex>)"
    with pytest.raises(RunFailed, match=r"sitemap .*/missing\.xml: http 404"):
        _sitemap_run(config, sitemaps=(site.url + "missing.xml",))


def test_a_sitemap_backfill_fetches_and_writes_only_the_chosen_pages(site: Site, tmp_path: Path) -> None:
    config = crawl_yaml(tmp_path, site.url, max_pages=10)
    summary = _sitemap_run(config, sitemaps=(site.url + "pages.xml",), since=date(2026, 11, 1))
    assert summary["status"] == "ok", summary["message"]
    assert summary["kind"] == "backfill" and summary["crawl_complete"] is False
    assert summary["pages_new"] == 2 and summary["vectors_written"] > 0
    assert summary["warnings"] == [
        "dropped 1 URL(s) off the allowed domains (127.0.0.1)",
        "left out 1 sitemap entries without a usable <lastmod>",
    ]
    db = StateDB(parse_crawl(yaml.safe_load(config.read_text())).state_url())
    assert sorted(p["url"] for p in db.all_pages(CRAWL)) == [site.url + "b.html", site.url + "c.html"]

    (tmp_path / "capped").mkdir()
    capped = crawl_yaml(tmp_path / "capped", site.url, name="capped", max_pages=1)
    summary = _sitemap_run(capped, sitemaps=(site.url + "index.xml",))
    assert summary["status"] == "ok" and summary["pages_new"] == 1, summary
    assert "source.max_pages (1) reached: the other chosen pages were not fetched" in summary["warnings"]


def test_backfill_flow_checks_its_parameters_and_reports_an_empty_selection(
    prefect_api: str, site: Site, tmp_path: Path
) -> None:
    from flows.backfill import backfill_flow

    site.files["/empty.xml"] = urlset(("http://elsewhere.example/x.html", None))
    config = crawl_yaml(tmp_path, site.url)
    summary = backfill_flow(str(config), sitemap=site.url + "empty.xml")
    assert summary["status"] == "ok" and summary["kind"] == "backfill"
    assert summary["message"].startswith("nothing to backfill")
    assert summary["warnings"] == ["dropped 1 URL(s) off the allowed domains (127.0.0.1)"]
    with pytest.raises(ConfigError, match="not both"):
        backfill_flow(str(config), urls=[site.url + "a.html"], since=date(2026, 1, 1))
    with pytest.raises(ConfigError, match="allowed domains"):
        backfill_flow(str(config), urls=["https://elsewhere.example/a"])
