"""Backfill page selection: sitemaps, indexes, robots.txt, <lastmod> filtering, domains, private hosts.

Sitemap files are served from tmp_path by bench.serve.StaticServer on 127.0.0.1 (it replaces
``http://__BASE__/`` in *.xml and robots.txt by its own base URL); no Prefect run is needed.
"""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Callable
from datetime import date
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from bench.serve import StaticServer
from flows.backfill import _SafeRedirects, fetch, parse_lastmod, select_urls
from ingest.config import CrawlConfig, parse_crawl
from ingest.errors import ConfigError, PermanentError

Serve = Callable[[Path], StaticServer]

URLSET = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
{}
</urlset>
"""


def _urlset(*entries: tuple[str, str | None]) -> str:
    rows = []
    for loc, lastmod in entries:
        extra = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
        rows.append(f"  <url><loc>{loc}</loc>{extra}</url>")
    return URLSET.format("\n".join(rows))


def _index(*locs: str) -> str:
    rows = "\n".join(f"  <sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{rows}\n</sitemapindex>\n'
    )


def _crawl(base_url: str, **source: Any) -> CrawlConfig:
    return parse_crawl(
        {"name": "unit", "source": {"start_urls": [base_url], "allow_private_networks": True, **source}}
    )


@pytest.fixture
def sitemaps(tmp_path: Path, serve_dir: Serve) -> StaticServer:
    """A server with a urlset, an index of two sitemaps (one gzipped) and a robots.txt."""
    root = tmp_path / "sitemaps"
    root.mkdir()
    (root / "pages.xml").write_text(
        _urlset(
            ("http://__BASE__/a.html", "2026-10-31"),
            ("http://__BASE__/b.html#frag", "2026-11-01"),
            ("http://__BASE__/c.html?utm_source=x", "2026-11-02T08:00:00+00:00"),
            ("http://__BASE__/d.html", None),
            ("http://elsewhere.example/e.html", "2026-12-01"),
        )
    )
    (root / "index.xml").write_text(_index("http://__BASE__/part1.xml", "http://__BASE__/part2.xml.gz"))
    (root / "part1.xml").write_text(_urlset(("http://__BASE__/p1.html", "2025-01-01")))
    (root / "robots.txt").write_text("User-agent: *\nDisallow:\n\nSitemap: http://__BASE__/index.xml\n")
    server = serve_dir(root)
    # Gzip data is not rewritten by the server: write the real base URL into it.
    part2 = _urlset((server.url + "p2.html", "2026-11-05"), (server.url + "p3.html", "2026-01-05"))
    (root / "part2.xml.gz").write_bytes(gzip.compress(part2.encode()))
    return server


@pytest.mark.server
def test_urlset_lists_every_page_canonical_and_on_the_allowed_domains(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    selection = select_urls(_crawl(base), sitemap=base + "pages.xml")
    assert selection.urls == [base + "a.html", base + "b.html", base + "c.html", base + "d.html"]
    assert selection.offsite == ["http://elsewhere.example/e.html"]
    assert selection.sitemaps_read == [base + "pages.xml"]


@pytest.mark.server
def test_sitemap_index_with_a_gzipped_child(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    selection = select_urls(_crawl(base), sitemap=base + "index.xml")
    assert selection.urls == [base + "p1.html", base + "p2.html", base + "p3.html"]
    assert selection.sitemaps_read == [base + "index.xml", base + "part1.xml", base + "part2.xml.gz"]


@pytest.mark.server
def test_robots_txt_sitemap_lines_are_followed(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    selection = select_urls(_crawl(base), sitemap=base + "robots.txt")
    assert selection.urls == [base + "p1.html", base + "p2.html", base + "p3.html"]
    assert selection.sitemaps_read[0] == base + "robots.txt"


@pytest.mark.server
def test_since_keeps_pages_modified_on_or_after_the_date(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    selection = select_urls(_crawl(base), sitemap=base + "pages.xml", since=date(2026, 11, 1))
    # a.html is older, d.html has no <lastmod>; the offsite page is new but dropped.
    assert selection.urls == [base + "b.html", base + "c.html"]
    assert selection.older == 1 and selection.undated == 1
    assert selection.offsite == ["http://elsewhere.example/e.html"]


@pytest.mark.server
def test_since_reads_the_crawls_own_sitemaps(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    cfg = _crawl(base, sitemaps=[base + "robots.txt"])
    selection = select_urls(cfg, since=date(2026, 11, 1))
    assert selection.urls == [base + "p2.html"]
    assert selection.older == 2


@pytest.mark.server
def test_since_falls_back_to_the_start_urls_robots_txt(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    selection = select_urls(_crawl(base + "a.html"), since=date(2026, 1, 1))
    assert selection.sitemaps_read[0] == base + "robots.txt"
    assert selection.urls == [base + "p2.html", base + "p3.html"]


@pytest.mark.server
def test_explicit_urls_are_canonicalised_deduplicated_and_filtered_by_domain(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    cfg = _crawl(base)
    selection = select_urls(
        cfg, urls=[base + "a.html#x", base + "a.html", "https://other.example/x", base + "b.html"]
    )
    assert selection.urls == [base + "a.html", base + "b.html"]
    assert selection.offsite == ["https://other.example/x"]
    assert sitemaps.requests == {}  # explicit URLs need no sitemap
    with pytest.raises(ConfigError, match="allowed domains"):
        select_urls(cfg, urls=["https://other.example/x"])


def test_allowed_domains_include_subdomains() -> None:
    cfg = parse_crawl(
        {
            "name": "unit",
            "source": {"start_urls": ["https://example.org/"], "allowed_domains": ["example.org"]},
        }
    )
    urls = ["https://docs.example.org/a", "https://example.org/b", "https://badexample.org/c"]
    selection = select_urls(cfg, urls=urls)
    assert selection.urls == urls[:2] and selection.offsite == urls[2:]


@pytest.mark.server
def test_private_hosts_are_refused_unless_the_crawl_allows_them(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    cfg = _crawl(base, allow_private_networks=False)
    with pytest.raises(ConfigError, match="allow_private_networks"):
        select_urls(cfg, sitemap=base + "pages.xml")
    with pytest.raises(ConfigError, match="private or loopback"):
        select_urls(cfg, since=date(2026, 1, 1))
    assert sitemaps.requests == {}  # refused before any request was made
    with pytest.raises(ConfigError, match="private or loopback"):
        fetch("http://localhost:1/sitemap.xml")


def test_redirects_to_private_hosts_are_refused() -> None:
    request = urllib.request.Request("https://example.org/sitemap.xml")
    handler = _SafeRedirects(allow_private=False)
    with pytest.raises(ConfigError, match=r"redirect from https://example\.org/sitemap\.xml"):
        handler.redirect_request(request, None, 302, "Found", Message(), "http://127.0.0.1/x.xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not an http"):
        handler.redirect_request(request, None, 302, "Found", Message(), "file:///etc/passwd")  # type: ignore[arg-type]
    allowed = _SafeRedirects(allow_private=True).redirect_request(
        request,
        None,  # type: ignore[arg-type]
        302,
        "Found",
        Message(),
        "http://127.0.0.1/x.xml",
    )
    assert allowed is not None and allowed.full_url == "http://127.0.0.1/x.xml"


def test_exactly_one_way_of_choosing_pages() -> None:
    cfg = _crawl("http://127.0.0.1:9/")
    with pytest.raises(ConfigError, match="say which pages"):
        select_urls(cfg)
    with pytest.raises(ConfigError, match="not both"):
        select_urls(cfg, urls=["http://127.0.0.1:9/a"], sitemap="http://127.0.0.1:9/sitemap.xml")
    with pytest.raises(ConfigError, match="not both"):
        select_urls(cfg, urls=["http://127.0.0.1:9/a"], since=date(2026, 1, 1))
    with pytest.raises(ConfigError, match="empty"):
        select_urls(cfg, urls=[])
    with pytest.raises(ConfigError, match="not an http"):
        select_urls(cfg, urls=["ftp://127.0.0.1/a"])
    with pytest.raises(ConfigError, match="not an http"):
        select_urls(cfg, sitemap="/etc/sitemap.xml")


@pytest.mark.server
def test_a_page_that_is_not_a_sitemap_and_missing_sitemaps_fail(tmp_path: Path, serve_dir: Serve) -> None:
    root = tmp_path / "site"
    root.mkdir()
    (root / "page.html").write_text("<html><body>hello</body></html>")
    (root / "robots.txt").write_text("User-agent: *\nDisallow:\n")
    server = serve_dir(root)
    cfg = _crawl(server.url)
    with pytest.raises(PermanentError, match="not a sitemap"):
        select_urls(cfg, sitemap=server.url + "page.html")
    with pytest.raises(PermanentError, match="HTTP 404"):
        select_urls(cfg, sitemap=server.url + "missing.xml")
    with pytest.raises(PermanentError, match="no Sitemap: lines"):
        select_urls(cfg, since=date(2026, 1, 1))


@pytest.mark.server
def test_oversized_bodies_and_self_referencing_indexes(tmp_path: Path, serve_dir: Serve) -> None:
    root = tmp_path / "site"
    root.mkdir()
    (root / "loop.xml").write_text(_index("http://__BASE__/loop.xml", "http://__BASE__/pages.xml"))
    (root / "pages.xml").write_text(_urlset(("http://__BASE__/x.html", None)))
    server = serve_dir(root)
    selection = select_urls(_crawl(server.url), sitemap=server.url + "loop.xml")
    assert selection.urls == [server.url + "x.html"]
    assert server.requests == {"/loop.xml": 1, "/pages.xml": 1}
    with pytest.raises(PermanentError, match="larger than 100 bytes"):
        fetch(server.url + "pages.xml", allow_private=True, max_bytes=100)


@pytest.mark.server
def test_selection_is_capped_at_max_pages(sitemaps: StaticServer) -> None:
    base = sitemaps.url
    selection = select_urls(_crawl(base, max_pages=2), sitemap=base + "pages.xml")
    assert selection.urls == [base + "a.html", base + "b.html"] and selection.truncated == 2


@pytest.mark.server
def test_empty_sitemap_gives_an_empty_selection(tmp_path: Path, serve_dir: Serve) -> None:
    root = tmp_path / "site"
    root.mkdir()
    (root / "empty.xml").write_text(_urlset())
    server = serve_dir(root)
    assert select_urls(_crawl(server.url), sitemap=server.url + "empty.xml").urls == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01", date(2026, 11, 1)),
        (" 2026-11-01 ", date(2026, 11, 1)),
        ("2026-11-01T23:30:00-02:00", date(2026, 11, 2)),  # 01:30 UTC on the 2nd
        ("2026-11-01T10:00:00Z", date(2026, 11, 1)),
        ("2026-11-01T10:00", date(2026, 11, 1)),
        ("2026-11", date(2026, 11, 1)),
        ("2026", date(2026, 1, 1)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_lastmod(value: str | None, expected: date | None) -> None:
    assert parse_lastmod(value) == expected
