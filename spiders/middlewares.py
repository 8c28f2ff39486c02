"""Downloader middleware of the webvec spider: network safety and redirect admission."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from scrapy import Request
from scrapy.exceptions import IgnoreRequest

from ingest.urls import host_of, is_private_host

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class RequestRefused(IgnoreRequest):
    """A request webvec refused before sending it; ``kind`` says why (private, offsite, duplicate)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class SafetyMiddleware:
    """Refuse requests to private, loopback, link-local and reserved addresses.

    Every request passes here, redirects included (Scrapy schedules a redirect as a new request that
    goes through the whole downloader middleware chain again), so a public page redirecting to
    ``http://169.254.169.254/`` or ``http://localhost/`` is refused too. Set
    ``source.allow_private_networks: true`` to crawl an intranet or a local test server.

    Redirected requests are then shown to the spider's ``admit_redirect`` hook, which refuses
    redirects off the allowed domains and to URLs that are already being crawled on their own.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.allow_private = crawler.settings.getbool("WEBVEC_ALLOW_PRIVATE_NETWORKS")

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Scrapy's constructor hook."""
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        """Raise :class:`RequestRefused` for a request that must not be sent."""
        host = host_of(request.url)
        if not self.allow_private and is_private_host(host):
            via = " (reached by a redirect)" if request.meta.get("redirect_urls") else ""
            raise RequestRefused(
                "private",
                f"refused private or loopback address {host or '(no host)'}{via}; "
                "set source.allow_private_networks: true to crawl it",
            )
        if request.meta.get("redirect_urls"):
            spider: Any = self.crawler.spider
            admit = getattr(spider, "admit_redirect", None)
            if admit is not None:
                admit(request)
