"""scrapy-redis's scheduler and dupefilter on the run's shared frontier (``scale.spiders`` > 1).

:class:`FrontierScheduler` is scrapy-redis's ``Scheduler`` (its ``PriorityQueue`` and
``RFPDupeFilter``) with three changes, each using :class:`spiders.frontier.Frontier`:

- its keys are the run's (``webvec:{crawl}:{run_id}:requests`` / ``:dupefilter``), and its Redis
  client comes from the spider (the URL, which may hold a password, never enters Scrapy's settings,
  which Scrapy logs);
- taking a request moves it into the process's in-flight hash in one step, so a killed process loses
  nothing: the launcher puts what it held back on the queue. The request's callback or errback marks
  it finished (:meth:`spiders.spiders.config_spider.ConfigSpider.frontier_done`); a request that goes
  back to the queue (a retry, a redirect) leaves the hash as it is queued again;
- it persists (``SCHEDULER_PERSIST``): a process that closes must not flush the queue and fingerprints
  the others are still using; the launcher clears them when the crawl ends.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Self

from scrapy import Request
from scrapy.utils.request import request_from_dict
from scrapy_redis import picklecompat
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler

from spiders.frontier import FRONTIER_ID, Frontier

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

# How often (seconds) an idle process looks at the shared queue again. Scrapy's engine looks every 5 s
# (its slot heartbeat) when nothing wakes it, and nothing in this process wakes it when another
# process queues a link: a process waiting that long would leave most of a small crawl to the others.
POLL_S = 0.5


class FrontierDupeFilter(RFPDupeFilter):  # type: ignore[misc]
    """scrapy-redis's fingerprint set, except for redirected requests: those pass, and the spider's
    ``admit_redirect`` checks their target against the same set, so that a redirect to a page crawled
    on its own becomes a "duplicate" row as in a single-process crawl, instead of vanishing."""

    def request_seen(self, request: Request) -> bool:
        """Whether the request was scheduled before in this crawl (by any process)."""
        if request.meta.get("redirect_urls"):
            return False
        return bool(super().request_seen(request))


class FrontierScheduler(Scheduler):  # type: ignore[misc]
    """scrapy-redis's scheduler on the run's frontier (see the module docstring)."""

    frontier: Frontier

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Build the scheduler on the spider's :class:`~spiders.frontier.Frontier`."""
        frontier: Frontier | None = getattr(crawler.spider, "frontier", None)
        if frontier is None:
            raise RuntimeError("FrontierScheduler needs a spider with a frontier (scale.spiders > 1)")
        keys = frontier.keys
        scheduler = cls(
            server=frontier.client,
            persist=True,
            queue_key=keys.queue,
            queue_cls="scrapy_redis.queue.PriorityQueue",
            dupefilter=FrontierDupeFilter(frontier.client, keys.dupefilter),
            dupefilter_key=keys.dupefilter,
        )
        scheduler.stats = crawler.stats
        scheduler.frontier = frontier
        scheduler.crawler = crawler
        return scheduler

    def open(self, spider: Any) -> None:
        """Open the queue; make the idle engine look at it every :data:`POLL_S` seconds."""
        super().open(spider)
        engine = self.crawler.engine
        # A private attribute of Scrapy's engine (read when it starts its heartbeat, after this).
        if hasattr(engine, "_SLOT_HEARTBEAT_INTERVAL"):
            engine._SLOT_HEARTBEAT_INTERVAL = POLL_S

    def enqueue_request(self, request: Request) -> bool:
        """Queue a request unless its fingerprint was seen; one taken by this process (a retry, a
        redirect) leaves the in-flight hash once it is back on the queue (or dropped)."""
        token = request.meta.pop(FRONTIER_ID, None)
        try:
            return bool(super().enqueue_request(request))
        finally:
            if token is not None:
                self.frontier.done(token)

    def next_request(self) -> Request | None:
        """Take the next request off the shared queue into this process's in-flight hash."""
        token = uuid.uuid4().hex
        data = self.frontier.pop(token)
        if data is None:
            return None
        request = request_from_dict(picklecompat.loads(data), spider=self.spider)
        request.meta[FRONTIER_ID] = token
        if self.stats:
            self.stats.inc_value("scheduler/dequeued/redis", spider=self.spider)
        return request
