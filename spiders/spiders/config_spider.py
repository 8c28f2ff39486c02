"""ConfigSpider: the one generic spider of webvec, driven entirely by a crawl definition.

What it does with each URL, in order:

1. Scheduling. Every URL is canonicalised with :func:`ingest.urls.canonicalize_url` (fragments and
   tracking parameters dropped) and requested at most once. Followed links must be on an allowed
   domain (or a subdomain of one, :func:`ingest.urls.on_allowed_domains`), pass
   ``source.include``/``source.exclude`` and lie within ``source.max_depth``. Start URLs, ``--urls``
   and URLs listed by sitemaps are always requested (sitemap URLs only on allowed domains and, with
   ``--since``, only with a ``<lastmod>`` on or after that day) and start at depth 0; they are stored
   only if they pass the filters.
   Sitemaps are read lazily (see :meth:`ConfigSpider.start`): one sitemap file at a time, streamed, and
   its URLs handed to Scrapy only as download slots and the ``max_pages`` budget allow, so a sitemap of
   millions of URLs costs flat memory and a handful of requests when ``max_pages`` is small.
   Sitemaps named in ``source.sitemaps`` or ``--sitemaps`` may be anywhere; those they or robots.txt
   point to must be on an allowed domain. A sitemap that cannot be read (an HTTP error, refused, not
   a sitemap, cut short at the size cap; in ``--sitemap-only`` mode also a robots.txt without
   ``Sitemap:`` lines) is an error of the crawl, listed with its reason in the stats file
   (``sitemap_failed``).
2. Safety. :class:`~spiders.middlewares.SafetyMiddleware` refuses private and loopback hosts (redirects
   included) unless ``allow_private_networks``; robots.txt is obeyed unless ``obey_robots: false``
   (:mod:`spiders.robots`: an unreachable robots.txt disallows its host, Crawl-delay is honoured up to
   ``source.max_crawl_delay``). Failed requests are retried with backoff and Retry-After, the whole host
   waiting (:mod:`spiders.retry`).
3. Responses. A 200 HTML page is stored with its body, and so is a PDF or DOCX of ``source.documents``
   (by its Content-Type, or an octet-stream ``.pdf``/``.docx`` by its bytes), under its own cap
   ``source.max_document_bytes``; 304 (after a conditional request) is stored without a body and its
   links are taken from the link cache (an empty list for documents); 404/410 are stored with their status;
   everything else (non-HTML, too large, refused, disallowed, HTTP errors, download errors, duplicates)
   becomes a row with a ``skip_reason`` and no body, so the flow can report it. A page that failed
   after its retries says its final cause (``http 503 after 3 attempts``, ``connection refused after 3
   attempts``); the stats file counts them (``failed_pages``) and lists the first few (``failed``).
4. Sitemap-only crawls. With ``source.follow_links: false`` the start URLs are not fetched and no link
   is followed: the pages are exactly those the sitemaps list (``source.sitemaps``, else the start
   URLs' robots.txt). A listed live page whose ``<lastmod>`` predates its last fetch (the ledger's
   ``last_seen``) is not requested: it is stored as a 304 row, unchanged and seen, so it never goes
   stale for not being fetched.
5. Rendering (``source.render``, :mod:`spiders.render`). With ``always`` every page request (but links
   named like documents) is downloaded and rendered by a headless Chromium through scrapy-playwright;
   with ``auto`` a 200 HTML page that is an app shell (:func:`ingest.render.looks_like_app_shell`) is
   requested once more, rendered, and only the rendered response is stored. Rendered rows say so
   (``FetchedPage.rendered``); the stats file counts them and the browser requests that were blocked.
6. Limits. At most ``source.max_pages`` pages (200 HTML plus 304) are stored; reaching the limit closes
   the spider and the crawl is reported as not complete. ``source.max_duration`` closes it the same way
   (Scrapy's CLOSESPIDER_TIMEOUT, finish reason ``closespider_timeout``).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, DownloadCancelledError, IgnoreRequest, StopDownload
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.linkextractors import IGNORED_EXTENSIONS, LinkExtractor
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.sitemap import sitemap_urls_from_robots
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from ingest.config import CrawlConfig, load_crawl
from ingest.formats import DOCUMENT_SUFFIXES, DOCX_TYPE, OPAQUE_TYPES, BodyKind, declared_kind, sniff
from ingest.model import SkipKind
from ingest.render import looks_like_app_shell
from ingest.state import FetchedPage, StateDB
from ingest.urls import NetworkPolicy, canonicalize_url, host_of, is_http_url, on_allowed_domains
from spiders.frontier import FRONTIER_ID, Frontier
from spiders.middlewares import RequestRefused
from spiders.render import RENDERED, BrowserRequestGuard, render_failure, render_meta, render_settings
from spiders.retry import GAVE_UP, attempts_note, failure_cause
from spiders.settings import WEBVEC_MAX_SITEMAPS, WEBVEC_SITEMAP_MAXSIZE, frontier_settings, settings_for
from spiders.sitemaps import SitemapEntry, iter_sitemap, modified_before, open_sitemap_body, parse_lastmod

logger = logging.getLogger(__name__)

# Request.meta keys of this spider.
KIND = "webvec_kind"  # "page" or "sitemap"
URL = "webvec_url"  # canonical URL as scheduled (before redirects)
DEPTH = "webvec_depth"
ROBOTS = "webvec_robots"  # a robots.txt read for its Sitemap: lines
ADMITTED = "webvec_admitted"  # canonical URL last admitted by admit_redirect
RECEIVED = "webvec_received"  # body bytes received so far
FROM_SITEMAP = "webvec_from_sitemap"  # a sitemap-listed page counted in _sitemap_outstanding
SITEMAP_OPEN = "webvec_sitemap_open"  # a sitemap request counted in _sitemaps_in_flight
LIMIT = "webvec_limit"  # the byte cap of this response: max_page_bytes, or max_document_bytes

# How long the sitemap feed sleeps when it cannot hand out a request, unless a response wakes it first.
FEED_POLL_S = 0.25
# Sitemap files held at once (being fed plus being downloaded): one fed while the next downloads.
SITEMAPS_AHEAD = 2

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Links to documents are followed although they are not HTML: their download stops at the headers and
# the row ("not html: application/pdf") tells the user what the index lacks. Media, archives, code and
# the rest of Scrapy's IGNORED_EXTENSIONS are never requested.
REPORTED_EXTENSIONS = frozenset(
    {"pdf", "doc", "docx", "odt", "rtf", "xls", "xlsx", "ods", "ppt", "pptx", "odp"}
)
GONE_STATUSES = (404, 410)
DOCUMENT_MIME = {BodyKind.PDF: "application/pdf", BodyKind.DOCX: DOCX_TYPE}
FAILED_LISTED = 20  # failed pages listed by URL in the stats file (all are rows in the state DB)
RENDER_LISTED = 20  # pages source.render: auto found to need rendering, listed by URL in the stats file
# Counters of rows without a body that are reported as "pages_skipped" (404/410 are "gone" instead).
# Counters of rows without a body that are reported as "pages_skipped" (404/410 are "gone" instead),
# and the SkipKind each row of that counter is stored with (the flow never reads the reason text).
SKIP_KINDS: dict[str, SkipKind] = {
    "not_html": SkipKind.NOT_HTML,
    "too_large": SkipKind.TOO_LARGE,
    "robots_disallowed": SkipKind.ROBOTS,
    "robots_unreachable": SkipKind.ROBOTS,
    "crawl_delay": SkipKind.CRAWL_DELAY,
    "private_refused": SkipKind.PRIVATE,
    "offsite_redirects": SkipKind.OFFSITE,
    "duplicates": SkipKind.DUPLICATE,
    "filtered": SkipKind.FILTERED,
    "http_errors": SkipKind.HTTP_ERROR,
    "ignored": SkipKind.IGNORED,
    "errors": SkipKind.FAILED,
}
SKIP_CATEGORIES = tuple(SKIP_KINDS)


def _header(response: Response, name: str) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1").strip() if value else None


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


@dataclass
class _SitemapSource:
    """A urlset being fed: its entries, read lazily, and what was made of them."""

    url: str
    entries: Iterator[SitemapEntry]
    listed: int = 0
    new: int = 0


def _as_list(urls: Sequence[str] | str | None) -> list[str]:
    if urls is None:
        return []
    if isinstance(urls, str):  # `scrapy crawl config -a urls="u1 u2"`
        return urls.replace(",", " ").split()
    return list(urls)


def _asked_url(meta: dict[str, Any], url: str) -> str:
    """The URL a request was first made for, before redirects (a refused redirect names its target)."""
    redirects: list[str] = meta.get("redirect_urls") or [url]
    return redirects[0]


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)  # `scrapy crawl config -a since=2026-11-01`


class ConfigSpider(Spider):
    """Crawl one site as a crawl definition says and emit one FetchedPage per requested page.

    Arguments (``process.crawl(ConfigSpider, ...)`` or ``scrapy crawl config -a NAME=VALUE``):
    ``crawl`` a CrawlConfig, a crawl name or a YAML path; ``run_id`` the flow run the pages belong to;
    ``urls`` backfill mode: fetch exactly these URLs, follow nothing; ``sitemap_only`` crawl only the
    URLs the sitemaps list, follow nothing: ``sitemaps`` read these instead of the configured ones,
    ``since`` only entries with a ``<lastmod>`` on or after that day; ``state`` an open StateDB to
    reuse; ``page_store`` the StateDB fetched pages go to (default: ``state``); ``dry_run`` writes no
    link cache; ``frontier`` the run's shared Redis frontier when several processes crawl together
    (``scale.spiders`` > 1, see :mod:`spiders.frontier`).

    With a frontier, the queue and the fingerprints are shared (:mod:`spiders.scheduler`), and so are
    the ``max_pages`` budget, the stored final URLs and per-host politeness (:mod:`spiders.politeness`);
    only the first process (worker 0) yields the start URLs and reads the sitemaps, the others take
    their work from the queue; and a process whose engine is idle stays open until the whole crawl is
    (:meth:`Frontier.drained <spiders.frontier.Frontier.drained>`). Each callback and errback tells the
    frontier when its request is finished (:meth:`frontier_done`).
    """

    name = "config"
    # 304 and 404/410 must reach parse_page; 3xx are followed by RedirectMiddleware first.
    handle_httpstatus_list: ClassVar[list[int]] = [304, *GONE_STATUSES]

    def __init__(
        self,
        crawl: CrawlConfig | str,
        run_id: str,
        urls: Sequence[str] | str | None = None,
        sitemap_only: bool | str = False,
        sitemaps: Sequence[str] | str | None = None,
        since: date | str | None = None,
        state: StateDB | None = None,
        page_store: StateDB | None = None,
        dry_run: bool = False,
        frontier: Frontier | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.frontier = frontier
        self.cfg = crawl if isinstance(crawl, CrawlConfig) else load_crawl(crawl)
        self.run_id = run_id
        self.backfill_urls = list(dict.fromkeys(canonicalize_url(u) for u in _as_list(urls)))
        self.sitemap_only = sitemap_only in (True, "1", "true", "True", "yes")
        self.sitemap_urls = _as_list(sitemaps)  # read instead of source.sitemaps (sitemap-only mode)
        self.since = _as_date(since)  # sitemap entries modified before this day are left out
        self.state = state if state is not None else StateDB(self.cfg.state_url())
        # Where fetched pages go (the pipeline writes them): the ledger's DB, or a dry run's own.
        self.page_store = page_store if page_store is not None else self.state
        self.dry_run = dry_run  # a dry run (`webvec plan`) writes no link cache
        source = self.cfg.web
        self.domains = [d.lower() for d in source.domains]
        self._include = [re.compile(p) for p in source.include]
        self._exclude = [re.compile(p) for p in source.exclude]
        self.documents = {BodyKind(d) for d in source.documents}
        # Documents may be larger than pages: Scrapy's cap (download_maxsize) is then the larger of the
        # two, and the spider applies the right one when the headers say what the response is.
        self.download_maxsize = max(source.max_page_bytes, source.max_document_bytes if self.documents else 0)
        # source.follow_links: false lists the pages by the sitemaps alone, like --sitemap-only, but
        # it is the whole site: unseen pages go stale as in a full crawl.
        self.listed_only = self.sitemap_only or not source.follow_links
        # source.render: a guard for what rendered pages request (its counts go into the stats file).
        self.render = source.render
        self.render_guard = (
            BrowserRequestGuard(
                self.domains, NetworkPolicy(source.allow_private_networks, tuple(source.allow_hosts))
            )
            if self.render != "never"
            else None
        )
        self._render_needed: list[str] = []  # the first RENDER_LISTED app shells (render: auto)
        self._link_extractor = LinkExtractor(
            unique=True, deny_extensions=[e for e in IGNORED_EXTENSIONS if e not in REPORTED_EXTENSIONS]
        )

        self.counts: Counter[str] = Counter()
        self.limit_reached = False
        self.finish_reason: str | None = None
        self._pages = 0  # stored pages: 200 HTML plus 304, capped at max_pages
        self._seen: set[str] = set()  # canonical URLs scheduled, so each is fetched once
        self._finals: set[str] = set()  # canonical final URLs stored, so redirects store a page once
        self._sitemaps_seen: set[str] = set()
        self._sitemap_queue: deque[str] = deque()  # sitemap files (and robots.txt) still to download
        self._sitemap_sources: deque[_SitemapSource] = deque()  # urlsets whose URLs are being fed
        self._sitemaps_in_flight = 0
        self._sitemap_outstanding = 0  # sitemap-listed page requests handed out, not yet answered
        self._wakeup: Deferred[None] | None = None
        self._offsite_sitemaps: set[str] = set()
        self._offsite: set[str] = set()
        self._filtered_links: set[str] = set()
        self._too_deep: set[str] = set()
        self._failed: list[dict[str, str]] = []  # the first FAILED_LISTED failed pages: url, reason
        self._sitemap_failed: list[dict[str, str]] = []  # the first FAILED_LISTED unreadable sitemaps
        self._skipped_hosts: dict[str, str] = {}  # host -> why robots.txt made the spider skip it all

        conditional = self.cfg.sync.conditional_requests and not self.backfill_urls
        self.validators = self.state.page_validators(self.cfg.name) if conditional else {}
        self.link_cache = self.state.load_links(self.cfg.name) if self.validators else {}
        # follow_links: false re-crawls by the sitemaps: a live page whose <lastmod> is older than its
        # last fetch (its ledger last_seen) is not requested at all; it is reported as not modified.
        by_lastmod = conditional and not source.follow_links and not self.sitemap_only
        self.last_fetched = self.state.live_last_seen(self.cfg.name) if by_lastmod else {}
        if self.validators:
            logger.info(
                "conditional requests: %d known pages, %d cached link lists",
                len(self.validators),
                len(self.link_cache),
            )

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        """Create the spider and apply its crawl's settings before Scrapy freezes them."""
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = settings_for(spider.cfg.web)
        settings.update(render_settings(spider.cfg.web, spider.render_guard))
        if spider.frontier is not None:
            settings.update(frontier_settings(spider.cfg.web))
            crawler.signals.connect(spider._on_idle, signal=signals.spider_idle)
        crawler.settings.setdict(settings, priority="spider")
        crawler.signals.connect(spider._on_headers, signal=signals.headers_received)
        crawler.signals.connect(spider._on_bytes, signal=signals.bytes_received)
        return spider

    # -- filters ------------------------------------------------------------------------------
    def allowed_host(self, host: str) -> bool:
        """Whether ``host`` is an allowed domain or a subdomain of one."""
        return on_allowed_domains(host, self.domains)

    def passes_filters(self, url: str) -> bool:
        """``source.include`` (any must match, if given) and ``source.exclude`` (none may match)."""
        if self._include and not any(p.search(url) for p in self._include):
            return False
        return not any(p.search(url) for p in self._exclude)

    @property
    def following(self) -> bool:
        """Whether links of fetched pages are followed (not in backfill, sitemap-only mode or with
        ``source.follow_links: false``)."""
        return not self.backfill_urls and not self.listed_only and not self.limit_reached

    # -- requests -----------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Request | FetchedPage]:
        """Start URLs, then sitemaps and the pages they list; or exactly the backfill URLs.

        Scrapy pulls from ``start()`` eagerly into its scheduler, so the sitemap feed paces itself: a
        sitemap's URLs are handed out one at a time, only while the downloader has a free slot
        (``engine.needs_backout()``) and fewer sitemap pages are unanswered than the remaining
        ``max_pages`` budget plus ``source.concurrency``. A page that fails or is filtered frees its
        slot and the feed refills; once the budget is spent the spider closes and the rest of the
        sitemap is never read. Sitemap files themselves are downloaded one ahead of the feed.
        With a shared frontier only worker 0 does this; the others start from the shared queue.
        """
        if self.frontier is not None and self.frontier.worker != 0:
            return
        try:
            for request in self.start_requests_sync():
                yield request
            async for item in self._sitemap_feed():
                yield item
        finally:
            if self.frontier is not None:  # the others may now take an empty queue for the end
                self.frontier.mark_seeded()

    def start_requests_sync(self) -> Iterator[Request]:
        """The start URLs (or the backfill URLs) as a plain iterator; queues the configured sitemaps."""
        if self.backfill_urls:
            for url in self.backfill_urls:
                yield self._page_request(url, 0)
            return
        source = self.cfg.web
        if not self.listed_only:
            for url in source.start_urls:
                canonical = canonicalize_url(url)
                if canonical not in self._seen:
                    yield self._page_request(canonical, 0)
        sitemaps = self.sitemap_urls or list(source.sitemaps)
        if self.listed_only and not sitemaps:
            origins = {f"{p.scheme}://{p.netloc}" for p in map(urlsplit, source.start_urls)}
            sitemaps = [f"{origin}/robots.txt" for origin in sorted(origins)]
        for url in sitemaps:
            # Named by the user, so allowed wherever it is (a CDN, another host of the site).
            self._queue_sitemap(url, configured=True)

    def _sitemap_failure(self, url: str, reason: str) -> None:
        """A sitemap that could not be read (in full): the pages only it lists are missed."""
        self.counts["sitemap_errors"] += 1
        logger.warning("could not read sitemap %s: %s", url, reason)
        if len(self._sitemap_failed) < FAILED_LISTED:
            self._sitemap_failed.append({"url": url, "reason": reason})

    # -- the lazy sitemap feed ------------------------------------------------------------------
    def _queue_sitemap(self, url: str, *, configured: bool = False, found_in: str = "") -> None:
        if url in self._sitemaps_seen or not is_http_url(url):
            return
        if not configured and not self.allowed_host(host_of(url)):
            # sitemaps.org lets robots.txt point anywhere ("cross submits"), but a crawl fetches only
            # what its definition allows: another host's sitemap is neither fetched nor read.
            if url not in self._offsite_sitemaps:
                self._offsite_sitemaps.add(url)
                logger.warning("sitemap %s (listed in %s) is off the allowed domains: skipped", url, found_in)
            return
        if len(self._sitemaps_seen) >= WEBVEC_MAX_SITEMAPS:
            if self.counts["sitemaps_over_limit"] == 0:
                self.counts["sitemap_errors"] += 1  # pages only those sitemaps list are missed
                logger.warning("more than %d sitemap files: the rest are skipped", WEBVEC_MAX_SITEMAPS)
            self.counts["sitemaps_over_limit"] += 1
            return
        self._sitemaps_seen.add(url)
        self._sitemap_queue.append(url)
        self._wake()

    def _feed_has_room(self) -> bool:
        if self.frontier is not None:
            # Other processes answer most of the feed's requests (and never settle them here): the
            # feed keeps the shared queue stocked instead, one request per lease of the whole crawl,
            # within the crawl's max_pages budget.
            frontier = self.frontier
            if frontier.pages_claimed() >= self.cfg.web.max_pages:
                return False
            if frontier.queue_length() >= self.cfg.web.concurrency * frontier.workers:
                return False
            return not self.crawler.engine.needs_backout()
        remaining = self.cfg.web.max_pages - self._pages
        if self._sitemap_outstanding >= remaining + self.cfg.web.concurrency:
            return False
        return not self.crawler.engine.needs_backout()

    def _next_sitemap_page(self) -> Request | FetchedPage | None:
        """The next new page request of the urlset being fed, or the row of a page its ``<lastmod>``
        shows unmodified (None when all have run out)."""
        while self._sitemap_sources:
            source = self._sitemap_sources[0]
            for entry in source.entries:
                source.listed += 1
                request = self._sitemap_page_request(entry)
                if request is not None:
                    source.new += 1
                    return request
            self._sitemap_sources.popleft()
            logger.info("sitemap %s: %d URLs, %d new", source.url, source.listed, source.new)
        return None

    async def _sitemap_feed(self) -> AsyncIterator[Request | FetchedPage]:
        while not self.limit_reached and self.finish_reason is None and self.crawler.engine.running:
            if self._sitemap_queue and len(self._sitemap_sources) + self._sitemaps_in_flight < SITEMAPS_AHEAD:
                yield self._sitemap_request(self._sitemap_queue.popleft())
                continue
            if self._sitemap_sources and self._feed_has_room():
                request = self._next_sitemap_page()
                if request is not None:
                    yield request
                continue
            if not (self._sitemap_sources or self._sitemap_queue or self._sitemaps_in_flight):
                return  # every sitemap read and fed
            await self._sleep(FEED_POLL_S)
            self._forget_lost_requests()

    def _sitemap_page_request(self, entry: SitemapEntry) -> Request | FetchedPage | None:
        if not is_http_url(entry.loc):
            return None
        if self.since is not None:
            day = parse_lastmod(entry.lastmod)
            if day is None or day < self.since:
                self.counts["sitemap_undated" if day is None else "sitemap_older"] += 1
                return None
        url = canonicalize_url(entry.loc)
        if url in self._seen:
            return None
        if not self.allowed_host(host_of(url)):
            self._offsite.add(url)
            return None
        fetched_at = self.last_fetched.get(url)
        if fetched_at is not None and self.passes_filters(url) and modified_before(entry.lastmod, fetched_at):
            return self._unmodified_row(url)
        self._sitemap_outstanding += 1
        request = self._page_request(url, 0)
        request.meta[FROM_SITEMAP] = True
        return request

    def _unmodified_row(self, url: str) -> FetchedPage:
        """A page the sitemap shows unmodified: stored as a 304 without a request (unchanged, seen)."""
        self._seen.add(url)
        self._finals.add(url)
        self.counts["lastmod_unmodified"] += 1
        etag, last_modified = self.validators.get(url, (None, None))
        return FetchedPage(
            url=url, final_url=url, status=304, etag=etag, last_modified=last_modified, depth=0
        )

    def _settle(self, meta: dict[str, Any]) -> None:
        """A request of the feed got its answer (a response or an error): its slot is free again."""
        if meta.pop(FROM_SITEMAP, False):
            self._sitemap_outstanding = max(0, self._sitemap_outstanding - 1)
            self._wake()
        if meta.pop(SITEMAP_OPEN, False):
            self._sitemaps_in_flight = max(0, self._sitemaps_in_flight - 1)
            self._wake()

    def _forget_lost_requests(self) -> None:
        # Every request ends in a callback or an errback, which settle it; should one ever vanish
        # without either, the feed would wait for it forever and the crawl would never end. When
        # nothing at all is in flight, nothing can still be outstanding.
        engine = self.crawler.engine
        scheduler = engine.scheduler
        scraper_slot = engine.scraper.slot
        busy = (
            bool(engine.downloader.active)
            or (scheduler is not None and scheduler.has_pending_requests())
            or (scraper_slot is not None and not scraper_slot.is_idle())
        )
        if (self._sitemap_outstanding or self._sitemaps_in_flight) and not busy:
            logger.debug(
                "sitemap feed: forgetting %d page and %d sitemap requests that never answered",
                self._sitemap_outstanding,
                self._sitemaps_in_flight,
            )
            self._sitemap_outstanding = self._sitemaps_in_flight = 0

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a response wakes the feed (see :meth:`_wake`)."""
        wakeup: Deferred[None] = Deferred()
        self._wakeup = wakeup
        timer = call_later(seconds, self._wake)
        try:
            await maybe_deferred_to_future(wakeup)
        finally:
            timer.cancel()

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.called:
            wakeup.callback(None)

    def _page_request(
        self,
        url: str,
        depth: int,
        *,
        conditional: bool = True,
        render: str | None = None,
        plain: bool = False,
    ) -> Request:
        """A page request; ``render`` (always, auto) has the browser download and render it, ``plain``
        has Scrapy download it even with ``source.render: always``."""
        self._seen.add(url)
        if render is None and self.render == "always" and not plain and not self._document_link(url):
            render = "always"
        headers: dict[str, str] = {}
        # A rendered request is unconditional: a browser shown a 304 to a navigation it has no cache
        # for renders an empty page. Unchanged pages are still found unchanged by their text's hash.
        if conditional and render is None:
            etag, last_modified = self.validators.get(url, (None, None))
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
        meta: dict[str, Any] = {KIND: "page", URL: url, DEPTH: depth}
        if self.download_maxsize > self.cfg.web.max_page_bytes:
            meta["download_maxsize"] = self.download_maxsize
        if render is not None:
            meta.update(render_meta(render))
        return Request(
            url,
            callback=self.parse_page,
            errback=self.on_page_error,
            headers=headers or None,
            priority=-depth,
            meta=meta,
            # A page re-requested for rendering (render: auto) has been seen already.
            dont_filter=render == "auto",
        )

    @staticmethod
    def _document_link(url: str) -> bool:
        """Whether a URL names a document by its file name (.pdf, .docx, ...): fetched plainly even
        with ``render: always``, since the browser refuses downloads."""
        name = urlsplit(url).path.lower().rsplit("/", 1)[-1]
        return "." in name and name.rsplit(".", 1)[-1] in REPORTED_EXTENSIONS

    def _sitemap_request(self, url: str) -> Request:
        self._sitemaps_in_flight += 1
        meta: dict[str, Any] = {
            KIND: "sitemap",
            SITEMAP_OPEN: True,
            "download_maxsize": max(WEBVEC_SITEMAP_MAXSIZE, self.cfg.web.max_page_bytes),
        }
        if urlsplit(url).path.endswith("/robots.txt"):
            meta[ROBOTS] = True
            meta["dont_obey_robotstxt"] = True
        # Before pages: the pages they list start at depth 0 like the start URLs.
        return Request(
            url, callback=self.parse_sitemap, errback=self.on_sitemap_error, priority=100, meta=meta
        )

    def admit_redirect(self, request: Request) -> None:
        """Called by SafetyMiddleware for each redirected page request; raises RequestRefused to drop it."""
        if request.meta.get(KIND) != "page":
            return
        target = canonicalize_url(request.url)
        if target in (request.meta.get(ADMITTED), request.meta.get(URL)):
            return  # a retry of an admitted redirect, or a redirect back to the URL itself
        if not self.allowed_host(host_of(target)):
            raise RequestRefused("offsite", f"redirected off the allowed domains to {target}")
        if target in self._seen or (self.frontier is not None and self._shared_seen(target)):
            raise RequestRefused("duplicate", f"duplicate: redirects to {target}, crawled on its own")
        self._seen.add(target)
        request.meta[ADMITTED] = target

    def _follow(self, links: Iterable[str], depth: int) -> Iterator[Request]:
        if not self.following:
            return
        next_depth = depth + 1
        for link in links:
            if link in self._seen:
                continue
            if not self.allowed_host(host_of(link)):
                self._offsite.add(link)
            elif not self.passes_filters(link):
                self._filtered_links.add(link)
            elif next_depth > self.cfg.web.max_depth:
                self._too_deep.add(link)
            else:
                yield self._page_request(link, next_depth)

    def _document_by_headers(self, mime: str, url: str) -> BodyKind | None:
        """The document kind (of ``source.documents``) a response's headers promise: by its type, or,
        for an opaque type (octet-stream), by its file name, to be confirmed by its bytes."""
        kind = declared_kind(mime)
        if kind is None and mime in OPAQUE_TYPES:
            suffix = urlsplit(url).path.lower().rsplit("/", 1)[-1]
            kind = next((k for end, k in DOCUMENT_SUFFIXES.items() if suffix.endswith(end)), None)
        return kind if kind in self.documents else None

    def _on_headers(self, headers: Any, request: Request, **_: Any) -> None:
        # Stop the download of a body webvec does not read as soon as its headers say so; parse_page
        # records it. HTML and enabled documents go on, each under its own byte cap.
        if request.meta.get(KIND) not in ("page", "sitemap"):
            return
        request.meta[RECEIVED] = 0
        if request.meta[KIND] == "sitemap":
            return
        content_type = headers.get(b"Content-Type")
        mime = _mime(content_type.decode("latin-1")) if content_type else ""
        document = self._document_by_headers(mime, request.url)
        if mime and mime not in HTML_TYPES and document is None:
            raise StopDownload(fail=False)
        source = self.cfg.web
        limit = source.max_document_bytes if document is not None else source.max_page_bytes
        request.meta[LIMIT] = limit
        length = headers.get(b"Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise StopDownload(fail=True)  # on_page_error records it as too large

    def _on_bytes(self, data: bytes, request: Request, **_: Any) -> None:
        # Scrapy cancels a body that outgrows DOWNLOAD_MAXSIZE with a bare CancelledError; counting the
        # bytes tells that apart from a download cancelled because the crawl is shutting down. A body
        # over its own cap (a page over max_page_bytes when documents may be larger) is stopped here.
        if request.meta.get(KIND) in ("page", "sitemap"):
            request.meta[RECEIVED] = request.meta.get(RECEIVED, 0) + len(data)
            limit = request.meta.get(LIMIT)
            if limit is not None and request.meta[RECEIVED] > limit:
                raise StopDownload(fail=True)

    # -- responses ----------------------------------------------------------------------------
    def parse_page(self, response: Response) -> Iterator[Request | FetchedPage]:
        """Turn one page response into a FetchedPage row and the requests for its links."""
        try:
            yield from self._parse_page(response)
        finally:  # its rows and links are handed on: the request is finished
            self.frontier_done(response.meta)

    def _parse_page(self, response: Response) -> Iterator[Request | FetchedPage]:
        self._settle(response.meta)
        url: str = response.meta[URL]
        depth: int = response.meta[DEPTH]
        final = canonicalize_url(response.url)
        content_type = _header(response, "Content-Type")
        etag = _header(response, "ETag")
        last_modified = _header(response, "Last-Modified")
        row = FetchedPage(
            url=url,
            final_url=final,
            status=response.status,
            content_type=content_type,
            etag=etag,
            last_modified=last_modified,
            depth=depth,
            rendered=response.meta.get(RENDERED),
        )

        if response.status in GONE_STATUSES:
            self.counts["gone"] += 1
            row.skip_reason = f"gone: http {response.status}"
            yield row
            return

        if response.status == 304:
            known_etag, known_last_modified = self.validators.get(url, (None, None))
            cached = self.link_cache.get(final, self.link_cache.get(url))
            # The cached links must come from the version the 304 confirms (the ledger's): a page that
            # served something else in between (a maintenance template) left other links behind.
            links = cached[0] if cached and cached[1] == (known_etag, known_last_modified) else None
            if links is None:
                # Without its links the crawl would stop here: fetch the page again, unconditionally.
                self.counts["refetched"] += 1
                # dont_filter: the URL's fingerprint is in the (shared) set since its first request.
                yield self._page_request(url, depth, conditional=False).replace(dont_filter=True)
                return
            row.etag = etag or known_etag
            row.last_modified = last_modified or known_last_modified
            if self._keep(row, "not_modified"):
                yield row
                yield from self._follow(links, depth)
            elif row.skip_reason:
                yield row
            return

        mime = _mime(content_type)
        document = self._document_by_headers(mime, response.url)
        if document is not None and (declared_kind(mime) == document or sniff(response.body) == document):
            yield from self._store_document(row, response, document)
            return
        is_html = mime in HTML_TYPES if mime else isinstance(response, HtmlResponse)
        if not is_html or not isinstance(response, TextResponse):
            self.counts["not_html"] += 1
            row.skip_reason = f"not html: {mime or 'unknown content type'}"
            row.skip_kind = SkipKind.NOT_HTML
            yield row
            return

        if row.rendered is not None:
            refusal = self._rendered_refusal(row, response)
            if refusal is not None:
                yield refusal
                return
        elif self.render == "auto" and response.status == 200 and looks_like_app_shell(response.body):
            # The HTML is an app shell: its text comes from scripts. Fetched again, rendered, once; the
            # rendered response comes back here and is stored as the page (rendered="auto").
            self.counts["render_needed"] += 1
            if len(self._render_needed) < RENDER_LISTED:
                self._render_needed.append(url)
            request = self._page_request(final, depth, conditional=False, render="auto")
            request.meta[URL] = url  # the URL as scheduled, before any redirect
            yield request
            return

        links = self._extract_links(response)
        try:
            if not self.dry_run:
                self.state.save_links(self.cfg.name, final, links, (etag, last_modified))
        except Exception as exc:  # the link cache only speeds up later runs; this crawl goes on
            logger.warning("could not cache the links of %s: %s", final, type(exc).__name__)

        if not self.passes_filters(final):
            self.counts["filtered"] += 1
            row.skip_reason = "filtered: URL does not pass source.include/source.exclude"
            row.skip_kind = SkipKind.FILTERED
            yield row
            yield from self._follow(links, depth)
            return

        row.body = response.body
        if self._keep(row, "pages_stored"):
            yield row
            yield from self._follow(links, depth)
        elif row.skip_reason:
            row.body = None
            yield row

    def _rendered_refusal(self, row: FetchedPage, response: Response) -> FetchedPage | None:
        """The skipped row of a rendered page that must not be stored, or None to store it.

        Chromium follows redirects (and a script may navigate) without asking Scrapy's middlewares,
        so the page it ended on is checked here; and the rendered HTML (which scripts may have grown
        far beyond the download) is held to ``source.max_page_bytes``.
        """
        self.counts["rendered"] += 1
        if not self.allowed_host(host_of(row.final_url)):
            self.counts["offsite_redirects"] += 1
            row.skip_reason = f"rendered page ended off the allowed domains, at {row.final_url}"
            row.skip_kind = SkipKind.OFFSITE
            return row
        limit = self.cfg.web.max_page_bytes
        if len(response.body) > limit:
            self.counts["too_large"] += 1
            row.skip_reason = f"too large: rendered HTML over source.max_page_bytes ({limit} bytes)"
            row.skip_kind = SkipKind.TOO_LARGE
            return row
        return None

    def _store_document(self, row: FetchedPage, response: Response, kind: BodyKind) -> Iterator[FetchedPage]:
        """A PDF or DOCX response: stored whole for the extraction (which reads it), no links."""
        if not self.passes_filters(row.final_url):
            self.counts["filtered"] += 1
            row.skip_reason = "filtered: URL does not pass source.include/source.exclude"
            row.skip_kind = SkipKind.FILTERED
            yield row
            return
        try:
            if not self.dry_run:
                # No links, but cached all the same: a later 304 for the document needs an entry.
                self.state.save_links(self.cfg.name, row.final_url, [], (row.etag, row.last_modified))
        except Exception as exc:
            logger.warning("could not cache the links of %s: %s", row.final_url, type(exc).__name__)
        if declared_kind(row.content_type) != kind:  # an opaque type, sniffed: say what it is
            row.content_type = DOCUMENT_MIME[kind]
        row.body = response.body
        if self._keep(row, "pages_stored"):
            self.counts["documents"] += 1
            yield row
        elif row.skip_reason:
            row.body = None
            yield row

    def _keep(self, row: FetchedPage, category: str) -> bool:
        """Claim a page slot for a 200/304 row; sets skip_reason on a duplicate final URL."""
        if self.frontier is not None:
            return self._keep_shared(row, category, self.frontier)
        if row.final_url in self._finals:
            self.counts["duplicates"] += 1
            row.skip_reason = f"duplicate: {row.final_url} is already stored in this run"
            row.skip_kind = SkipKind.DUPLICATE
            return False
        if self._pages >= self.cfg.web.max_pages:
            self.counts["over_limit"] += 1  # fetched while the spider was closing; not stored
            return False
        self._finals.add(row.final_url)
        self._pages += 1
        self.counts[category] += 1
        if self._pages >= self.cfg.web.max_pages:
            self._reach_limit()
        return True

    def _keep_shared(self, row: FetchedPage, category: str, frontier: Frontier) -> bool:
        """:meth:`_keep` against the whole crawl's final URLs and max_pages budget."""
        if row.final_url in self._finals or not frontier.claim_final(row.final_url):
            self.counts["duplicates"] += 1
            row.skip_reason = f"duplicate: {row.final_url} is already stored in this run"
            row.skip_kind = SkipKind.DUPLICATE
            return False
        self._finals.add(row.final_url)
        claimed = frontier.claim_page()
        if claimed > self.cfg.web.max_pages:
            self.counts["over_limit"] += 1  # another process spent the budget first
            if not self.limit_reached:
                self._reach_limit()
            return False
        self._pages += 1
        self.counts[category] += 1
        if claimed >= self.cfg.web.max_pages:
            self._reach_limit()
        return True

    def _reach_limit(self) -> None:
        self.limit_reached = True
        logger.info("max_pages (%d) reached: closing the spider", self.cfg.web.max_pages)
        deferred_from_coro(self.crawler.engine.close_spider_async(reason="max_pages"))

    def _extract_links(self, response: TextResponse) -> list[str]:
        links: dict[str, None] = {}
        for link in self._link_extractor.extract_links(response):
            if is_http_url(link.url):
                links[canonicalize_url(link.url)] = None
        return list(links)

    def on_page_error(self, failure: Failure) -> Iterator[FetchedPage | Request]:
        """Record a page request that produced no usable response as a skipped row."""
        request: Request = failure.request  # type: ignore[attr-defined]
        try:
            yield from self._page_error(failure, request)
        finally:
            if failure.value is None or not self._cancelled(request, failure.value):
                self.frontier_done(request.meta)

    def _cancelled(self, request: Request, exc: BaseException) -> bool:
        """Whether a download was cancelled by the spider's closing (not for its size): with a shared
        frontier it stays in flight, and goes back on the queue for the other processes."""
        return isinstance(exc, DownloadCancelledError | CancelledError) and not (
            "max size" in str(exc) or request.meta.get(RECEIVED, 0) > self.cfg.web.max_page_bytes
        )

    def _page_error(self, failure: Failure, request: Request) -> Iterator[FetchedPage | Request]:
        self._settle(request.meta)
        exc = failure.value
        url = request.meta.get(URL) or canonicalize_url(request.url)
        final = canonicalize_url(request.url)
        status = 0
        if request.meta.get(RENDERED) and "download" in str(exc).lower():
            # The browser refuses downloads (a document behind a URL without a telling name): fetch
            # it plainly, once, so it is stored or skipped as any plain response would be.
            self.counts["render_downloads"] += 1
            retry = self._page_request(url, request.meta.get(DEPTH, 0), conditional=False, plain=True)
            yield retry.replace(dont_filter=True)
            return
        if isinstance(exc, RequestRefused):
            category = {
                "private": "private_refused",
                "offsite": "offsite_redirects",
                SkipKind.ROBOTS: "robots_unreachable",
                SkipKind.CRAWL_DELAY: "crawl_delay",
                SkipKind.FAILED: "errors",  # its server asked for a Retry-After over the cap
            }.get(exc.kind, "duplicates")
            reason = exc.reason
            if category in ("robots_unreachable", "crawl_delay"):
                self._skipped_hosts.setdefault(urlsplit(request.url).netloc, reason)
        elif isinstance(exc, HttpError):
            status = exc.response.status
            final = canonicalize_url(exc.response.url)
            category = "errors" if status >= 500 or status == 429 else "http_errors"
            gave_up = request.meta.get(GAVE_UP)
            reason = f"http {status}: {gave_up}" if gave_up else f"http {status}{attempts_note(request)}"
        elif isinstance(exc, IgnoreRequest) and "robots.txt" in str(exc):
            category, reason = "robots_disallowed", "disallowed by robots.txt"
        elif isinstance(exc, IgnoreRequest):
            category, reason = "ignored", f"ignored: {exc}"
        elif isinstance(exc, StopDownload) or (
            isinstance(exc, DownloadCancelledError | CancelledError)
            and ("max size" in str(exc) or request.meta.get(RECEIVED, 0) > self.cfg.web.max_page_bytes)
        ):
            category = "too_large"
            source = self.cfg.web
            if request.meta.get(LIMIT, source.max_page_bytes) == source.max_page_bytes:
                reason = f"too large: over source.max_page_bytes ({source.max_page_bytes} bytes)"
            else:
                reason = f"too large: over source.max_document_bytes ({source.max_document_bytes} bytes)"
        elif isinstance(exc, DownloadCancelledError | CancelledError):
            self.counts["cancelled"] += 1  # in flight when the spider closed (max_pages or shutdown)
            return
        else:
            category = "errors"
            cause = render_failure(exc) if request.meta.get(RENDERED) else failure_cause(exc)
            reason = f"{cause}{attempts_note(request)}"
        self.counts[category] += 1
        if category == "errors" and len(self._failed) < FAILED_LISTED:
            self._failed.append({"url": url, "reason": reason})
        yield FetchedPage(
            url=url,
            final_url=final,
            status=status,
            depth=request.meta.get(DEPTH, 0),
            skip_reason=reason,
            skip_kind=SKIP_KINDS[category],
        )

    # -- sitemaps -----------------------------------------------------------------------------
    def parse_sitemap(self, response: Response) -> None:
        """Read a robots.txt (its Sitemap: lines), a sitemap index or a urlset into the feed."""
        try:
            self._parse_sitemap(response)
        finally:
            self.frontier_done(response.meta)

    def _parse_sitemap(self, response: Response) -> None:
        self._settle(response.meta)
        asked = _asked_url(response.meta, response.url)  # failures name the URL the user or a file gave
        if response.status != 200:  # 404 and 410 reach the callback too (handle_httpstatus_list)
            self._sitemap_failure(asked, f"http {response.status}")
            return
        if response.meta.get(ROBOTS):
            found = list(sitemap_urls_from_robots(response.body, base_url=response.url))
            if not found and self.listed_only:
                # The sitemaps are the only source of pages: a wrong robots.txt must not pass for an
                # empty selection.
                self._sitemap_failure(asked, "no Sitemap: lines in this robots.txt")
            elif not found:
                logger.info("no Sitemap: lines in %s", response.url)
            for url in found:
                self._queue_sitemap(url, found_in=response.url)
            return
        stream = open_sitemap_body(response.body, response.meta["download_maxsize"])
        on_error = partial(self._sitemap_failure, asked)
        kind, entries = iter_sitemap(stream, on_error) if stream is not None else (None, iter(()))
        if kind is None:
            self._sitemap_failure(asked, "not a sitemap (neither <urlset> nor <sitemapindex>)")
        elif kind == "sitemapindex":
            for entry in entries:
                self._queue_sitemap(entry.loc, found_in=response.url)
        else:
            self._sitemap_sources.append(_SitemapSource(response.url, entries))
            self._wake()

    def on_sitemap_error(self, failure: Failure) -> None:
        """A sitemap that cannot be read: pages only it lists are missed, so the crawl is incomplete."""
        request: Request = failure.request  # type: ignore[attr-defined]
        try:
            self._sitemap_error(failure, request)
        finally:
            if failure.value is None or not self._cancelled(request, failure.value):
                self.frontier_done(request.meta)

    def _sitemap_error(self, failure: Failure, request: Request) -> None:
        self._settle(request.meta)
        exc = failure.value
        maxsize = request.meta["download_maxsize"]
        if isinstance(exc, HttpError):
            reason = f"http {exc.response.status}{attempts_note(request)}"
        elif isinstance(exc, RequestRefused):
            reason = exc.reason
        elif isinstance(exc, IgnoreRequest) and "robots.txt" in str(exc):
            reason = "disallowed by robots.txt"
        elif isinstance(exc, DownloadCancelledError | CancelledError) and (
            "max size" in str(exc) or request.meta.get(RECEIVED, 0) > maxsize
        ):
            reason = f"larger than {maxsize} bytes"
        elif isinstance(exc, DownloadCancelledError | CancelledError):
            return  # in flight when the spider closed (max_pages or shutdown)
        else:
            reason = f"{failure_cause(exc)}{attempts_note(request)}"
        self._sitemap_failure(_asked_url(request.meta, request.url), reason)

    # -- shared frontier --------------------------------------------------------------------------
    def frontier_done(self, meta: dict[str, Any]) -> None:
        """Tell the shared frontier that the request of ``meta`` is finished (no-op without one)."""
        token = meta.pop(FRONTIER_ID, None)
        if self.frontier is not None and token is not None:
            self.frontier.done(token)

    def _shared_seen(self, url: str) -> bool:
        """Whether ``url`` was scheduled by any process of the crawl (and mark it scheduled)."""
        from spiders.scheduler import FrontierDupeFilter

        assert self.frontier is not None
        dupefilter = FrontierDupeFilter(self.frontier.client, self.frontier.keys.dupefilter)
        return bool(dupefilter.request_seen(Request(url)))

    def _on_idle(self) -> None:
        """Scrapy's spider_idle with a shared frontier: this process has nothing to do, but it stays
        open (DontCloseSpider) while other processes have requests in flight, whose pages may link to
        more. It closes when the queue is empty and nothing is in flight anywhere, or the crawl's
        max_pages budget is spent."""
        frontier = self.frontier
        if frontier is None or self.limit_reached:
            return
        # Idle: every request this process took has been answered; an entry left in its in-flight
        # hash (a callback that never ran) would keep every process waiting forever.
        stale = frontier.forget_inflight()
        if stale:
            logger.warning("frontier: %d requests of this process never finished; forgotten", stale)
        if frontier.pages_claimed() >= self.cfg.web.max_pages:
            self.limit_reached = True
            return
        if not frontier.drained():
            raise DontCloseSpider

    # -- end ----------------------------------------------------------------------------------
    def note_store_error(self) -> None:
        """Called by the pipeline when a row could not be written."""
        self.counts["store_errors"] += 1

    def closed(self, reason: str) -> None:
        """Remember why the crawl ended and copy the counters into Scrapy's stats dump."""
        self.finish_reason = reason
        for key, value in self.crawl_stats().items():
            if isinstance(value, int | bool):
                self.crawler.stats.set_value(f"webvec/{key}", value)

    @property
    def complete(self) -> bool:
        """True when every reachable allowed page was visited: not stopped early, no failures."""
        c = self.counts
        failures = c["errors"] + c["sitemap_errors"] + c["store_errors"]
        # Hosts skipped because of their robots.txt were not visited: their known pages must not be
        # taken for gone (sync.delete_after deletes what a *complete* crawl did not reach).
        failures += c["robots_unreachable"] + c["crawl_delay"]
        return self.finish_reason == "finished" and not self.limit_reached and failures == 0

    def crawl_stats(self) -> dict[str, Any]:
        """The stats the flow reads (written as JSON by spiders.run)."""
        c = self.counts
        stats: dict[str, Any] = {
            "crawl": self.cfg.name,
            "run_id": self.run_id,
            "mode": "backfill" if self.backfill_urls else "sitemap-only" if self.sitemap_only else "crawl",
            "finish_reason": self.finish_reason,
            "complete": self.complete,
            "limit_reached": self.limit_reached,
            "pages_stored": c["pages_stored"],
            "not_modified": c["not_modified"],
            "gone": c["gone"],
            "pages_skipped": sum(c[k] for k in SKIP_CATEGORIES),
            "requests": int(self.crawler.stats.get_value("downloader/request_count", 0) or 0),
            "errors": c["errors"] + c["sitemap_errors"] + c["store_errors"],
        }
        for key in SKIP_CATEGORIES:
            stats.setdefault(key, c[key])
        stats.update(
            {
                "sitemap_errors": c["sitemap_errors"],
                "store_errors": c["store_errors"],
                "refetched": c["refetched"],
                "cancelled": c["cancelled"],
                "over_limit": c["over_limit"],
                "offsite_links": len(self._offsite),
                "offsite_sitemaps": len(self._offsite_sitemaps),
                "filtered_links": len(self._filtered_links),
                "depth_limited_links": len(self._too_deep),
                # Pages that failed after their retries (5xx, 429, timeouts, connection errors), so the
                # flow can say "N pages failed"; every one is also a row with its reason.
                "failed_pages": c["errors"],
                "failed": list(self._failed),
                # Sitemaps that could not be read, with their reasons (a backfill fails on them).
                "sitemap_failed": list(self._sitemap_failed),
                "sitemap_older": c["sitemap_older"],  # entries with a <lastmod> before --since
                "sitemap_undated": c["sitemap_undated"],  # entries --since left out: no usable <lastmod>
                # follow_links: false: pages not requested, their <lastmod> predates their last fetch
                "lastmod_unmodified": c["lastmod_unmodified"],
                "documents": c["documents"],  # PDF/DOCX responses stored (also in pages_stored)
                # source.render: pages downloaded by the browser, app shells found by render: auto
                # (and the first of them by URL), and the browser's own requests blocked, by reason.
                "rendered": c["rendered"],
                "render_needed": c["render_needed"],
                "render_needed_urls": list(self._render_needed),
                "render_downloads": c["render_downloads"],  # the browser would download: fetched plainly
                "render_blocked": dict(self.render_guard.blocked) if self.render_guard else {},
                "skipped_hosts": [{"host": h, "reason": r} for h, r in sorted(self._skipped_hosts.items())],
            }
        )
        return stats
