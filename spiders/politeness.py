"""Crawl-wide politeness for ``scale.spiders`` > 1: :class:`SharedPolitenessMiddleware`.

Scrapy's per-domain concurrency and download delay live in each process's downloader; N processes
would each honour them and together send N times as much. Here every request first takes a lease on
its host from the run's frontier (:meth:`spiders.frontier.Frontier.acquire`, one Lua script on Redis):
at most ``source.concurrency`` leases per host at once in the whole crawl, and lease starts at least
``source.download_delay`` apart (or the host's robots.txt Crawl-delay, once this process has read it:
then one at a time). The request waits here until its start time, then goes on to the downloader.

Splitting the budget instead (delay × N, concurrency ÷ N per process) would hold the average rate but
not the spacing (two processes may fire at the same instant) nor a concurrency of 1 with two processes.

In this mode the process's own delays are switched off (``DOWNLOAD_DELAY`` 0, no AutoThrottle, see
:func:`spiders.settings.frontier_settings`): a local delay added after the lease would shift a request
towards the next process's and shrink the spacing. The middleware sits last in the chain (just before
the download handler), so robots.txt and sitemap requests take leases too. A lease expires on its own
after ``download_timeout`` + :data:`LEASE_GRACE_S`, so a killed process cannot hold one forever; the
launcher gives back a dead process's leases at once (:meth:`spiders.frontier.Frontier.release_leases`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Self

from scrapy import Request
from scrapy.http import Response
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from spiders.frontier import Frontier

LEASE = "webvec_lease"  # Request.meta: (host, token) of the lease this request holds
LEASE_GRACE_S = 30.0
# How long a request waits before asking again when every lease of its host is out.
RETRY_S = 0.05


async def _sleep(seconds: float) -> None:
    done: Deferred[None] = Deferred()
    call_later(seconds, done.callback, None)
    await maybe_deferred_to_future(done)


class SharedPolitenessMiddleware:
    """Per-host concurrency and delay for the whole crawl, across spider processes (module docstring)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.delay = settings.getfloat("WEBVEC_SHARED_DELAY")
        self.concurrency = settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")
        self.lease = settings.getfloat("DOWNLOAD_TIMEOUT") + LEASE_GRACE_S

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Scrapy's constructor hook."""
        return cls(crawler)

    def _frontier(self) -> Frontier | None:
        return getattr(self.crawler.spider, "frontier", None)

    def _limits(self, request: Request) -> tuple[str, int, float]:
        """The host's slot key, concurrency and delay; a Crawl-delay (spiders.robots) sets the slot's
        per_slot_settings: one request at a time, that far apart."""
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        paced = downloader.per_slot_settings.get(key, {})
        concurrency = int(paced.get("concurrency", self.concurrency))
        delay = max(self.delay, float(paced.get("delay", 0.0)))
        return key, concurrency, delay

    async def process_request(self, request: Request) -> None:
        """Wait for a crawl-wide lease on the request's host and for its start time."""
        frontier = self._frontier()
        if frontier is None:
            return
        self._release(request)  # a lease copied along with the meta of a re-sent request
        host, limit, delay = self._limits(request)
        token = frontier.lease_token(uuid.uuid4().hex)
        while True:
            wait = frontier.acquire(host, token, limit=limit, delay=delay, lease=self.lease)
            if wait is not None:
                break
            await _sleep(RETRY_S)
        request.meta[LEASE] = (host, token)
        if wait > 0:
            await _sleep(wait)
        if delay > 0:
            frontier.started(host, delay)  # from when it really starts, should it be late

    def _release(self, request: Request) -> None:
        lease = request.meta.pop(LEASE, None)
        frontier = self._frontier()
        if lease is not None and frontier is not None:
            frontier.release(*lease)

    def process_response(self, request: Request, response: Response) -> Response:
        """The download is over: give the lease back."""
        self._release(request)
        return response

    def process_exception(self, request: Request, exception: BaseException) -> Any:
        """The download failed: give the lease back (other middlewares decide about retries)."""
        self._release(request)
        return None
