"""Downloader middleware of the webvec spider: network safety and redirect admission."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Self

from scrapy import Request
from scrapy.downloadermiddlewares.httpproxy import HttpProxyMiddleware
from scrapy.exceptions import IgnoreRequest, NotConfigured

from ingest.urls import host_of
from spiders.resolver import installed_resolver, network_policy

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class RequestRefused(IgnoreRequest):
    """A request webvec refused before sending it; ``kind`` says why (private, offsite, duplicate)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class SafetyMiddleware:
    """Refuse requests to private, loopback, link-local, special-use and cloud-metadata addresses.

    The crawl's :class:`ingest.urls.NetworkPolicy` (``source.allow_private_networks`` and
    ``source.allow_hosts``) is applied to the host name and to what it resolves to now; the
    connection's own DNS answer is checked again by :class:`spiders.resolver.SafeResolver`, and a name
    that resolver refused is refused here from then on (the retry of the failed download included).

    Every request passes here, redirects included (Scrapy schedules a redirect as a new request that
    goes through the whole downloader middleware chain again), so a public page redirecting to
    ``http://169.254.169.254/`` or ``http://localhost/`` is refused too. Set
    ``source.allow_private_networks: true`` to crawl an intranet or a local test server; metadata
    addresses stay refused unless listed in ``source.allow_hosts``.

    Redirected requests are then shown to the spider's ``admit_redirect`` hook, which refuses
    redirects off the allowed domains and to URLs that are already being crawled on their own.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.policy = network_policy(crawler.settings)
        self._warned_resolver = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Scrapy's constructor hook."""
        return cls(crawler)

    def _refusal(self, host: str) -> str | None:
        reason = self.policy.check_host(host)
        if reason is not None:
            return reason
        resolver = installed_resolver()
        if resolver is None:
            if not self._warned_resolver:
                self._warned_resolver = True
                logger.warning(
                    "TWISTED_DNS_RESOLVER is not spiders.resolver.SafeResolver: DNS answers are not "
                    "checked when connections are made (DNS rebinding is not prevented)"
                )
            return None
        return resolver.refused.get(host)

    def process_request(self, request: Request) -> None:
        """Raise :class:`RequestRefused` for a request that must not be sent."""
        host = host_of(request.url)
        reason = self._refusal(host)
        if reason is not None:
            via = " (reached by a redirect)" if request.meta.get("redirect_urls") else ""
            raise RequestRefused("private", f"{reason}{via}")
        if request.meta.get("redirect_urls"):
            spider: Any = self.crawler.spider
            admit = getattr(spider, "admit_redirect", None)
            if admit is not None:
                admit(request)


class ConfiguredProxyMiddleware(HttpProxyMiddleware):
    """Scrapy's HttpProxyMiddleware, but proxies come from the crawl definition, not the environment.

    ``source.proxy`` sends every request through that proxy; ``source.use_env_proxy: true`` restores
    Scrapy's default of honouring ``http_proxy``/``https_proxy``/``no_proxy``. Otherwise proxy variables
    in the environment are ignored: a proxy the user did not choose for this crawl would see (and
    could alter) every page, and would resolve names where the spider's resolver cannot check them.
    A ``proxy`` key in a request's meta still wins, as in Scrapy.
    """

    def __init__(self, proxy: str | None, use_env: bool, auth_encoding: str | None = "latin-1") -> None:
        super().__init__(auth_encoding)
        if not use_env:
            self.proxies = {}
        self.proxy = proxy

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Scrapy's constructor hook; not configured when the crawl uses no proxy."""
        proxy = crawler.settings.get("WEBVEC_PROXY") or None
        use_env = crawler.settings.getbool("WEBVEC_USE_ENV_PROXY")
        if not proxy and not use_env:
            raise NotConfigured
        return cls(proxy, use_env, crawler.settings.get("HTTPPROXY_AUTH_ENCODING"))

    def process_request(self, request: Request, spider: Any = None) -> None:
        """Route the request through ``source.proxy`` (when set), else as Scrapy would."""
        if self.proxy and "proxy" not in request.meta:
            request.meta["proxy"] = self.proxy
        super().process_request(request)
