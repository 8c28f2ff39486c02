"""The spider's DNS resolver: every address a connection will use is checked by the crawl's policy.

:class:`~spiders.middlewares.SafetyMiddleware` checks a request's host before it is sent, but the
connection resolves the name again; a DNS answer that changes in between (DNS rebinding: public for
the check, 127.0.0.1 or 169.254.169.254 for the connection) would slip through. :class:`SafeResolver`
closes that gap: it is Scrapy's ``TWISTED_DNS_RESOLVER`` (installed as the reactor's name resolver, so
Twisted's HostnameEndpoint, used by Scrapy's HTTP/1.1 handler, and ``connectTCP`` both go through it),
and it hands Twisted only the addresses that :class:`ingest.urls.NetworkPolicy` allows. A refused name
resolves to nothing (the download fails with a DNS lookup error) and is remembered in
:attr:`SafeResolver.refused`, so SafetyMiddleware refuses the retries with the reason.

Answers are not cached here (the system resolver does that); each new connection is checked.
Behind a proxy the resolver sees only the proxy's name: the target is resolved by the proxy, and only
SafetyMiddleware's check of the name applies.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit
from urllib.request import getproxies

from scrapy import signals
from twisted.internet._resolver import GAIResolver
from twisted.internet.interfaces import IAddress, IHostnameResolver, IHostResolution, IResolutionReceiver
from zope.interface import implementer  # type: ignore[import-untyped]

from ingest.urls import NetworkPolicy, parse_ip

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

GetAddrInfo = Callable[..., Sequence[tuple[Any, ...]]]


def network_policy(settings: BaseSettings) -> NetworkPolicy:
    """The crawl's NetworkPolicy from its Scrapy settings (see :func:`spiders.settings.settings_for`)."""
    return NetworkPolicy(
        allow_private=settings.getbool("WEBVEC_ALLOW_PRIVATE_NETWORKS"),
        allow_hosts=tuple(settings.getlist("WEBVEC_ALLOW_HOSTS")),
    )


def proxy_hosts(settings: BaseSettings) -> frozenset[str]:
    """Host names of the proxies the crawl uses: ``source.proxy``, or the environment's with
    ``source.use_env_proxy``."""
    proxies = [settings.get("WEBVEC_PROXY") or ""]
    if settings.getbool("WEBVEC_USE_ENV_PROXY"):
        proxies += [url for scheme, url in getproxies().items() if scheme in ("http", "https")]
    hosts = ((urlsplit(url).hostname or "") for url in proxies if url)
    return frozenset(host.lower() for host in hosts if host)


@implementer(IResolutionReceiver)
class _CheckingReceiver:
    """Holds the answers back until all are in, then passes them on only if every one is allowed.

    (The camelCase methods are Twisted's IResolutionReceiver interface.)
    """

    def __init__(self, resolver: SafeResolver, receiver: Any, host: str) -> None:
        self.resolver = resolver
        # Typed Any: without the mypy-zope plugin, calls through a zope Interface do not type-check.
        self.receiver: Any = receiver
        self.host = host
        self.addresses: list[IAddress] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self.receiver.resolutionBegan(resolution)

    def addressResolved(self, address: IAddress) -> None:
        self.addresses.append(address)

    def _refusal(self) -> str | None:
        if self.host in self.resolver.proxies:
            return None
        for address in self.addresses:
            ip = parse_ip(str(getattr(address, "host", "")))
            if ip is None:
                return f"refused unparseable address {address!r} (host {self.host})"
            reason = self.resolver.policy.check_address(self.host, ip)
            if reason is not None:
                return reason
        return None

    def resolutionComplete(self) -> None:
        reason = self._refusal()
        if reason is None:
            for address in self.addresses:
                self.receiver.addressResolved(address)
        else:
            self.resolver.refuse(self.host, reason)
        self.receiver.resolutionComplete()


@implementer(IHostnameResolver)
class SafeResolver:
    """getaddrinfo in a thread (Twisted's GAIResolver), with every answer checked by ``policy``.

    The names in ``proxies`` (the crawl's configured proxies) are exempt: the user chose them, and
    they may well be on a private network. Only the proxy's own name is trusted, not its address, so
    a target that resolves to the proxy's address is still checked (and SafetyMiddleware checks
    target names with the plain policy). ``getaddrinfo`` is the seam for tests.
    """

    def __init__(
        self,
        reactor: Any,
        policy: NetworkPolicy,
        getaddrinfo: GetAddrInfo | None = None,
        proxies: frozenset[str] = frozenset(),
    ) -> None:
        self.reactor = reactor
        self.policy = policy
        self.proxies = proxies
        # Looked up at call time by default, so a patched socket.getaddrinfo is seen too.
        lookup: Any = getaddrinfo or (lambda *args: socket.getaddrinfo(*args))
        self._gai = GAIResolver(reactor, getaddrinfo=lookup)
        self.refused: dict[str, str] = {}

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> Self:
        """Scrapy's constructor hook; ``crawler`` is the CrawlerProcess (the resolver is per process).

        The process's own settings lack the crawl's ``source.*`` (ConfigSpider applies them to its
        Crawler, and under ``scrapy crawl`` only after this resolver exists), so the resolver starts
        with the strict default policy and adopts the crawl's when its spider opens, before any
        request. With several crawlers in one process the strict policy stays.
        """
        resolver = cls(reactor, network_policy(crawler.settings), proxies=proxy_hosts(crawler.settings))
        crawlers = list(getattr(crawler, "crawlers", ()))
        if len(crawlers) == 1:
            crawlers[0].signals.connect(resolver._adopt_crawl_policy, signal=signals.spider_opened)
        return resolver

    def _adopt_crawl_policy(self, spider: Spider) -> None:
        assert spider.crawler is not None
        self.policy = network_policy(spider.crawler.settings)
        self.proxies = proxy_hosts(spider.crawler.settings)

    def install_on_reactor(self) -> None:
        """Make this the reactor's name resolver (and, through Twisted's adapter, its simple resolver)."""
        self.reactor.installNameResolver(self)

    def refuse(self, host: str, reason: str) -> None:
        """Remember and log a refused name."""
        if host not in self.refused:
            logger.warning("DNS answer refused: %s", reason)
        self.refused[host] = reason

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """Resolve ``hostName`` and pass on its addresses only if the policy allows every one."""
        receiver: Any = _CheckingReceiver(self, resolutionReceiver, hostName.lower().rstrip("."))
        return self._gai.resolveHostName(receiver, hostName, portNumber, addressTypes, transportSemantics)


def installed_resolver() -> SafeResolver | None:
    """The reactor's SafeResolver, or None when another resolver is installed (or none yet)."""
    from twisted.internet import reactor

    resolver = getattr(reactor, "nameResolver", None)
    return resolver if isinstance(resolver, SafeResolver) else None
