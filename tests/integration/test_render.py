"""JavaScript rendering (issue 13, ``source.render``), end to end: the spider drives Debian's Chromium
through scrapy-playwright on a site served on 127.0.0.1; the fake embedder and the default store.

The site's article text is inserted by a script (``index.html``: an app shell, ``<div id="root">`` and a
``<script src>``), and one page fetches its text by XHR from the same origin (``xhr.html``). Plain, both
are skipped as having no main text; rendered (``auto`` and ``always``), both are indexed and found.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.serve import StaticServer
from ingest.config import load_crawl
from ingest.query import search
from ingest.render import browser_path
from ingest.run import run_ingest
from ingest.state import StateDB
from spiders.process import crawl_source_for
from tests.integration.conftest import run_spider

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not Path(browser_path(None)).exists(),
        reason=f"no Chromium at {browser_path(None)}: apt-get install chromium (or set WEBVEC_CHROMIUM)",
    ),
]

GLACIERS = (
    "Glaciers carve deep valleys over many thousands of years, grinding the bedrock beneath them into "
    "fine flour that rivers carry to the sea. "
) * 6
VOLCANOES = (
    "Volcanoes build mountains from molten rock that rises through the crust, and their ash makes the "
    "surrounding soil unusually fertile for farming. "
) * 6

SHELL = """<!doctype html><html lang="en"><head><title>{title}</title></head><body>
<div id="root"></div>
<noscript>You need to enable JavaScript to run this app.</noscript>
{scripts}
</body></html>"""

APP_JS = f"""
const root = document.getElementById('root');
root.innerHTML = '<article><h1>Glaciers</h1><p>' + {json.dumps(GLACIERS)} + '</p>'
  + '<a href="xhr.html">Volcanoes</a></article>';
"""

XHR_JS = """
const xhr = new XMLHttpRequest();
xhr.open('GET', 'article.json');
xhr.onload = () => {
  const data = JSON.parse(xhr.responseText);
  document.getElementById('root').innerHTML =
    '<article><h1>' + data.title + '</h1><p>' + data.text + '</p></article>';
};
xhr.send();
"""


def _write_site(root: Path, extra_script: str = "") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(
        SHELL.format(title="Glaciers", scripts=f'<script src="app.js"></script>{extra_script}')
    )
    (root / "app.js").write_text(APP_JS)
    (root / "xhr.html").write_text(SHELL.format(title="Volcanoes", scripts=f"<script>{XHR_JS}</script>"))
    (root / "article.json").write_text(json.dumps({"title": "Volcanoes", "text": VOLCANOES}))
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")


def _crawl(tmp_path: Path, base: str, render: str, **source: Any) -> Path:
    name = f"render-{render}"
    data = {
        "name": name,
        "source": {
            "start_urls": [base],
            "allow_private_networks": True,
            "render": render,
            "render_timeout_s": 20,
            **source,
        },
        "embedder": {"kind": "fake"},
        "extract": {"workers": 1, "timeout_s": 30},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _outcomes(crawl: Path, run_id: str, base: str) -> dict[str, tuple[str, str | None]]:
    db = StateDB(load_crawl(crawl).state_url())
    try:
        return {r["url"].removeprefix(base): (r["outcome"], r["kind"]) for r in db.outcomes_of(run_id)}
    finally:
        db.close()


@pytest.fixture
def js_site(tmp_path: Path, serve_dir: Any) -> StaticServer:
    root = tmp_path / "site"
    _write_site(root)
    server: StaticServer = serve_dir(root)
    return server


def test_without_rendering_script_pages_have_no_main_text(tmp_path: Path, js_site: StaticServer) -> None:
    crawl = _crawl(tmp_path, js_site.url, "never")
    summary = run_ingest(crawl, crawl_source_for(crawl)).to_dict()
    got = _outcomes(crawl, summary["run_id"], js_site.url)
    assert got[""] == ("skipped", "no_main_text")
    assert summary["pages_rendered"] == summary["pages_render_needed"] == 0
    assert "xhr.html" not in got  # its link exists only once the script has run
    assert js_site.requests.get("/app.js", 0) == 0  # nothing ran the script


@pytest.mark.parametrize("render", ["auto", "always"])
def test_rendered_pages_are_indexed_and_found(tmp_path: Path, js_site: StaticServer, render: str) -> None:
    crawl = _crawl(tmp_path, js_site.url, render)
    summary = run_ingest(crawl, crawl_source_for(crawl)).to_dict()
    got = _outcomes(crawl, summary["run_id"], js_site.url)
    assert got[""] == ("new", None) and got["xhr.html"] == ("new", None), got
    assert js_site.requests["/article.json"] == 1  # fetched by the page's XHR, in the browser
    # The run's summary says how many pages were rendered, and how many of them were app shells.
    assert summary["pages_rendered"] == 2
    assert summary["pages_render_needed"] == (2 if render == "auto" else 0)

    cfg = load_crawl(crawl)
    for query, path in (("glaciers grinding bedrock flour", ""), ("volcanoes ash fertile soil", "xhr.html")):
        hits = search(cfg, query, k=3)
        assert hits and hits[0]["url"] == js_site.url + path, (query, hits)

    db = StateDB(cfg.state_url())
    try:
        rendered = {p.url.removeprefix(js_site.url): p.rendered for p in db.fetched_after(summary["run_id"])}
    finally:
        db.close()
    # The page store records how each page was fetched: with auto, that it needed rendering.
    assert rendered[""] == rendered["xhr.html"] == render
    # auto fetches each shell twice (plainly, then rendered); always renders at once.
    assert js_site.requests["/"] == (2 if render == "auto" else 1)


def test_auto_renders_only_app_shells(tmp_path: Path, js_site: StaticServer) -> None:
    root = Path(js_site.root)
    (root / "plain.html").write_text(
        f"<html><head><title>Deserts</title></head><body><article><h1>Deserts</h1><p>{'Dunes move. ' * 60}"
        "</p></article><script>console.log('analytics')</script></body></html>"
    )
    crawl = _crawl(tmp_path, js_site.url, "auto", start_urls=[js_site.url, js_site.url + "plain.html"])
    stats = run_spider(crawl, "run-auto")
    assert stats["render_needed"] == 2 and stats["rendered"] == 2
    assert set(stats["render_needed_urls"]) == {js_site.url, js_site.url + "xhr.html"}
    assert js_site.requests["/plain.html"] == 1  # has its text: never rendered


def _second_server(tmp_path: Path, serve_dir: Any) -> StaticServer:
    other = tmp_path / "other"
    other.mkdir()
    (other / "beacon.js").write_text("document.title = 'beacon ran';")
    (other / "collect").write_text("ok")
    server: StaticServer = serve_dir(other)
    return server


def _beacon(port: int) -> str:
    """Scripts that try to reach another server on localhost: a script tag and an XHR."""
    return (
        f'<script src="http://localhost:{port}/beacon.js"></script>'
        f"<script>fetch('http://localhost:{port}/collect?leak=' + document.title).catch(() => {{}});</script>"
    )


def test_browser_requests_to_hosts_off_the_allowed_domains_are_blocked(
    tmp_path: Path, serve_dir: Any
) -> None:
    other = _second_server(tmp_path, serve_dir)
    root = tmp_path / "site"
    _write_site(root, extra_script=_beacon(other.port))
    site: StaticServer = serve_dir(root)
    crawl = _crawl(tmp_path, site.url, "always")  # allowed domains: 127.0.0.1 only
    stats = run_spider(crawl, "run-offsite")
    assert stats["pages_stored"] == 2 and stats["errors"] == 0  # the page itself is unharmed
    assert stats["render_blocked"].get("offsite", 0) >= 2
    assert other.requests == {}  # not one request reached the other host


def test_browser_requests_to_private_addresses_are_blocked(tmp_path: Path, serve_dir: Any) -> None:
    # localhost is on the allowed domains but private; only the site's own address is allowed
    # (allow_hosts), so the scripts' requests to localhost are refused by the network policy.
    other = _second_server(tmp_path, serve_dir)
    root = tmp_path / "site"
    _write_site(root, extra_script=_beacon(other.port))
    site: StaticServer = serve_dir(root)
    crawl = _crawl(
        tmp_path,
        site.url,
        "always",
        allow_private_networks=False,
        allow_hosts=["127.0.0.1"],
        allowed_domains=["127.0.0.1", "localhost"],
    )
    stats = run_spider(crawl, "run-private")
    assert stats["pages_stored"] == 2 and stats["errors"] == 0
    assert stats["render_blocked"].get("private", 0) >= 2
    assert other.requests == {}


def test_rendered_html_over_the_page_cap_is_skipped(tmp_path: Path, js_site: StaticServer) -> None:
    root = Path(js_site.root)
    # A few bytes served, 100 KB once the script has run.
    (root / "app.js").write_text(
        "document.getElementById('root').innerHTML = '<p>' + 'x '.repeat(50000) + '</p>';"
    )
    crawl = _crawl(tmp_path, js_site.url, "always", max_page_bytes=64 * 1024)
    stats = run_spider(crawl, "run-cap")
    assert stats["too_large"] == 1 and stats["pages_stored"] == 0


def test_a_missing_browser_stops_the_crawl_with_one_line(tmp_path: Path, js_site: StaticServer) -> None:
    from spiders.run import spider_command

    crawl = _crawl(tmp_path, js_site.url, "always", browser_path=str(tmp_path / "no-chromium"))
    proc = subprocess.run(
        spider_command(crawl, "run-nobrowser", tmp_path / "stats.json"), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "no-chromium is not an executable file: apt-get install chromium" in proc.stderr
    assert js_site.requests == {}  # stopped before the first request


def test_robots_txt_applies_to_rendered_pages(tmp_path: Path, js_site: StaticServer) -> None:
    (Path(js_site.root) / "robots.txt").write_text("User-agent: *\nDisallow: /xhr.html\n")
    crawl = _crawl(tmp_path, js_site.url, "always")
    stats = run_spider(crawl, "run-robots")
    assert stats["robots_disallowed"] == 1 and stats["pages_stored"] == 1
    assert "/xhr.html" not in js_site.requests  # neither Scrapy nor the browser asked for it


def test_a_download_behind_a_plain_name_is_fetched_plainly(tmp_path: Path, js_site: StaticServer) -> None:
    # "notes" (no suffix) is served as application/octet-stream: the browser would download it, which
    # it may not; the spider fetches it plainly instead and records it as any plain crawl would.
    root = Path(js_site.root)
    (root / "notes").write_bytes(b"\x00\x01binary, not a page\x02" * 100)
    crawl = _crawl(tmp_path, js_site.url, "always", start_urls=[js_site.url, js_site.url + "notes"])
    stats = run_spider(crawl, "run-download")
    assert stats["render_downloads"] == 1
    assert stats["not_html"] == 1 and stats["errors"] == 0, stats["failed"]
    assert stats["pages_stored"] == 2


class _SlowHandler(BaseHTTPRequestHandler):
    """Answers every request after 10 s: a script that holds the page's load event."""

    def do_GET(self) -> None:
        time.sleep(10)
        self.send_response(200)
        self.send_header("Content-Type", "application/javascript")
        self.end_headers()
        self.wfile.write(b"// too late\n")

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_a_page_that_does_not_load_in_time_fails_alone(tmp_path: Path, js_site: StaticServer) -> None:
    slow = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    slow.daemon_threads = True
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        root = Path(js_site.root)
        (root / "stuck.html").write_text(
            f'<html><body><p>Stuck</p><script src="http://127.0.0.1:{slow.server_address[1]}/s.js"></script>'
            "</body></html>"
        )
        start_urls = [js_site.url, js_site.url + "stuck.html"]
        crawl = _crawl(tmp_path, js_site.url, "always", start_urls=start_urls, render_timeout_s=2)
        started = time.monotonic()
        stats = run_spider(crawl, "run-timeout")
        assert time.monotonic() - started < 30
    finally:
        slow.shutdown()
    assert stats["pages_stored"] == 2  # index.html and xhr.html
    assert stats["failed_pages"] == 1 and "stuck.html" in stats["failed"][0]["url"]
    reason = stats["failed"][0]["reason"]
    assert reason.startswith("rendering timed out (source.render_timeout_s)") and "\n" not in reason
