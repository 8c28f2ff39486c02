"""The crawl subprocess end to end: ``python -m spiders.run`` against small sites on 127.0.0.1.

Each site is written into a temporary folder and served by ``bench.serve.StaticServer``, whose
``requests`` counter proves what the spider did *not* fetch. Pages land in the state DB named by the
crawl YAML; the tests read them back with ``StateDB.fetched_after``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from scrapy import Request
from scrapy.utils.test import get_crawler

from bench.serve import StaticServer
from ingest.config import parse_crawl
from ingest.state import FetchedPage, StateDB
from ingest.state.schema import page_links
from spiders.middlewares import RequestRefused, SafetyMiddleware
from spiders.spiders.config_spider import ConfigSpider
from tests.conftest import REPO
from tests.integration.conftest import run_spider

pytestmark = pytest.mark.server  # the spider subprocess against sites on 127.0.0.1

CRAWL = "spidertest"


def html(title: str, *links: str, text: str = "") -> str:
    """A small HTML page linking to ``links``."""
    anchors = "\n".join(f'<a href="{href}">{href}</a>' for href in links)
    head = f"<html><head><title>{title}</title></head>"
    return f"{head}<body><h1>{title}</h1><p>{text}</p>\n{anchors}</body></html>"


def make_site(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (path -> content) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def crawl_yaml(folder: Path, base_url: str, **source: Any) -> Path:
    """Write a crawl definition whose state DB lives in ``folder``."""
    data = {
        "name": CRAWL,
        "state": {"url": f"sqlite:///{folder / 'state.db'}"},
        "source": {"start_urls": [base_url], "allow_private_networks": True, **source},
    }
    path = folder / "crawl.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def fetched(config: Path, run_id: str) -> dict[str, FetchedPage]:
    """The rows a run stored, keyed by their path ("/a.html")."""
    state = StateDB(parse_crawl(yaml.safe_load(config.read_text())).state_url())
    try:
        rows = state.fetched_after(run_id, limit=100_000)
    finally:
        state.close()
    out: dict[str, FetchedPage] = {}
    for row in rows:
        path = "/" + row.url.split("/", 3)[3]
        assert path not in out, f"{row.url} stored twice"
        out[path] = row
    return out


def stored(rows: dict[str, FetchedPage]) -> set[str]:
    """Paths stored with a body."""
    return {path for path, row in rows.items() if row.body is not None}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Factory: write a site into tmp_path and serve it on 127.0.0.1."""
    servers: list[StaticServer] = []

    def _serve(files: dict[str, str | bytes], name: str = "site") -> StaticServer:
        server = StaticServer(make_site(tmp_path / name, files)).start()
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


# -- one rich site, crawled once, inspected by several tests ---------------------------------------


@dataclass
class SiteCrawl:
    stats: dict[str, Any]
    rows: dict[str, FetchedPage]
    requests: dict[str, int]
    offsite_requests: dict[str, int]


@pytest.fixture(scope="module")
def site_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteCrawl]:
    """Crawl a site that exercises robots.txt, sitemaps, redirects, 404s, non-HTML and size caps."""
    folder = tmp_path_factory.mktemp("rich")
    offsite = StaticServer(make_site(folder / "offsite", {"index.html": html("Elsewhere")})).start()
    root = folder / "site"
    server = StaticServer(root)
    make_site(
        root,
        {
            "index.html": html(
                "Home",
                "/a.html#section",
                "/a.html?utm_source=newsletter&utm_medium=email",
                "/a.html",
                "/private/secret.html",
                "/notes.txt",
                "/report.json",
                "/files/card.pdf",
                "/photo.png",
                "/missing.html",
                "/guide",  # a folder: http.server answers 301 to /guide/
                "/docs",
                "/docs/",
                "/big.html",
                f"http://localhost:{offsite.port}/",
                "mailto:someone@example.org",
                "javascript:void(0)",
            ),
            "a.html": html("A", "/b.html"),
            "b.html": html("B"),
            "guide/index.html": html("Guide"),
            "docs/index.html": html("Docs"),
            "private/secret.html": html("Secret"),
            "notes.txt": "plain text notes\n",
            "report.json": '{"not": "html"}\n',
            "files/card.pdf": b"%PDF-1.4\n" + b"0" * 50_000,
            "photo.png": b"\x89PNG\r\n\x1a\n",
            "big.html": html("Big", text="x" * 5000),
            "orphan.html": html("Orphan, linked only from the sitemap"),
            "robots.txt": "User-agent: *\nDisallow: /private/\nSitemap: http://__BASE__/sitemap.xml\n",
            "sitemap.xml": (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                "<url><loc>http://__BASE__/orphan.html</loc></url>"
                "<url><loc>http://__BASE__/a.html</loc></url></urlset>\n"
            ),
        },
    )
    server.start()
    try:
        config = crawl_yaml(
            folder,
            server.url,
            sitemaps=[server.url + "robots.txt"],
            max_page_bytes=2048,
            max_document_bytes=4096,
        )
        stats = run_spider(config, "rich")
        yield SiteCrawl(stats, fetched(config, "rich"), dict(server.requests), dict(offsite.requests))
    finally:
        server.stop()
        offsite.stop()


def test_crawl_stores_html_pages_and_reports_complete(site_crawl: SiteCrawl) -> None:
    assert stored(site_crawl.rows) == {
        "/",
        "/a.html",
        "/b.html",
        "/guide",
        "/docs/",
        "/orphan.html",
    }
    stats = site_crawl.stats
    assert stats["finish_reason"] == "finished"
    assert stats["complete"] is True
    assert stats["pages_stored"] == 6
    assert stats["errors"] == 0
    assert stats["requests"] >= 12
    home = site_crawl.rows["/"]
    assert home.status == 200 and home.depth == 0 and home.skip_reason is None
    assert home.content_type is not None and home.content_type.startswith("text/html")
    assert b"<h1>Home</h1>" in (home.body or b"")
    assert home.etag and home.etag.startswith('"') and home.last_modified
    assert site_crawl.rows["/docs/"].depth == 1


def test_robots_txt_disallowed_page_is_never_requested(site_crawl: SiteCrawl) -> None:
    assert "/private/secret.html" not in site_crawl.requests
    row = site_crawl.rows["/private/secret.html"]
    assert row.body is None and row.status == 0 and row.skip_reason == "disallowed by robots.txt"
    assert site_crawl.stats["robots_disallowed"] == 1


def test_canonicalisation_fetches_a_page_once(site_crawl: SiteCrawl) -> None:
    # "#section", "?utm_source=..." and the plain link are one page.
    assert site_crawl.requests["/a.html"] == 1
    assert not [path for path in site_crawl.requests if path.startswith("/a.html?")]
    assert site_crawl.rows["/a.html"].url.endswith("/a.html")


def test_offsite_links_and_other_schemes_are_dropped(site_crawl: SiteCrawl) -> None:
    assert site_crawl.offsite_requests == {}
    assert site_crawl.stats["offsite_links"] == 1
    assert not [r for r in site_crawl.rows.values() if "localhost" in r.url or "mailto" in r.url]


def test_non_html_is_recorded_as_skipped_without_body(site_crawl: SiteCrawl) -> None:
    notes, report = site_crawl.rows["/notes.txt"], site_crawl.rows["/report.json"]
    assert (notes.status, notes.body, notes.skip_reason) == (200, None, "not html: text/plain")
    assert (report.body, report.skip_reason) == (None, "not html: application/json")
    # A PDF is a document (issue 13), asked for under its own cap: over max_document_bytes, its body is
    # not downloaded and the row says so. An image link is not even requested.
    card = site_crawl.rows["/files/card.pdf"]
    assert (card.body, card.skip_reason) == (None, "too large: over source.max_document_bytes (4096 bytes)")
    assert "/photo.png" not in site_crawl.requests
    assert site_crawl.stats["not_html"] == 2 and site_crawl.stats["too_large"] == 2


def test_sitemap_listed_in_robots_txt_finds_orphan_pages(site_crawl: SiteCrawl) -> None:
    orphan = site_crawl.rows["/orphan.html"]
    assert orphan.body is not None and orphan.depth == 0
    assert site_crawl.requests["/sitemap.xml"] == 1


def test_404_is_recorded_with_its_status(site_crawl: SiteCrawl) -> None:
    missing = site_crawl.rows["/missing.html"]
    assert (missing.status, missing.body) == (404, None)
    assert site_crawl.stats["gone"] == 1


def test_redirect_stores_requested_and_final_url(site_crawl: SiteCrawl) -> None:
    guide = site_crawl.rows["/guide"]
    assert guide.url.endswith("/guide") and guide.final_url.endswith("/guide/")
    assert guide.status == 200 and guide.body is not None
    # /docs redirects to /docs/, which is also linked directly: stored once, the other is a duplicate.
    docs, docs_redirect = site_crawl.rows["/docs/"], site_crawl.rows["/docs"]
    assert docs.body is not None
    assert docs_redirect.body is None and "duplicate" in (docs_redirect.skip_reason or "")
    assert docs_redirect.final_url == docs.final_url
    assert site_crawl.requests["/docs/"] == 1


def test_size_cap_skips_large_pages(site_crawl: SiteCrawl) -> None:
    big = site_crawl.rows["/big.html"]
    assert big.body is None and big.skip_reason == "too large: over source.max_page_bytes (2048 bytes)"
    assert site_crawl.stats["too_large"] == 2  # big.html and the PDF (over max_document_bytes)


# -- limits and filters ----------------------------------------------------------------------------


def test_depth_limit(tmp_path: Path, serve: Any) -> None:
    server = serve(
        {
            "index.html": html("0", "/p1.html"),
            "p1.html": html("1", "/p2.html"),
            "p2.html": html("2", "/p3.html"),
            "p3.html": html("3", "/p4.html"),
            "p4.html": html("4"),
        }
    )
    stats = run_spider(crawl_yaml(tmp_path, server.url, max_depth=2), "depth")
    rows = fetched(tmp_path / "crawl.yaml", "depth")
    assert stored(rows) == {"/", "/p1.html", "/p2.html"}
    assert [rows[p].depth for p in ("/", "/p1.html", "/p2.html")] == [0, 1, 2]
    assert "/p3.html" not in server.requests
    assert stats["depth_limited_links"] == 1
    assert stats["complete"] is True


def test_max_pages_stops_the_crawl(tmp_path: Path, serve: Any) -> None:
    pages = {f"p{i}.html": html(f"Page {i}", "/", "/p0.html") for i in range(30)}
    server = serve({"index.html": html("Home", *(f"/p{i}.html" for i in range(30))), **pages})
    config = crawl_yaml(tmp_path, server.url, max_pages=5, concurrency=8)
    stats = run_spider(config, "limit")
    rows = fetched(config, "limit")
    assert len(stored(rows)) == 5
    assert stats["pages_stored"] == 5
    assert stats["limit_reached"] is True and stats["complete"] is False
    assert stats["finish_reason"] == "max_pages"


def test_include_and_exclude_filters(tmp_path: Path, serve: Any) -> None:
    server = serve(
        {
            "index.html": html("Home", "/docs/a.html", "/docs/drafts/x.html", "/blog/b.html"),
            "docs/a.html": html("Doc A", "/docs/drafts/x.html"),
            "docs/drafts/x.html": html("Draft"),
            "blog/b.html": html("Blog"),
        }
    )
    config = crawl_yaml(tmp_path, server.url, include=["/docs/"], exclude=["/drafts/"])
    stats = run_spider(config, "filters")
    rows = fetched(config, "filters")
    # The start URL is fetched (its links are needed) but not stored: it does not match include.
    assert stored(rows) == {"/docs/a.html"}
    assert rows["/"].body is None and "filtered" in (rows["/"].skip_reason or "")
    assert "/docs/drafts/x.html" not in server.requests and "/blog/b.html" not in server.requests
    assert stats["filtered_links"] == 2


# -- network safety -------------------------------------------------------------------------------


def test_private_addresses_are_refused_without_the_flag(tmp_path: Path, serve: Any) -> None:
    server = serve({"index.html": html("Home", "/a.html"), "a.html": html("A")})
    config = crawl_yaml(tmp_path, server.url, allow_private_networks=False)
    stats = run_spider(config, "private")
    rows = fetched(config, "private")
    assert server.requests == {}  # not even robots.txt
    assert list(rows) == ["/"]
    assert rows["/"].status == 0 and rows["/"].body is None
    assert "allow_private_networks" in (rows["/"].skip_reason or "")
    assert stats["private_refused"] == 1 and stats["pages_stored"] == 0


def test_redirects_to_private_addresses_are_refused() -> None:
    crawler = get_crawler(settings_dict={"WEBVEC_ALLOW_PRIVATE_NETWORKS": False})
    middleware = SafetyMiddleware.from_crawler(crawler)
    middleware.process_request(Request("http://93.184.216.34/page"))  # a public address passes
    redirected = Request("http://127.0.0.1:8080/admin", meta={"redirect_urls": ["http://93.184.216.34/go"]})
    with pytest.raises(RequestRefused, match="allow_private_networks") as refused:
        middleware.process_request(redirected)
    assert refused.value.kind == "private" and "redirect" in refused.value.reason
    with pytest.raises(RequestRefused):
        middleware.process_request(Request("http://169.254.169.254/latest/meta-data/"))
    allowing = SafetyMiddleware.from_crawler(
        get_crawler(settings_dict={"WEBVEC_ALLOW_PRIVATE_NETWORKS": True})
    )
    allowing.process_request(redirected)


def test_allowed_domains_include_subdomains(tmp_path: Path) -> None:
    cfg = parse_crawl(
        {
            "name": CRAWL,
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "source": {"start_urls": ["https://example.org/"], "allowed_domains": ["example.org"]},
        }
    )
    spider = ConfigSpider(crawl=cfg, run_id="unit")
    assert spider.allowed_host("example.org") and spider.allowed_host("docs.example.org")
    assert not spider.allowed_host("example.org.evil.com") and not spider.allowed_host("notexample.org")
    spider.state.close()


# -- incremental and partial crawls ----------------------------------------------------------------


def test_conditional_recrawl_gets_304s_and_follows_cached_links(tmp_path: Path, serve: Any) -> None:
    server = serve(
        {
            "index.html": html("Home", "/a.html", "/c.html"),
            "a.html": html("A", "/b.html"),
            "b.html": html("B"),
            "c.html": html("C"),
        }
    )
    config = crawl_yaml(tmp_path, server.url)
    run_spider(config, "first")
    first = fetched(config, "first")
    assert stored(first) == {"/", "/a.html", "/b.html", "/c.html"}

    # What the flow does after a successful run: the pages become live in the ledger with validators.
    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    page_rows = [
        {"url": r.url, "doc_id": f"d{i}", "etag": r.etag, "last_modified": r.last_modified, "status": "live"}
        for i, r in enumerate(first.values())
    ]
    state.commit_pages(CRAWL, "target", "model", page_rows, [], [], [])
    # c.html changes; the link cache of a.html is lost (then a 304 alone could not lead to b.html).
    (tmp_path / "site" / "c.html").write_text(html("C", text="edited"), encoding="utf-8")
    with state.engine.begin() as conn:
        conn.execute(sa.delete(page_links).where(page_links.c.url == server.url + "a.html"))
    state.close()

    stats = run_spider(config, "second")
    second = fetched(config, "second")
    assert {p: r.status for p, r in second.items()} == {
        "/": 304,
        "/a.html": 200,
        "/b.html": 304,
        "/c.html": 200,
    }
    assert second["/"].body is None and second["/"].etag == first["/"].etag
    assert second["/c.html"].body is not None and b"edited" in second["/c.html"].body
    assert stats["not_modified"] == 2 and stats["pages_stored"] == 2 and stats["refetched"] == 1
    assert stats["complete"] is True
    # a.html was asked twice in the second run: conditionally (304), then in full for its links.
    assert server.requests["/a.html"] == 3


def test_backfill_fetches_only_the_given_urls(tmp_path: Path, serve: Any) -> None:
    server = serve(
        {
            "index.html": html("Home", "/a.html", "/b.html"),
            "a.html": html("A", "/b.html"),
            "b.html": html("B"),
            "c.html": html("C", "/b.html"),
        }
    )
    config = crawl_yaml(tmp_path, server.url)
    stats = run_spider(config, "backfill", "--urls", server.url + "a.html", server.url + "c.html#top")
    rows = fetched(config, "backfill")
    assert stored(rows) == {"/a.html", "/c.html"}
    assert set(server.requests) == {"/robots.txt", "/a.html", "/c.html"}
    assert stats["mode"] == "backfill" and stats["complete"] is True


def test_sitemap_only_crawls_sitemap_urls(tmp_path: Path, serve: Any) -> None:
    server = serve(
        {
            "index.html": html("Home", "/a.html"),
            "a.html": html("A", "/b.html"),
            "b.html": html("B"),
            "robots.txt": "User-agent: *\nAllow: /\nSitemap: http://__BASE__/sitemap_index.xml\n",
            "sitemap_index.xml": (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                "<sitemap><loc>http://__BASE__/pages.xml</loc></sitemap></sitemapindex>\n"
            ),
            "pages.xml": (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                "<url><loc>http://__BASE__/a.html</loc></url></urlset>\n"
            ),
        }
    )
    config = crawl_yaml(tmp_path, server.url)  # no sitemaps configured: robots.txt of the start URL
    stats = run_spider(config, "sitemaps", "--sitemap-only")
    assert stored(fetched(config, "sitemaps")) == {"/a.html"}
    assert "/b.html" not in server.requests and "/" not in server.requests
    assert stats["mode"] == "sitemap-only" and stats["complete"] is True


# -- command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: spidertest\nsource:\n  start_urls: ['http://127.0.0.1:9/']\n  max_pagez: 3\n", "max_pagez"),
        ("name: spidertest\nsource: {start_urls: [ftp://example.org/]}\n", "start_urls"),
        ("name: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "spiders.run", "--crawl", str(config), "--run-id", "bad"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert proc.stdout == ""
