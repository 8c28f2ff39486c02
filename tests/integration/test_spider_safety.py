"""Spider safety (issue 8): sitemap bounds, SSRF (DNS rebinding, metadata, proxies, environment), traps.

The crawls are real ``python -m spiders.run`` subprocesses against servers on 127.0.0.1 that answer
from Python functions (:class:`Site`), so a test can serve a 200,000-URL sitemap, a fresh session id
in every link, a page that never ends, or act as an HTTP proxy, and count every request it got.
DNS is never asked about real names: the rebinding test fakes ``getaddrinfo`` inside the spider
process, and the resolver tests inject a fake at :class:`spiders.resolver.SafeResolver`'s seam.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from ingest.config import parse_crawl
from ingest.state import FetchedPage, StateDB
from ingest.urls import NetworkPolicy, is_private_address
from spiders.resolver import SafeResolver
from spiders.run import spider_command, spider_env
from spiders.sitemaps import SitemapEntry, iter_sitemap, open_sitemap_body
from tests.conftest import REPO

CRAWL = "safetytest"

Answer = tuple[int, str, bytes]  # status, content type, body
Route = Callable[[str], Answer | None]


def page(title: str, *links: str) -> bytes:
    """A small HTML page linking to ``links``."""
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{anchors}</body></html>".encode()


HTML = "text/html; charset=utf-8"
XML = "application/xml"
NOT_FOUND: Answer = (404, "text/plain", b"not found")


class Site:
    """An HTTP server on 127.0.0.1 whose answers come from ``route(path)``; ``requests`` counts paths.

    ``route`` gets the request target as sent (a path, or an absolute URL when the server is used as
    a proxy) and returns ``(status, content type, body)``, or None for a 404.
    """

    def __init__(self, route: Route) -> None:
        self.requests: Counter[str] = Counter()
        lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                with lock:
                    site.requests[self.path] += 1
                status, content_type, body = route(self.path) or NOT_FOUND
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A spider that went away mid-answer (deadline, closed spider) is not a test failure.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving (handler threads still asleep are daemons and die with the test process)."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Route], Site]]:
    """Factory: ``serve(route)`` starts a :class:`Site`; all are stopped after the test."""
    sites: list[Site] = []

    def _serve(route: Route) -> Site:
        sites.append(Site(route))
        return sites[-1]

    yield _serve
    for site in sites:
        site.stop()


def crawl_yaml(folder: Path, start_urls: list[str], **source: Any) -> Path:
    """Write a crawl definition whose state DB lives in ``folder`` (private networks allowed by default)."""
    data = {
        "name": CRAWL,
        "state": {"url": f"sqlite:///{folder / 'state.db'}"},
        "source": {"start_urls": start_urls, "allow_private_networks": True, **source},
    }
    path = folder / "crawl.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def spider(
    config: Path,
    run_id: str,
    *extra: str,
    env: dict[str, str] | None = None,
    prelude: str = "",
    expect_rc: int = 0,
) -> tuple[dict[str, Any], int]:
    """Run the spider subprocess; return its stats and its peak RSS in KiB.

    ``prelude`` is Python run in the child before Scrapy is imported (to fake DNS there). The peak is
    the child's own ``VmHWM``, written at exit: ``ru_maxrss`` would also count the pages of this test
    process that the child held between fork and exec (gigabytes, once a model is loaded).
    """
    stats_file = config.parent / f"stats-{run_id}.json"
    hwm_file = config.parent / f"hwm-{run_id}"
    args = [*spider_command(config, run_id, stats_file)[3:], *extra]
    code = f"""{prelude}
import atexit, re, runpy, sys

def _peak() -> None:
    status = open("/proc/self/status").read()
    open({str(hwm_file)!r}, "w").write(re.search(r"VmHWM:\\s+(\\d+)", status).group(1))

atexit.register(_peak)
"""
    code += f"sys.argv = ['spiders.run', *{args!r}]\n"
    code += "runpy.run_module('spiders.run', run_name='__main__', alter_sys=True)\n"
    log = config.parent / f"spider-{run_id}.log"
    child_env = {**os.environ, "PYTHONPATH": str(REPO)} if env is None else env
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=out, stderr=out, env=child_env)
        deadline = time.monotonic() + 300
        while True:  # os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in others)
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"spider did not end: {log.read_text()[-3000:]}")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(errors="replace")
    assert proc.returncode == expect_rc, output[-4000:]
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return stats, int(hwm_file.read_text()) if hwm_file.exists() else rusage.ru_maxrss


def rows_of(config: Path, run_id: str) -> dict[str, FetchedPage]:
    """The rows a run stored, keyed by URL."""
    state = StateDB(parse_crawl(yaml.safe_load(config.read_text())).state_url())
    try:
        return {row.url: row for row in state.fetched_after(run_id, limit=1_000_000)}
    finally:
        state.close()


def stored(rows: dict[str, FetchedPage]) -> set[str]:
    """URLs stored with a body."""
    return {url for url, row in rows.items() if row.body is not None}


# -- 9. sitemaps -----------------------------------------------------------------------------------

SITEMAP_URLS = 200_000


@pytest.mark.slow
def test_huge_sitemap_is_streamed_within_the_page_budget(tmp_path: Path, serve: Any) -> None:
    # A 200,000-URL sitemap (10 MB) and max_pages: 10. Every other listed page is a 404, so the feed
    # must refill the slots of failed pages without scheduling the whole sitemap. The old spider
    # built all 200,000 requests at once: 567 MB peak RSS here (and 114 s); streamed, ~135 MB.
    body: list[bytes] = []

    def route(path: str) -> Answer | None:
        if path == "/":
            return 200, HTML, page("Home")
        if path == "/sitemap.xml":
            if not body:
                urls = "".join(f"<url><loc>{site.url}p/{i}.html</loc></url>\n" for i in range(SITEMAP_URLS))
                body.append(
                    b'<?xml version="1.0" encoding="UTF-8"?>\n'
                    b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                    + urls.encode()
                    + b"</urlset>\n"
                )
            return 200, XML, body[0]
        if path.startswith("/p/") and int(path[3:].removesuffix(".html")) % 2 == 0:
            return 200, HTML, page(path)
        return None

    site = serve(route)
    config = crawl_yaml(tmp_path, [site.url], sitemaps=[site.url + "sitemap.xml"], max_pages=10)
    stats, max_rss_kib = spider(config, "huge")

    assert stats["pages_stored"] == 10 and stats["limit_reached"] is True
    assert len(stored(rows_of(config, "huge"))) == 10
    page_requests = sum(n for path, n in site.requests.items() if path.startswith("/p/"))
    # 10 stored, about as many 404s in between, and at most source.concurrency (8) more in flight.
    assert page_requests <= 40, page_requests
    assert max_rss_kib < 250 * 1024, f"peak RSS {max_rss_kib // 1024} MiB"


@pytest.mark.slow
def test_sitemaps_off_the_allowed_domains_are_not_fetched(tmp_path: Path, serve: Any) -> None:
    elsewhere = serve(lambda path: (200, XML, b"<urlset/>"))
    other = f"http://localhost:{elsewhere.port}"  # another host name: not an allowed domain

    def route(path: str) -> Answer | None:
        base = site.url
        answers = {
            "/": page("Home"),
            "/robots.txt": f"User-agent: *\nAllow: /\nSitemap: {other}/from-robots.xml\n".encode(),
            "/index.xml": (
                '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<sitemap><loc>{other}/child.xml</loc></sitemap>"
                f"<sitemap><loc>{base}pages.xml</loc></sitemap></sitemapindex>"
            ).encode(),
            "/pages.xml": (
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{base}listed.html</loc></url></urlset>"
            ).encode(),
            "/listed.html": page("Listed only in the sitemap"),
        }
        if path not in answers:
            return None
        content_type = HTML if path.endswith(("/", ".html")) else "text/plain" if "robots" in path else XML
        return 200, content_type, answers[path]

    site = serve(route)
    config = crawl_yaml(tmp_path, [site.url], sitemaps=[site.url + "robots.txt", site.url + "index.xml"])
    stats, _ = spider(config, "offsite")

    assert dict(elsewhere.requests) == {}
    assert stored(rows_of(config, "offsite")) == {site.url, site.url + "listed.html"}
    assert stats["offsite_sitemaps"] == 2


def test_sitemap_reader_streams_gzip_and_stops_at_the_size_cap() -> None:
    urls = "".join(
        f"<url><loc> http://example.org/{i} </loc><lastmod>2026-01-0{1 + i % 9}</lastmod></url>"
        for i in range(3000)
    )
    xml = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()
    stream = open_sitemap_body(gzip.compress(xml), max_size=len(xml))
    assert stream is not None
    kind, entries = iter_sitemap(stream)
    first = next(entries)
    assert kind == "urlset" and first == SitemapEntry("http://example.org/0", "2026-01-01")
    assert sum(1 for _ in entries) == 2999

    # A gzip bomb stops at the cap: the entries before it are read, then reading ends (logged).
    capped = open_sitemap_body(gzip.compress(xml), max_size=len(xml) // 2)
    assert capped is not None
    kind, entries = iter_sitemap(capped)
    assert kind == "urlset" and 0 < sum(1 for _ in entries) < 3000

    assert open_sitemap_body(b"User-agent: *", max_size=100) is None
    assert iter_sitemap(io.BytesIO(b"<html><body>not a sitemap</body></html>"))[0] is None


# -- 10. SSRF ------------------------------------------------------------------------------------


class _SyncPool:
    """A thread pool that runs the work at once (so GAIResolver resolves synchronously)."""

    def callInThreadWithCallback(self, on_result: Any, func: Any, *args: Any) -> None:
        on_result(True, func(*args))


class _SyncReactor:
    def getThreadPool(self) -> _SyncPool:
        return _SyncPool()

    def callFromThread(self, func: Any, *args: Any) -> None:
        func(*args)


def _answers(*ips: str) -> list[tuple[Any, ...]]:
    return [
        (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 80)) for ip in ips
    ]


def resolve(resolver: SafeResolver, host: str) -> list[str]:
    """The addresses ``resolver`` hands on for ``host``."""
    got: list[str] = []

    class Receiver:
        def resolutionBegan(self, resolution: Any) -> None:
            pass

        def addressResolved(self, address: Any) -> None:
            got.append(address.host)

        def resolutionComplete(self) -> None:
            got.append("done")

    resolver.resolveHostName(cast(Any, Receiver()), host, 80)
    assert got[-1] == "done"
    return got[:-1]


def test_resolver_checks_every_answer_so_dns_rebinding_is_refused() -> None:
    calls: Counter[str] = Counter()

    def rebinding_getaddrinfo(host: str, *_: Any) -> list[tuple[Any, ...]]:
        calls[host] += 1  # public for the first lookup (the early check), private afterwards
        return _answers("93.184.216.34" if calls[host] == 1 else "10.0.0.7")

    resolver = SafeResolver(_SyncReactor(), NetworkPolicy(), getaddrinfo=rebinding_getaddrinfo)
    assert resolve(resolver, "rebind.test") == ["93.184.216.34"]
    assert resolve(resolver, "rebind.test") == []
    assert "10.0.0.7" in resolver.refused["rebind.test"]


def test_resolver_refuses_metadata_even_with_private_networks_allowed() -> None:
    answers = {
        "intranet.test": _answers("10.1.2.3"),
        "cgnat.test": _answers("100.64.0.9"),
        "imds.test": _answers("169.254.169.254"),
        "imds6.test": _answers("fd00:ec2::254"),
        "aliyun.test": _answers("100.100.100.200"),
        "mixed.test": _answers("93.184.216.34", "169.254.169.254"),
    }

    def fake(host: str, *_: Any) -> list[tuple[Any, ...]]:
        return answers[host]

    strict = SafeResolver(_SyncReactor(), NetworkPolicy(), getaddrinfo=fake)
    assert resolve(strict, "intranet.test") == [] and resolve(strict, "cgnat.test") == []

    lenient = SafeResolver(_SyncReactor(), NetworkPolicy(allow_private=True), getaddrinfo=fake)
    assert resolve(lenient, "intranet.test") == ["10.1.2.3"]
    for host in ("imds.test", "imds6.test", "aliyun.test", "mixed.test"):
        assert resolve(lenient, host) == [], host
        assert "metadata" in lenient.refused[host]

    listed = NetworkPolicy(allow_private=True, allow_hosts=("169.254.169.254", "aliyun.test"))
    explicit = SafeResolver(_SyncReactor(), listed, getaddrinfo=fake)
    assert resolve(explicit, "imds.test") == ["169.254.169.254"]
    assert resolve(explicit, "aliyun.test") == ["100.100.100.200"]
    assert resolve(explicit, "imds6.test") == []


def test_special_use_ranges_are_private() -> None:
    private = [
        "100.64.0.1",  # carrier-grade NAT
        "100.127.255.254",
        "198.18.0.1",  # benchmarking
        "192.0.0.8",
        "192.0.2.1",
        "203.0.113.5",
        "240.0.0.1",
        "255.255.255.255",
        "224.0.0.251",
        "0.1.2.3",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "fd12:3456::1",
        "fe80::1",
        "2001:db8::1",
        "::",
    ]
    for ip in private:
        assert is_private_address(ipaddress.ip_address(ip)), ip
    for ip in ("8.8.8.8", "100.128.0.1", "2606:4700:4700::1111", "64:ff9b::808:808"):
        assert not is_private_address(ipaddress.ip_address(ip)), ip

    policy = NetworkPolicy(allow_private=True)
    for host in ("169.254.169.254", "[fd00:ec2::254]", "100.100.100.200", "metadata.google.internal"):
        assert policy.check_host(host) is not None, host
    assert policy.check_host("10.0.0.1") is None and policy.check_host("100.64.0.1") is None
    assert NetworkPolicy(allow_hosts=("10.0.0.0/8",)).check_host("10.9.9.9") is None
    assert NetworkPolicy().check_host("10.9.9.9") is not None


# The spider process resolves rebind.test to a public address the first time (SafetyMiddleware's
# early check) and to 127.0.0.1 afterwards (the connection): the server there must see nothing.
REBINDING_DNS = """
import socket
_real_getaddrinfo, _calls = socket.getaddrinfo, {}
def _answer(host):
    _calls[host] = _calls.get(host, 0) + 1
    return "93.184.216.34" if _calls[host] == 1 else "127.0.0.1"
def _getaddrinfo(host, *args, **kwargs):
    if host == "rebind.test":
        host = _answer(host)
    return _real_getaddrinfo(host, *args, **kwargs)
def _gethostbyname(host):
    return _answer(host) if host == "rebind.test" else _real_gethostbyname(host)
_real_gethostbyname = socket.gethostbyname
socket.getaddrinfo, socket.gethostbyname = _getaddrinfo, _gethostbyname
"""


@pytest.mark.slow
def test_dns_rebinding_to_a_private_address_never_connects(tmp_path: Path, serve: Any) -> None:
    site = serve(lambda path: (200, HTML, page("Internal admin")))
    start = f"http://rebind.test:{site.port}/"
    config = crawl_yaml(tmp_path, [start], allow_private_networks=False)
    stats, _ = spider(config, "rebind", prelude=REBINDING_DNS)

    assert dict(site.requests) == {}
    row = rows_of(config, "rebind")[start]
    assert row.body is None and "127.0.0.1" in (row.skip_reason or "")
    assert stats["private_refused"] == 1 and stats["pages_stored"] == 0, row.skip_reason


@pytest.mark.slow
def test_metadata_addresses_are_refused_with_private_networks_allowed(tmp_path: Path, serve: Any) -> None:
    site = serve(lambda path: (200, HTML, page("Home")) if path == "/" else None)
    metadata = [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ]
    config = crawl_yaml(tmp_path, [site.url, *metadata], download_timeout=5)
    stats, _ = spider(config, "metadata")

    rows = rows_of(config, "metadata")
    assert stored(rows) == {site.url}
    for url in metadata:
        assert "metadata" in (rows[url].skip_reason or ""), rows[url].skip_reason
    assert stats["private_refused"] == 2


def _proxy_route(path: str) -> Answer | None:
    # A proxy gets absolute URLs; this one answers every page itself.
    if path.startswith("http://") and not path.endswith("/robots.txt"):
        return 200, HTML, page(f"Proxied {path}")
    return None


@pytest.mark.slow
def test_proxy_from_the_environment_is_ignored(tmp_path: Path, serve: Any) -> None:
    proxy = serve(_proxy_route)
    site = serve(lambda path: (200, HTML, page("Home")) if path == "/" else None)
    config = crawl_yaml(tmp_path, [site.url])
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy")}
    env.update({"PYTHONPATH": str(REPO), "http_proxy": proxy.url, "HTTP_PROXY": proxy.url})
    spider(config, "envproxy", env=env)

    assert dict(proxy.requests) == {}
    assert stored(rows_of(config, "envproxy")) == {site.url}


@pytest.mark.slow
def test_configured_proxies_are_used(tmp_path: Path, serve: Any) -> None:
    proxy = serve(_proxy_route)
    # site.test does not resolve: only the proxy can answer for it. The proxy is on 127.0.0.1 and
    # private networks are not allowed: a proxy the crawl names is trusted.
    config = crawl_yaml(tmp_path, ["http://site.test/"], allow_private_networks=False, proxy=proxy.url)
    spider(config, "proxy")
    assert stored(rows_of(config, "proxy")) == {"http://site.test/"}
    assert proxy.requests["http://site.test/"] == 1

    config = crawl_yaml(tmp_path, ["http://other.test/"], allow_private_networks=False, use_env_proxy=True)
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update({"PYTHONPATH": str(REPO), "http_proxy": proxy.url})
    spider(config, "envproxy-on", env=env)
    assert proxy.requests["http://other.test/"] == 1


def test_spider_env_keeps_only_what_the_spider_needs() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "PYTHONPATH": "/src",
        "LC_ALL": "C.UTF-8",
        "WEBVEC_HOME": "/data",
        "PGPASSFILE": "/home/u/.pgpass",
        "STATE_DB_URL": "postgresql://u:pw@db/webvec",
        "OPENAI_API_KEY": "sk-secret",
        "PINECONE_API_KEY": "pc-secret",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "GITHUB_TOKEN": "ghp-secret",
        "PREFECT_API_KEY": "pnu-secret",
        "http_proxy": "http://proxy:3128",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    assert spider_env(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "PYTHONPATH": "/src",
        "LC_ALL": "C.UTF-8",
        "WEBVEC_HOME": "/data",
        "PGPASSFILE": "/home/u/.pgpass",
    }
    cfg = parse_crawl(
        {
            "name": CRAWL,
            "source": {"start_urls": ["http://example.org/"], "use_env_proxy": True},
            "state": {"url_env": "STATE_DB_URL"},
        }
    )
    kept = spider_env(environ, cfg)
    assert kept["STATE_DB_URL"] == environ["STATE_DB_URL"]
    assert kept["http_proxy"] == kept["HTTPS_PROXY"] == "http://proxy:3128"
    assert not {"OPENAI_API_KEY", "PINECONE_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"} & set(kept)
    assert "PREFECT_API_KEY" not in kept


def test_spider_command() -> None:
    command = spider_command("crawls/x.yaml", "r1", "/tmp/s.json", ["http://a/"], max_seconds=90)
    assert command[1:] == [
        "-m",
        "spiders.run",
        "--crawl",
        "crawls/x.yaml",
        "--run-id",
        "r1",
        "--stats-file",
        "/tmp/s.json",
        "--max-seconds",
        "90.0",
        "--urls",
        "http://a/",
    ]
    assert command[0] == sys.executable


# -- 12. crawler traps -----------------------------------------------------------------------------

PAGES = ["/", "/a", "/b", "/c", "/d", "/e"]


def _session_links() -> list[str]:
    """Links to every page, each with a session id that is new on every response."""
    token = secrets.token_hex(16)
    letters = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(24))
    return [
        f"/;jsessionid={token.upper()}",
        f"/a;jsessionid={token}?view=full",
        f"/b?PHPSESSID={token}",
        f"/c?sid={token}&lang=en",
        f"/d?ASPSESSIONIDQCDBDDQS={letters}",
        f"/e?CFID={secrets.randbelow(10**6)}&CFTOKEN={secrets.randbelow(10**8)}&sessionid={token}",
    ]


@pytest.mark.slow
def test_session_ids_in_links_do_not_multiply_pages(tmp_path: Path, serve: Any) -> None:
    def route(target: str) -> Answer | None:
        path = target.split("?", 1)[0].split(";", 1)[0]
        return (200, HTML, page(path, *_session_links())) if path in PAGES else None

    site = serve(route)
    config = crawl_yaml(tmp_path, [site.url], max_depth=5, max_pages=500)
    stats, _ = spider(config, "sessions")

    by_page = Counter(target.split("?", 1)[0].split(";", 1)[0] for target in site.requests.elements())
    assert by_page == Counter({p: 1 for p in [*PAGES, "/robots.txt"]})
    assert len(stored(rows_of(config, "sessions"))) == len(PAGES)
    assert stats["complete"] is True


@pytest.mark.slow
def test_max_duration_ends_an_endless_slow_crawl_incomplete(tmp_path: Path, serve: Any) -> None:
    def route(path: str) -> Answer | None:
        if not path.startswith("/n/"):
            return (200, HTML, page("Start", "/n/0")) if path == "/" else None
        time.sleep(0.3)
        n = int(path[3:])
        return 200, HTML, page(path, f"/n/{2 * n + 1}", f"/n/{2 * n + 2}")

    site = serve(route)
    config = crawl_yaml(tmp_path, [site.url], max_duration="2s", max_depth=100, max_pages=100_000)
    stats, _ = spider(config, "slow")

    assert stats["finish_reason"] == "closespider_timeout"
    assert stats["complete"] is False
    assert stats["pages_stored"] >= 1


@pytest.mark.slow
def test_hard_deadline_stops_a_hung_spider(tmp_path: Path, serve: Any) -> None:
    release = threading.Event()

    def route(path: str) -> Answer | None:
        if path == "/robots.txt":
            return None
        release.wait(120)  # a server that accepts and never answers
        return 200, HTML, page("Too late")

    site = serve(route)
    config = crawl_yaml(tmp_path, [site.url], download_timeout=600)
    try:
        stats, _ = spider(config, "hung", "--max-seconds", "3", expect_rc=3)
    finally:
        release.set()
    assert stats["complete"] is False and stats["finish_reason"] == "deadline"
