"""Rendering pages in a headless Chromium (``source.render``), through scrapy-playwright.

Only a crawl with ``render: auto`` or ``always`` gets these settings (:func:`render_settings`): a plain
crawl keeps Scrapy's own HTTP/1.1 handler and never imports Playwright. A rendered page request is an
ordinary Scrapy request with ``meta["playwright"] = True``, so it passes the downloader middlewares
first (SafetyMiddleware, robots.txt, retries) and only its download is done by the browser.

What the browser itself requests (scripts, XHR/fetch, frames, navigations a script starts) never passes
Scrapy: :class:`BrowserRequestGuard` (scrapy-playwright's ``PLAYWRIGHT_ABORT_REQUEST``, called for
every request a page makes) aborts

- everything that is not http(s), and hosts off ``source.allowed_domains`` (a script cannot send what it
  read anywhere else, and cannot navigate the page off the site);
- hosts the crawl's :class:`ingest.urls.NetworkPolicy` refuses (private and loopback addresses unless
  ``allow_private_networks``, cloud metadata addresses unless listed in ``allow_hosts``), by name and
  by what the name resolves to now;
- images, media and fonts: they carry no text, and are most of a page's bytes.

Chromium follows HTTP redirects without showing them to the route handler, so the browser is also
launched with ``--host-resolver-rules`` that make every host name off the allowed domains unresolvable;
the spider checks the rendered page's final URL as well. The browser resolves allowed names itself:
unlike a plain download (:class:`spiders.resolver.SafeResolver`), a name that changes its answer
between the guard's check and the browser's connection (DNS rebinding) is not caught.

Downloads are refused (``accept_downloads: False``; the spider fetches a document link plainly), service
workers are blocked, each page has ``source.render_timeout_s`` to load plus :data:`SETTLE_S` for its
scripts' requests to finish, and at most ``source.render_concurrency`` pages are open at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ingest.render import browser_path
from ingest.urls import NetworkPolicy, on_allowed_domains, parse_ip

if TYPE_CHECKING:
    from ingest.config import SourceConfig

logger = logging.getLogger(__name__)

# Request.meta keys. PLAYWRIGHT is scrapy-playwright's own; RENDERED says why webvec asked for it.
PLAYWRIGHT = "playwright"
RENDERED = "webvec_rendered"  # "always", or "auto" (the plain HTML was an app shell)

PLAYWRIGHT_HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
# Resource types that carry no text: not requested at all (they are most of a page's bytes).
SKIPPED_RESOURCES = frozenset({"image", "media", "font"})
# After the load event, how long a page's own requests (an XHR that fetches the article) may still run
# before its HTML is taken as it is. Pages that poll forever never reach "network idle"; they are
# taken after this long rather than failed.
SETTLE_S = 5.0
# Blocked browser requests logged by URL; the rest are only counted.
LOGGED_BLOCKS = 20


class BrowserRequestGuard:
    """Decides, for each request a rendered page makes, whether it is aborted (see the module docstring).

    Called by scrapy-playwright with Playwright's ``Request``; returns True to abort. Counts what it
    blocked in :attr:`blocked`, by reason.
    """

    def __init__(self, domains: list[str], policy: NetworkPolicy) -> None:
        self.domains = [d.lower() for d in domains]
        self.policy = policy
        self.blocked: dict[str, int] = {}
        self._checked: dict[str, str | None] = {}  # host -> refusal (None: allowed), per process

    def refusal(self, url: str, resource_type: str = "document") -> str | None:
        """Why a browser request for ``url`` is refused by its spelling alone, or None (no DNS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return "scheme"
        if resource_type in SKIPPED_RESOURCES:
            return "resource"
        host = (parts.hostname or "").lower()
        if not on_allowed_domains(host, self.domains):
            return "offsite"
        return None

    async def host_refusal(self, host: str) -> str | None:
        """The network policy's verdict on ``host`` (its name, then its addresses), cached per host."""
        if host not in self._checked:
            # getaddrinfo blocks: off the event loop, which the whole crawl shares.
            self._checked[host] = await asyncio.to_thread(self.policy.check_host, host)
        return self._checked[host]

    async def __call__(self, request: Any) -> bool:
        """scrapy-playwright's PLAYWRIGHT_ABORT_REQUEST hook: True aborts ``request``."""
        url: str = request.url
        why = self.refusal(url, request.resource_type)
        if why is None:
            reason = await self.host_refusal((urlsplit(url).hostname or "").lower())
            why = "private" if reason is not None else None
        if why is None:
            return False
        self.blocked[why] = self.blocked.get(why, 0) + 1
        if why in ("offsite", "private", "scheme") and sum(self.blocked.values()) <= LOGGED_BLOCKS:
            logger.info("browser request blocked (%s): %s %s", why, request.resource_type, url[:300])
        return True


def host_resolver_rules(domains: list[str]) -> str:
    """Chromium's ``--host-resolver-rules``: every name off ``domains`` (and their subdomains) fails to
    resolve, which also covers requests the route handler never sees (redirect targets, WebSockets)."""
    excluded = [f"EXCLUDE {d}" if parse_ip(d) else f"EXCLUDE {d}, EXCLUDE *.{d}" for d in domains]
    return ", ".join(["MAP * ~NOTFOUND", *excluded])


# The main document's server time (request sent to last byte), from the page's Navigation Timing entry.
_SERVER_TIME_JS = (
    "() => { const n = performance.getEntriesByType('navigation')[0];"
    " return n ? n.responseEnd - n.requestStart : null; }"
)


async def settle(page: Any, timeout_s: float = SETTLE_S) -> float | None:
    """Wait until the page's own requests are done (network idle), at most ``timeout_s``; returns how
    long the server took to send the page itself, in seconds (None when the browser does not say).

    A scrapy-playwright PageMethod: the XHR that fills in an article usually ends shortly after the
    load event; a page that never goes idle is taken as it is. The server time is what AutoThrottle
    adapts to (:func:`server_latency`): the render time says nothing about the server's load.
    """
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    try:
        await page.wait_for_load_state("networkidle", timeout=timeout_s * 1000)
    except PlaywrightTimeoutError:
        logger.debug("%s did not go network-idle within %.0f s: taken as it is", page.url, timeout_s)
    try:
        ms = await page.evaluate(_SERVER_TIME_JS)
    except PlaywrightError:
        return None
    return float(ms) / 1000 if isinstance(ms, int | float) and ms >= 0 else None


def server_latency(meta: dict[str, Any]) -> float | None:
    """The server time :func:`settle` measured for a rendered response (None: not rendered, unknown)."""
    for method in meta.get("playwright_page_methods") or ():
        if getattr(method, "method", None) is settle:
            result = getattr(method, "result", None)
            return float(result) if isinstance(result, int | float) else None
    return None


def render_failure(exc: BaseException | None) -> str:
    """One line for a page the browser could not render (Playwright's messages carry a call log)."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    if type(exc).__name__ == "TimeoutError":
        return f"rendering timed out (source.render_timeout_s): {first}"
    return f"rendering failed: {type(exc).__name__}: {first}"


def render_meta(why: str) -> dict[str, Any]:
    """The Request.meta that makes scrapy-playwright render a request (``why``: always or auto)."""
    from scrapy_playwright.page import PageMethod

    return {
        PLAYWRIGHT: True,
        RENDERED: why,
        "playwright_page_methods": [PageMethod(settle)],
    }


def render_settings(source: SourceConfig, guard: BrowserRequestGuard | None = None) -> dict[str, Any]:
    """Scrapy settings of ``source.render`` (empty for ``never``: plain crawls never import Playwright)."""
    if source.render == "never":
        return {}
    domains = [d.lower() for d in source.domains]
    if guard is None:
        guard = BrowserRequestGuard(
            domains, NetworkPolicy(source.allow_private_networks, tuple(source.allow_hosts))
        )
    timeout_ms = source.render_timeout_s * 1000
    return {
        # scrapy-playwright's handler downloads requests without meta["playwright"] with Scrapy's own
        # HTTP/1.1 handler (its base class), so robots.txt, sitemaps and documents keep SafeResolver.
        "DOWNLOAD_HANDLERS": {"http": PLAYWRIGHT_HANDLER, "https": PLAYWRIGHT_HANDLER},
        "PLAYWRIGHT_BROWSER_TYPE": "chromium",
        "PLAYWRIGHT_LAUNCH_OPTIONS": {
            "executable_path": browser_path(source.browser_path),
            "headless": True,
            "timeout": timeout_ms,
            "args": [f"--host-resolver-rules={host_resolver_rules(domains)}"],
        },
        # One context, render_concurrency pages: a page holds its download slot until it is rendered.
        "PLAYWRIGHT_MAX_CONTEXTS": 1,
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": source.render_concurrency,
        "PLAYWRIGHT_CONTEXTS": {
            "default": {
                "accept_downloads": False,
                "service_workers": "block",  # a worker's requests would bypass the route handler
                "user_agent": source.user_agent,
                "java_script_enabled": True,
            }
        },
        "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": timeout_ms,
        "PLAYWRIGHT_ABORT_REQUEST": guard,
        # A browser crash must not end the crawl: the next rendered page starts a new one.
        "PLAYWRIGHT_RESTART_DISCONNECTED_BROWSER": True,
    }
