"""backfill_flow: re-fetch chosen pages of a crawl, without a full crawl and without stale deletion.

Pages are chosen in exactly one way:

- ``urls``: these URLs;
- ``sitemap``: every page a sitemap lists (a urlset, a sitemap index, a ``.gz`` of either, or a
  robots.txt whose ``Sitemap:`` lines name them);
- ``since``: the pages whose sitemap ``<lastmod>`` is on or after that date, read from ``sitemap``
  when given, else from the crawl's ``source.sitemaps``, else from the start URLs' robots.txt.

URLs off the crawl's allowed domains are dropped with a warning. The chosen pages are then fetched
by :func:`flows.ingest.ingest_flow` in its ``urls`` mode (a subflow), whose summary is returned.

Sitemaps are fetched here, not by the spider: a small GET with a timeout, a size cap, and a refusal
of private and loopback hosts (also after a redirect) unless ``source.allow_private_networks``.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import Message
from functools import partial
from typing import IO, Any
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots

from flows.ingest import ingest_flow
from ingest.config import CrawlConfig, load_crawl
from ingest.errors import ConfigError, PermanentError, TransientError
from ingest.summary import RunSummary
from ingest.urls import canonicalize_url, host_of, is_private_host

# The sitemaps protocol caps a sitemap file at 50 MB uncompressed and 50,000 URLs
# (https://www.sitemaps.org/protocol.html#index); an index lists at most 50,000 sitemaps.
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
MAX_SITEMAPS = 1000  # sitemap files read for one backfill, indexes and robots.txt included
MAX_ROBOTS_BYTES = 512 * 1024  # Google reads the first 500 KiB of a robots.txt
_GZIP_MAGIC = b"\x1f\x8b"

logger = logging.getLogger("webvec.backfill")

Fetcher = Callable[[str], bytes]


@dataclass
class Selection:
    """The pages a backfill will fetch, and what was left out on the way."""

    urls: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)  # dropped: not on the allowed domains
    older: int = 0  # sitemap entries with a <lastmod> before ``since``
    undated: int = 0  # sitemap entries without a usable <lastmod> (only counted with ``since``)
    sitemaps_read: list[str] = field(default_factory=list)
    truncated: int = 0  # selected beyond ``source.max_pages`` and left out


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs on hosts the crawl may fetch."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> urllib.request.Request | None:
        _check_fetchable(newurl, self.allow_private, what=f"redirect from {req.full_url} to")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_fetchable(url: str, allow_private: bool, what: str = "sitemap") -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} {url!r}: not an http(s) URL with a host")
    if not allow_private and is_private_host(parts.hostname):
        raise ConfigError(
            f"{what} {url}: refusing a private or loopback host "
            "(set source.allow_private_networks: true in the crawl to allow it)"
        )


def fetch(
    url: str,
    *,
    allow_private: bool = False,
    timeout: float = 30.0,
    max_bytes: int = MAX_SITEMAP_BYTES,
    user_agent: str = "webvec",
) -> bytes:
    """GET ``url`` and return its body, gunzipped when it is gzip data.

    Refuses non-http(s) URLs and, unless ``allow_private``, hosts that are or resolve to private,
    loopback or link-local addresses, before the request and after every redirect. Bodies over
    ``max_bytes`` (compressed or not) are refused. Raises ConfigError for a refused URL, TransientError
    for timeouts, connection errors, 429 and 5xx, PermanentError for other HTTP errors and bad bodies.
    """
    _check_fetchable(url, allow_private)
    opener = urllib.request.build_opener(_SafeRedirects(allow_private))
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept-Encoding": "identity"})
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        cls = TransientError if exc.code == 429 or exc.code >= 500 else PermanentError
        raise cls(f"sitemap {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientError(f"sitemap {url}: cannot fetch: {reason}") from None
    if len(body) > max_bytes:
        raise PermanentError(f"sitemap {url}: larger than {max_bytes} bytes")
    if body.startswith(_GZIP_MAGIC):
        try:
            body = gunzip(body, max_size=max_bytes)
        except Exception as exc:  # scrapy raises _DecompressionMaxSizeExceeded or gzip/zlib errors
            raise PermanentError(
                f"sitemap {url}: bad or oversized gzip data ({type(exc).__name__})"
            ) from None
    return body


def _is_robots(url: str) -> bool:
    return urlsplit(url).path.endswith("/robots.txt")


def parse_lastmod(value: str | None) -> date | None:
    """The date of a W3C datetime (``2026-11-01``, ``2026-11-01T10:00:00+02:00``, ``...Z``), in UTC.

    Returns None for a missing or unreadable value. A date-only value is taken as written.
    """
    if not value:
        return None
    text = value.strip()
    try:
        if len(text) <= 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%Y-%m", "%Y"):  # a year-month or a year is a valid W3C datetime too
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                pass
        return None
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


def allowed_host(cfg: CrawlConfig, url: str) -> bool:
    """Whether ``url``'s host is one of the crawl's allowed domains or a subdomain of one (as the spider)."""
    host = host_of(url)
    return any(host == d or host.endswith("." + d) for d in cfg.source.domains)


def default_sitemaps(cfg: CrawlConfig) -> list[str]:
    """The crawl's ``source.sitemaps``, else the robots.txt of each start URL's origin (as the spider)."""
    if cfg.source.sitemaps:
        return list(cfg.source.sitemaps)
    origins = {f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" for u in cfg.source.start_urls}
    return [f"{origin}/robots.txt" for origin in sorted(origins)]


def _http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def sitemap_entries(
    sources: list[str], fetcher: Fetcher, *, max_sitemaps: int = MAX_SITEMAPS
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Every ``(loc, lastmod)`` that the sitemaps reachable from ``sources`` list, in order.

    Follows robots.txt ``Sitemap:`` lines and sitemap indexes (each file read once, at most
    ``max_sitemaps`` files). Returns the entries and the sitemap URLs read. A file that is not a
    sitemap raises PermanentError: a backfill from a wrong URL should fail, not quietly do nothing.
    """
    queue = list(dict.fromkeys(sources))
    seen: set[str] = set(queue)
    read: list[str] = []
    entries: list[tuple[str, str | None]] = []
    while queue:
        url = queue.pop(0)
        if len(read) >= max_sitemaps:
            raise PermanentError(f"more than {max_sitemaps} sitemap files reachable from {sources[0]}")
        body = fetcher(url)
        read.append(url)
        if _is_robots(url):
            found = list(sitemap_urls_from_robots(body[:MAX_ROBOTS_BYTES], url))
            if not found:
                raise PermanentError(f"{url}: no Sitemap: lines")
            children = found
        else:
            try:
                sitemap = Sitemap(body.lstrip())
            except Exception:
                sitemap = None
            if sitemap is None or sitemap.type not in ("urlset", "sitemapindex"):
                raise PermanentError(f"{url}: not a sitemap (neither <urlset> nor <sitemapindex>)")
            if sitemap.type == "sitemapindex":
                children = [e["loc"] for e in sitemap if e.get("loc")]
            else:
                children = []
                entries += [(e["loc"], e.get("lastmod")) for e in sitemap if e.get("loc")]
        for child in children:
            if _http_url(child) and child not in seen:
                seen.add(child)
                queue.append(child)
    return entries, read


def select_urls(
    cfg: CrawlConfig,
    *,
    urls: list[str] | None = None,
    sitemap: str | None = None,
    since: date | None = None,
    fetcher: Fetcher | None = None,
) -> Selection:
    """Choose the pages to backfill (see the module docstring); ConfigError when the choice is unclear.

    ``fetcher`` replaces the HTTP GET (its argument is a sitemap or robots.txt URL); by default
    :func:`fetch` with the crawl's timeout, user agent and private-network setting.
    Explicit URLs that all lie off the allowed domains raise ConfigError; sitemaps that list no
    page to fetch give an empty selection.
    """
    if urls is not None and (sitemap is not None or since is not None):
        raise ConfigError("backfill: give either urls, or sitemap and/or since, not both")
    if urls is None and sitemap is None and since is None:
        raise ConfigError("backfill: say which pages: urls=[...], sitemap=URL or since=YYYY-MM-DD")
    if urls is not None and not urls:
        raise ConfigError("backfill: urls is empty")

    selection = Selection()
    if urls is not None:
        candidates = []
        for url in urls:
            if not _http_url(url.strip()):
                raise ConfigError(f"backfill: not an http(s) URL with a host: {url!r}")
            candidates.append(url.strip())
    else:
        if sitemap is not None and not _http_url(sitemap):
            raise ConfigError(f"backfill: sitemap is not an http(s) URL with a host: {sitemap!r}")
        sources = [sitemap] if sitemap is not None else default_sitemaps(cfg)
        get = fetcher or partial(
            fetch,
            allow_private=cfg.source.allow_private_networks,
            timeout=cfg.source.download_timeout,
            user_agent=cfg.source.user_agent,
        )
        entries, selection.sitemaps_read = sitemap_entries(sources, get)
        candidates = []
        for loc, lastmod in entries:
            if not _http_url(loc):
                continue
            if since is not None:
                day = parse_lastmod(lastmod)
                if day is None:
                    selection.undated += 1
                    continue
                if day < since:
                    selection.older += 1
                    continue
            candidates.append(loc)

    for url in dict.fromkeys(canonicalize_url(u) for u in candidates):
        if allowed_host(cfg, url):
            selection.urls.append(url)
        else:
            selection.offsite.append(url)
    if urls is not None and not selection.urls:
        raise ConfigError(
            f"backfill: none of the URLs is on the crawl's allowed domains ({', '.join(cfg.source.domains)})"
        )
    limit = cfg.source.max_pages
    if len(selection.urls) > limit:
        selection.truncated = len(selection.urls) - limit
        selection.urls = selection.urls[:limit]
    return selection


@task(name="select-pages", cache_policy=NO_CACHE)
def select_task(
    cfg: CrawlConfig, urls: list[str] | None, sitemap: str | None, since: date | None
) -> Selection:
    """Read the sitemaps (if any) and choose the pages; warnings for what was left out."""
    log = get_run_logger()
    selection = select_urls(cfg, urls=urls, sitemap=sitemap, since=since)
    if selection.offsite:
        shown = ", ".join(selection.offsite[:5]) + (" ..." if len(selection.offsite) > 5 else "")
        log.warning(
            "dropped %d URL(s) off the allowed domains (%s): %s",
            len(selection.offsite),
            ", ".join(cfg.source.domains),
            shown,
        )
    if selection.undated:
        log.warning("left out %d sitemap entries without a usable <lastmod>", selection.undated)
    if selection.truncated:
        log.warning(
            "selected %d pages; only the first source.max_pages=%d are fetched",
            len(selection.urls) + selection.truncated,
            cfg.source.max_pages,
        )
    log.info(
        "backfill of %s: %d page(s) selected%s%s",
        cfg.name,
        len(selection.urls),
        f" from {len(selection.sitemaps_read)} sitemap file(s)" if selection.sitemaps_read else "",
        f", {selection.older} older than {since}" if since else "",
    )
    return selection


@flow(name="backfill")
def backfill_flow(
    crawl: str,
    urls: list[str] | None = None,
    sitemap: str | None = None,
    since: date | None = None,
) -> dict[str, Any]:
    """Re-fetch chosen pages of ``crawl`` (name under crawls/ or YAML path); returns the run summary.

    Give ``urls``, or ``sitemap`` (all its pages), or ``since`` (pages with a sitemap ``<lastmod>`` on or
    after that date; from ``sitemap`` if also given, else the crawl's sitemaps). The pages are fetched
    by ``ingest_flow(crawl, urls=...)`` as a subflow: no link following, no stale deletion. When the
    sitemaps list nothing to fetch, no subflow runs and an ``ok`` summary with a message is returned.
    """
    cfg = load_crawl(crawl)
    selection = select_task(cfg, urls, sitemap, since)
    if not selection.urls:
        summary = RunSummary(crawl=cfg.name, kind="backfill", status="ok")
        what = f"with a <lastmod> on or after {since}" if since else "on the allowed domains"
        summary.message = f"nothing to backfill: the sitemaps list no page {what}"
        return summary.to_dict()
    return ingest_flow(crawl, urls=selection.urls)
