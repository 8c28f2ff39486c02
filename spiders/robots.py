"""robots.txt as RFC 9309 says, and its Crawl-delay: :class:`RobotsPolicyMiddleware`.

It replaces Scrapy's RobotsTxtMiddleware, which allows everything when robots.txt cannot be fetched
(a 5xx or a dropped connection: disallowed pages would be crawled and indexed) and ignores Crawl-delay.
What it does with each host (scheme + host + port, RFC 9309 §2.3), once per run:

- robots.txt is fetched through the whole downloader chain, so failures are retried with backoff and
  Retry-After (:mod:`spiders.retry`), and up to five redirects are followed (§2.3.1.2).
- **2xx**: parsed with Protego (Scrapy's ``ROBOTSTXT_PARSER``); ``Disallow`` rules apply as before.
- **4xx** (404, 403, 410, ...), more than five redirects, or a redirect that leads nowhere: robots.txt
  is "unavailable", every page is allowed (§2.3.1.3).
- **5xx, 429, or no response** (connection refused or reset, timeout, DNS failure), after the retries:
  robots.txt is "unreachable", the whole host is disallowed for this run (§2.3.1.4). 429 counts as
  unreachable, as Google treats it: it asks the crawler to back off, it does not say there are no rules.
  Its pages become rows skipped with kind ``robots`` and a reason starting "robots.txt unreachable".
- **Crawl-delay** (Protego's ``crawl_delay`` for our user agent): the host's downloader slot sends one
  request at a time, at least that many seconds apart (no random jitter below it; AutoThrottle may not
  lower it). A host asking for more than ``source.max_crawl_delay`` is skipped, as Nutch and
  StormCrawler do (``fetcher.max.crawl.delay``, default 30 s): its pages become rows skipped with kind
  ``crawl_delay``, and robots.txt is the only request it gets.

Downloader slots are per host name (Scrapy's default), robots.txt per host and port; two ports of one
host asking different Crawl-delays share the larger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.http.request import NO_CALLBACK
from scrapy.robotstxt import RobotParser
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler, load_object
from twisted.internet.defer import Deferred

from ingest.model import SkipKind
from spiders.middlewares import RequestRefused
from spiders.resolver import installed_resolver
from spiders.retry import failure_cause

if TYPE_CHECKING:
    from scrapy.core.downloader import Downloader
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five consecutive redirects
# RFC 9309 §2.5 asks crawlers to parse at least 500 KiB; Scrapy cannot cut a body short, so a larger
# cap (ten times that) keeps any real robots.txt readable. A bigger one fails like an unreachable one.
ROBOTS_MAX_BYTES = 5 * 1024 * 1024
ROBOTS_PRIORITY = 1000  # robots.txt before anything else of its host (Scrapy's value)


@dataclass(frozen=True)
class HostPolicy:
    """What robots.txt decided for one host: its rules, or a refusal of the whole host."""

    parser: RobotParser | None = None  # None: no rules, everything allowed
    refusal: tuple[SkipKind, str] | None = None  # (kind, reason) for every page of the host


class RobotsPolicyMiddleware:
    """Obey robots.txt with RFC 9309's failure rules and Crawl-delay (see the module docstring).

    Settings: ``ROBOTSTXT_OBEY`` (off: the middleware is not loaded), ``ROBOTSTXT_PARSER``,
    ``ROBOTSTXT_USER_AGENT`` / ``USER_AGENT``, ``WEBVEC_MAX_CRAWL_DELAY`` (``source.max_crawl_delay``),
    ``RETRY_TIMES`` (to name the attempts in a reason).
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        if not settings.getbool("ROBOTSTXT_OBEY"):
            raise NotConfigured
        self.crawler = crawler
        self.user_agent: str = settings.get("ROBOTSTXT_USER_AGENT") or settings.get("USER_AGENT")
        self.max_crawl_delay = settings.getfloat("WEBVEC_MAX_CRAWL_DELAY", 30.0)
        self.download_delay = settings.getfloat("DOWNLOAD_DELAY")
        retries = settings.getint("RETRY_TIMES") if settings.getbool("RETRY_ENABLED") else 0
        self.attempts = 1 + retries
        self.retried_exceptions = tuple(load_object(x) for x in settings.getlist("RETRY_EXCEPTIONS"))
        self._parser_cls: Any = load_object(settings.get("ROBOTSTXT_PARSER"))
        self._policies: dict[str, HostPolicy] = {}
        self._waiting: dict[str, list[Deferred[HostPolicy]]] = {}  # netloc -> requests awaiting it
        self._paced: set[str] = set()  # downloader slot keys slowed down by a Crawl-delay

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Scrapy's constructor hook."""
        return cls(crawler)

    @property
    def _downloader(self) -> Downloader:
        return self.crawler.engine.downloader

    async def process_request(self, request: Request) -> None:
        """Raise RequestRefused for a refused host, IgnoreRequest for a disallowed URL."""
        obeyed = urlparse_cached(request).scheme in ("http", "https")
        if obeyed and not request.meta.get("dont_obey_robotstxt"):
            policy = await self.policy_for(request)
            if policy.refusal is not None:
                kind, reason = policy.refusal
                self.crawler.stats.inc_value(f"webvec/robots/refused_{kind}")
                raise RequestRefused(kind, reason)
            if policy.parser is not None and not policy.parser.allowed(request.url, self.user_agent):
                self.crawler.stats.inc_value("robotstxt/forbidden")
                raise IgnoreRequest("Forbidden by robots.txt")
        # After the policy is known (the first page of a host waits for it): AutoThrottle would
        # otherwise lower the slot's delay below the Crawl-delay on this request's response.
        if self._downloader.get_slot_key(request) in self._paced:
            request.meta.setdefault("autothrottle_dont_adjust_delay", True)

    async def policy_for(self, request: Request) -> HostPolicy:
        """The policy of ``request``'s host, fetching its robots.txt on first use."""
        parts = urlparse_cached(request)
        netloc = parts.netloc
        if netloc in self._policies:
            return self._policies[netloc]
        if netloc in self._waiting:
            # Each waiter gets its own Deferred: awaiting one shared Deferred from several coroutines
            # hands the result to the first only (Deferred.asFuture consumes it).
            waiter: Deferred[HostPolicy] = Deferred()
            self._waiting[netloc].append(waiter)
            return await maybe_deferred_to_future(waiter)
        self._waiting[netloc] = []
        try:
            policy = await self._fetch(f"{parts.scheme}://{netloc}/robots.txt", request)
        except Exception as exc:  # a bug here must not leave other requests waiting forever
            policy = self._unreachable(netloc, f"internal error {type(exc).__name__}")
        self._policies[netloc] = policy
        for waiter in self._waiting.pop(netloc):
            waiter.callback(policy)
        return policy

    async def _fetch(self, url: str, request: Request) -> HostPolicy:
        netloc = urlparse_cached(request).netloc
        robots_request = Request(
            url,
            priority=ROBOTS_PRIORITY,
            callback=NO_CALLBACK,
            meta={
                "dont_obey_robotstxt": True,
                "redirect_ttl": ROBOTS_MAX_REDIRECTS,
                "download_maxsize": ROBOTS_MAX_BYTES,
            },
        )
        self.crawler.stats.inc_value("robotstxt/request_count")
        try:
            response = await self.crawler.engine.download_async(robots_request)
        except RequestRefused as exc:  # e.g. a redirect to a private address
            if exc.kind == "private":  # the host itself is (or now resolves to) a refused address
                return HostPolicy(refusal=(SkipKind.PRIVATE, exc.reason))
            return self._unreachable(netloc, exc.reason)
        except IgnoreRequest as exc:  # more than five redirects: "unavailable" (RFC 9309 §2.3.1.2)
            return self._unavailable(netloc, str(exc))
        except Exception as exc:
            resolver = installed_resolver()
            host = urlparse_cached(request).hostname or ""
            refused = resolver.refused.get(host) if resolver is not None else None
            if refused is not None:  # the name now resolves to a refused address: the host is private
                return HostPolicy(refusal=(SkipKind.PRIVATE, refused))
            retried = self.attempts > 1 and isinstance(exc, self.retried_exceptions)
            tail = f" after {self.attempts} attempts" if retried else ""
            return self._unreachable(netloc, f"{failure_cause(exc)}{tail}")
        return await self._read(response, netloc, request)

    async def _read(self, response: Response, netloc: str, request: Request) -> HostPolicy:
        status = response.status
        self.crawler.stats.inc_value("robotstxt/response_count")
        self.crawler.stats.inc_value(f"robotstxt/response_status_count/{status}")
        if status == 429 or status >= 500:
            retries = response.request.meta.get("retry_times", 0) if response.request is not None else 0
            tail = f" after {retries + 1} attempts" if retries else ""
            return self._unreachable(netloc, f"http {status}{tail}")
        if not 200 <= status < 300:
            return self._unavailable(netloc, f"http {status}")
        parser: RobotParser = build_from_crawler(self._parser_cls, self.crawler, response.body)
        await self.crawler.signals.send_catch_log_async(
            signal=signals.robots_parsed, robotparser=parser, request=request
        )
        delay = parser.crawl_delay(self.user_agent)
        if not delay:
            return HostPolicy(parser)
        if delay > self.max_crawl_delay:
            reason = (
                f"crawl-delay too long: robots.txt of {netloc} asks {delay:g} s between requests, "
                f"over source.max_crawl_delay ({self.max_crawl_delay:g} s)"
            )
            logger.warning("skipping %s: %s", netloc, reason)
            return HostPolicy(parser, refusal=(SkipKind.CRAWL_DELAY, reason))
        self._pace(request, delay)
        logger.info("%s asks for a Crawl-delay of %g s: one request at a time, that far apart", netloc, delay)
        return HostPolicy(parser)

    def _unreachable(self, netloc: str, cause: str) -> HostPolicy:
        reason = (
            f"robots.txt unreachable: {cause}; the host {netloc} is fully disallowed for this run (RFC 9309)"
        )
        logger.warning("%s", reason)
        return HostPolicy(refusal=(SkipKind.ROBOTS, reason))

    def _unavailable(self, netloc: str, cause: str) -> HostPolicy:
        logger.info(
            "robots.txt of %s unavailable (%s): no rules, all pages allowed (RFC 9309)", netloc, cause
        )
        return HostPolicy()

    def _pace(self, request: Request, delay: float) -> None:
        """Make the request's downloader slot honour ``delay``: one request at a time, no jitter below."""
        downloader = self._downloader
        key = downloader.get_slot_key(request)
        delay = max(delay, self.download_delay)
        # DOWNLOAD_SLOTS entries apply to slots created later (Scrapy drops idle slots after a minute).
        slot_settings = downloader.per_slot_settings.setdefault(key, {})
        slot_settings["delay"] = max(delay, float(slot_settings.get("delay", 0.0)))
        slot_settings["jitter"] = 0.0
        slot_settings["concurrency"] = 1
        slot = downloader.slots.get(key)
        if slot is not None:
            slot.delay = slot_settings["delay"]
            slot.jitter = 0.0
            slot.concurrency = 1
            # Requests already in the slot (another port's robots.txt, a sitemap) passed this middleware
            # before the delay was known; their responses must not let AutoThrottle lower it either.
            for queued in slot.active:
                queued.meta["autothrottle_dont_adjust_delay"] = True
        self._paced.add(key)
