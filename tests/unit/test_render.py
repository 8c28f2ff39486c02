"""source.render without a browser: the app-shell heuristic, the browser path, the request guard, the
settings, and that a plain crawl never imports Playwright (issue 13)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from ingest.config import SourceConfig
from ingest.render import BROWSER_ENV, DEFAULT_BROWSER, browser_path, looks_like_app_shell, renderer_problem
from ingest.urls import NetworkPolicy
from spiders.render import BrowserRequestGuard, host_resolver_rules, render_settings
from spiders.settings import settings_for
from tests.conftest import REPO

ARTICLE = "<p>" + "Rivers shape valleys and carry sediment to the sea over long periods. " * 10 + "</p>"


@pytest.mark.parametrize(
    "html",
    [
        b'<html><body><div id="root"></div><script src="/main.js"></script></body></html>',
        b"<html><body><div id=app>Loading\xe2\x80\xa6</div><script>render()</script>"
        b"<noscript>You need to enable JavaScript to run this app. "
        + b"x" * 300
        + b"</noscript></body></html>",
        b"<html><head><script src=a.js></script></head></html>",  # no body at all
    ],
)
def test_app_shells_are_recognised(html: bytes) -> None:
    assert looks_like_app_shell(html)


@pytest.mark.parametrize(
    "html",
    [
        f"<html><body><article>{ARTICLE}</article><script src=a.js></script></body></html>".encode(),
        b"<html><body><p>Short page, no scripts.</p></body></html>",  # short but static
        b'<html><body><div id="root"></div><script type="x"></script></body></html>',  # an empty script
        b"",
        b"   ",
    ],
)
def test_pages_with_text_or_without_scripts_are_not_shells(html: bytes) -> None:
    assert not looks_like_app_shell(html)


def test_browser_path_prefers_the_config_then_the_environment() -> None:
    assert browser_path("/opt/chrome", {BROWSER_ENV: "/env/chromium"}) == "/opt/chrome"
    assert browser_path(None, {BROWSER_ENV: "/env/chromium"}) == "/env/chromium"
    assert browser_path(None, {}) == DEFAULT_BROWSER == "/usr/bin/chromium"


def _source(**kw: Any) -> SourceConfig:
    return SourceConfig(start_urls=["https://docs.example.com/"], **kw)


def test_render_keys_have_defaults_and_bounds() -> None:
    src = _source()
    assert (src.render, src.render_concurrency, src.browser_path) == ("never", 2, None)
    assert src.render_timeout_s == 30
    for bad in ({"render": "sometimes"}, {"render_concurrency": 0}, {"render_concurrency": 17},
                {"render_timeout_s": 0.5}, {"render_timeout_s": 301}, {"browser_path": ""}):  # fmt: skip
        with pytest.raises(ValidationError):
            _source(**bad)


def test_plain_crawls_get_no_playwright_settings() -> None:
    src = _source()
    assert render_settings(src) == {}
    assert "DOWNLOAD_HANDLERS" not in settings_for(src)


def test_render_settings_bound_pages_refuse_downloads_and_launch_the_configured_browser() -> None:
    src = _source(render="auto", render_concurrency=3, browser_path="/opt/chromium", render_timeout_s=12)
    s = render_settings(src)
    assert s["DOWNLOAD_HANDLERS"]["https"].startswith("scrapy_playwright.")
    assert s["PLAYWRIGHT_LAUNCH_OPTIONS"]["executable_path"] == "/opt/chromium"
    assert s["PLAYWRIGHT_MAX_PAGES_PER_CONTEXT"] == 3 and s["PLAYWRIGHT_MAX_CONTEXTS"] == 1
    assert s["PLAYWRIGHT_CONTEXTS"]["default"]["accept_downloads"] is False
    assert s["PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT"] == 12_000
    assert isinstance(s["PLAYWRIGHT_ABORT_REQUEST"], BrowserRequestGuard)
    assert (
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE docs.example.com, EXCLUDE *.docs.example.com"
        in (s["PLAYWRIGHT_LAUNCH_OPTIONS"]["args"])
    )


def test_host_resolver_rules_keep_only_the_allowed_domains() -> None:
    rules = host_resolver_rules(["example.com", "127.0.0.1"])
    assert rules == "MAP * ~NOTFOUND, EXCLUDE example.com, EXCLUDE *.example.com, EXCLUDE 127.0.0.1"


class _Request:
    """The two attributes of Playwright's Request the guard reads."""

    def __init__(self, url: str, resource_type: str = "xhr") -> None:
        self.url = url
        self.resource_type = resource_type


@pytest.mark.parametrize(
    ("url", "kind", "policy", "aborted", "reason"),
    [
        ("http://127.0.0.1:8000/data.json", "xhr", NetworkPolicy(allow_private=True), False, None),
        ("http://127.0.0.1:8000/data.json", "xhr", NetworkPolicy(), True, "private"),
        ("http://evil.example.net/x.js", "script", NetworkPolicy(allow_private=True), True, "offsite"),
        ("http://169.254.169.254/latest/", "fetch", NetworkPolicy(allow_private=True), True, "private"),
        ("http://127.0.0.1:8000/logo.png", "image", NetworkPolicy(allow_private=True), True, "resource"),
        ("ws://127.0.0.1:8000/socket", "websocket", NetworkPolicy(allow_private=True), True, "scheme"),
        ("file:///etc/passwd", "document", NetworkPolicy(allow_private=True), True, "scheme"),
    ],
)
def test_guard_aborts_what_the_crawl_may_not_reach(
    url: str, kind: str, policy: NetworkPolicy, aborted: bool, reason: str | None
) -> None:
    # 169.254.169.254 is on the allowed domains here: the metadata address is refused all the same.
    guard = BrowserRequestGuard(["127.0.0.1", "169.254.169.254"], policy)
    assert asyncio.run(guard(_Request(url, kind))) is aborted
    assert guard.blocked == ({reason: 1} if reason else {})


def test_a_plain_crawl_never_imports_playwright() -> None:
    code = (
        "import sys; import spiders.spiders.config_spider, spiders.settings, spiders.render; "
        "assert not [m for m in sys.modules if 'playwright' in m], 'playwright imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_the_spider_process_keeps_the_browser_variable_and_nothing_secret() -> None:
    from spiders.run import spider_env

    env = spider_env({BROWSER_ENV: "/opt/chromium/chrome", "OPENAI_API_KEY": "sk-secret"})
    assert env == {BROWSER_ENV: "/opt/chromium/chrome"}


def test_preflight_names_a_missing_browser(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.config import parse_crawl
    from ingest.preflight import preflight

    monkeypatch.setenv(BROWSER_ENV, str(tmp_path / "chromium"))
    # allow_private_networks: no DNS lookup of the start URL in a unit test.
    source = {"start_urls": ["https://docs.example.com/"], "render": "auto", "allow_private_networks": True}
    problems = preflight(parse_crawl({"name": "spa", "source": source}))
    assert [p.level for p in problems if p.field == "source.render"] == ["error"]
    assert renderer_problem(_source(render="never")) is None
    message = renderer_problem(_source(render="always"), {BROWSER_ENV: str(tmp_path / "chromium")})
    assert message and "apt-get install chromium" in message and "WEBVEC_CHROMIUM" in message


def test_autothrottle_adapts_to_the_server_time_of_a_rendered_page() -> None:
    from scrapy.http import HtmlResponse, Request

    from spiders.extensions import ConditionalAutoThrottle
    from spiders.render import render_meta, server_latency

    meta = render_meta("always")
    assert server_latency(meta) is None  # not rendered yet
    meta["playwright_page_methods"][0].result = 0.02
    assert server_latency(meta) == 0.02
    seen: list[float] = []

    class _Probe(ConditionalAutoThrottle):
        def __init__(self) -> None:  # no crawler needed: only _adjust_delay is exercised
            pass

    def record(self: Any, slot: Any, latency: float, response: Any) -> None:
        seen.append(latency)

    probe = _Probe()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("scrapy.extensions.throttle.AutoThrottle._adjust_delay", record)
        url = "https://docs.example.com/"
        rendered = HtmlResponse(url, body=b"", request=Request(url, meta=meta), flags=["playwright"])
        probe._adjust_delay(None, 3.5, rendered)  # 3.5 s of rendering, 20 ms of server
        asked = Request(url, meta=render_meta("auto"))
        unknown = HtmlResponse(url, body=b"", request=asked, flags=["playwright"])
        probe._adjust_delay(None, 3.5, unknown)  # no server time: the delay is left alone
        plain = HtmlResponse(url, body=b"", request=Request(url))
        probe._adjust_delay(None, 0.4, plain)
    assert seen == [0.02, 0.4]
