"""Scrapy settings of the webvec project.

Module-level names are the static defaults every crawl shares; :func:`settings_for` derives the
per-crawl politeness and safety settings from a :class:`~ingest.config.SourceConfig`. ConfigSpider
applies them in ``from_crawler`` (before Scrapy freezes the settings), so ``python -m spiders.run``
and ``scrapy crawl config -a crawl=NAME -a run_id=ID`` behave the same.
"""

from __future__ import annotations

from typing import Any

from ingest.config import SourceConfig

BOT_NAME = "webvec"
SPIDER_MODULES = ["spiders.spiders"]
NEWSPIDER_MODULE = "spiders.spiders"

ROBOTSTXT_OBEY = True
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
# Scrapy 2.19's remote-control HTTP server runs arbitrary Python and writes a bearer token to disk: off.
REMOTE_CONTROL_ENABLED = False
HTTPCACHE_ENABLED = False
LOG_LEVEL = "INFO"

# AutoThrottle adapts the delay to the server's latency. A short start delay lets a fast site (or the
# localhost test sites) crawl in seconds; a slow server still pushes the delay up within a few responses.
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.25
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
# The same algorithm, except that a 304 may lower the delay like a 200 (see spiders/extensions.py).
EXTENSIONS = {
    "scrapy.extensions.throttle.AutoThrottle": None,
    "spiders.extensions.ConditionalAutoThrottle": 0,
}

RETRY_ENABLED = True
RETRY_TIMES = 2  # three attempts in all; spiders.retry.PoliteRetryMiddleware spaces them out
# Backoff of retries without Retry-After: the n-th retry waits between b/2 and b seconds,
# b = min(MAX, BASE * 2 ** (n - 1)) (see spiders/retry.py).
WEBVEC_RETRY_BACKOFF_BASE = 1.0
WEBVEC_RETRY_BACKOFF_MAX = 60.0
# Defaults of source.max_crawl_delay and source.max_retry_after (settings_for sets the crawl's own).
WEBVEC_MAX_CRAWL_DELAY = 30.0
WEBVEC_MAX_RETRY_AFTER = 120.0
REDIRECT_MAX_TIMES = 10

# ConfigSpider deduplicates on ingest.urls.canonicalize_url itself (and must see redirects to already
# crawled URLs to record them as duplicates), so Scrapy's fingerprint filter is switched off.
DUPEFILTER_CLASS = "scrapy.dupefilters.BaseDupeFilter"
# Breadth-first: with max_pages the shallow (usually most important) pages are crawled first.
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"
SCHEDULER_DISK_QUEUE = "scrapy.squeues.PickleFifoDiskQueue"

# Every DNS answer a connection uses is checked against the crawl's network policy (DNS rebinding).
TWISTED_DNS_RESOLVER = "spiders.resolver.SafeResolver"
# The HTTP/1.1 handler connects through Twisted, hence through the resolver above; pinned so a change of
# Scrapy's default handler (httpx, aiohttp: their own DNS) cannot silently bypass it.
DOWNLOAD_HANDLERS = {
    "http": "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler",
    "https": "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler",
}

DOWNLOADER_MIDDLEWARES = {
    # Before the robots.txt middleware (100): a refused host must not even get its robots.txt fetched.
    "spiders.middlewares.SafetyMiddleware": 50,
    # Proxies from the crawl definition only; the environment's are ignored unless source.use_env_proxy.
    "scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware": None,
    "spiders.middlewares.ConfiguredProxyMiddleware": 750,
    # ConfigSpider checks domains when it schedules a link and SafetyMiddleware checks redirects.
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    # Scrapy's RobotsTxtMiddleware allows everything when robots.txt fails; this one follows RFC 9309
    # (5xx or no answer: the host is disallowed) and honours Crawl-delay.
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "spiders.robots.RobotsPolicyMiddleware": 100,
    # Scrapy's RetryMiddleware retries at once; this one honours Retry-After, backs off with jitter and
    # pauses the whole host.
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "spiders.retry.PoliteRetryMiddleware": 550,
}
SPIDER_MIDDLEWARES = {
    # Depth is tracked by ConfigSpider: Scrapy's DEPTH_LIMIT=0 means "unlimited" where max_depth 0 means
    # "start URLs only", and sitemap URLs must start at depth 0 whatever the depth of their sitemap.
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
}
ITEM_PIPELINES = {"spiders.pipelines.PageStorePipeline": 300}

# Sitemaps may be up to 50 MB uncompressed (sitemaps.org), whatever max_page_bytes says about pages.
WEBVEC_SITEMAP_MAXSIZE = 50 * 1024 * 1024
# Sitemap files (robots.txt and indexes included) read in one crawl, so nested indexes cannot trap it.
WEBVEC_MAX_SITEMAPS = 1000
WEBVEC_ALLOW_PRIVATE_NETWORKS = False
WEBVEC_ALLOW_HOSTS: list[str] = []
WEBVEC_PROXY: str | None = None
WEBVEC_USE_ENV_PROXY = False


def settings_for(source: SourceConfig) -> dict[str, Any]:
    """The Scrapy settings a crawl's ``source`` section implies."""
    return {
        "ROBOTSTXT_OBEY": source.obey_robots,
        "CONCURRENT_REQUESTS": max(16, source.concurrency),
        "CONCURRENT_REQUESTS_PER_DOMAIN": source.concurrency,
        "DOWNLOAD_DELAY": source.download_delay,
        "AUTOTHROTTLE_START_DELAY": max(AUTOTHROTTLE_START_DELAY, source.download_delay),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": max(1.0, min(AUTOTHROTTLE_TARGET_CONCURRENCY, source.concurrency)),
        "DOWNLOAD_MAXSIZE": source.max_page_bytes,
        "DOWNLOAD_TIMEOUT": source.download_timeout,
        "USER_AGENT": source.user_agent,
        # Informational only (DepthMiddleware is off, see above); ConfigSpider enforces max_depth.
        "DEPTH_LIMIT": source.max_depth,
        "WEBVEC_ALLOW_PRIVATE_NETWORKS": source.allow_private_networks,
        "WEBVEC_MAX_CRAWL_DELAY": source.max_crawl_delay,
        "WEBVEC_MAX_RETRY_AFTER": source.max_retry_after,
        "WEBVEC_ALLOW_HOSTS": list(source.allow_hosts),
        "WEBVEC_PROXY": source.proxy,
        "WEBVEC_USE_ENV_PROXY": source.use_env_proxy,
        # The crawl's time budget: Scrapy's CloseSpider extension closes the spider gracefully
        # (finish_reason "closespider_timeout", so the crawl is reported as not complete).
        "CLOSESPIDER_TIMEOUT": source.max_duration.total_seconds(),
    }


def frontier_settings(source: SourceConfig) -> dict[str, Any]:
    """The settings a spider process of a shared frontier (``scale.spiders`` > 1) adds to
    :func:`settings_for`: scrapy-redis's queue on Redis (:mod:`spiders.scheduler`) and crawl-wide
    politeness (:mod:`spiders.politeness`) in place of the process's own delays."""
    return {
        "SCHEDULER": "spiders.scheduler.FrontierScheduler",
        "SCHEDULER_PERSIST": True,
        # A process takes off the shared queue only what it can start soon: with Scrapy's 16 it would
        # hoard requests that wait for a host lease while the other processes idle, and a killed
        # process would have more to give back. One slot per host lease (16 at most).
        "CONCURRENT_REQUESTS": max(1, min(16, source.concurrency * len(source.domains))),
        # The crawl-wide delay is taken in SharedPolitenessMiddleware; a local delay on top would shift
        # requests towards another process's and shrink the spacing between them (see that module).
        "WEBVEC_SHARED_DELAY": source.download_delay,
        "DOWNLOAD_DELAY": 0.0,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "DOWNLOADER_MIDDLEWARES": {
            **DOWNLOADER_MIDDLEWARES,
            # Last before the download handler: every request, robots.txt and sitemaps included.
            "spiders.politeness.SharedPolitenessMiddleware": 990,
        },
    }
