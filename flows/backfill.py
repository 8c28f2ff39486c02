"""backfill_flow: re-fetch chosen pages of a crawl, without a full crawl and without stale deletion.

Pages are chosen in exactly one way:

- ``urls``: these URLs;
- ``sitemap``: every page a sitemap lists (a urlset, a sitemap index, a ``.gz`` of either, or a
  robots.txt whose ``Sitemap:`` lines name them);
- ``since``: the pages whose sitemap ``<lastmod>`` is on or after that date, read from ``sitemap``
  when given, else from the crawl's ``source.sitemaps``, else from the start URLs' robots.txt.

The backfill is one run of :func:`ingest.run.run_ingest` with the spider in the matching
:class:`~ingest.run.CrawlMode` (``--urls``, or ``--sitemap-only`` with ``--sitemaps``/``--since``): the
spider reads the sitemaps (streamed, size-capped, each file once) and fetches the pages with the same
safety, robots.txt, retries and politeness as a crawl; no link is followed and no page is deleted for
not being seen. URLs off the crawl's allowed domains are dropped with a warning; at most
``source.max_pages`` pages are fetched; sitemaps that list nothing to fetch give an ``ok`` run with a
message; a sitemap that cannot be read fails the run with its reason.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger

from flows.ingest import PrefectHooks
from ingest.config import CrawlConfig, load_crawl
from ingest.errors import ConfigError
from ingest.run import CrawlMode, run_ingest
from ingest.urls import canonicalize_url, is_http_url, on_allowed_domains
from spiders.process import SpiderCrawler

SHOWN_URLS = 5  # dropped URLs named in the warning


def backfill_mode(
    cfg: CrawlConfig,
    *,
    urls: list[str] | None = None,
    sitemap: str | None = None,
    since: date | None = None,
) -> tuple[CrawlMode, list[str]]:
    """The crawl mode that fetches the chosen pages, and the given URLs dropped as off the allowed domains.

    Given ``urls`` are canonicalised (:func:`ingest.urls.canonicalize_url`) and deduplicated; the
    sitemaps' own URLs are checked by the spider as it reads them. ConfigError (one line) when the
    choice is unclear, a URL is not http(s), or none of the given URLs is on the allowed domains.
    """
    if urls is not None and (sitemap is not None or since is not None):
        raise ConfigError("backfill: give either urls, or sitemap and/or since, not both")
    if urls is None and sitemap is None and since is None:
        raise ConfigError("backfill: say which pages: urls=[...], sitemap=URL or since=YYYY-MM-DD")
    if urls is None:
        if sitemap is not None and not is_http_url(sitemap.strip()):
            raise ConfigError(f"backfill: sitemap is not an http(s) URL with a host: {sitemap!r}")
        sitemaps = (sitemap.strip(),) if sitemap is not None else ()
        return CrawlMode(sitemap_only=True, sitemaps=sitemaps, since=since), []
    if not urls:
        raise ConfigError("backfill: urls is empty")
    for url in urls:
        if not is_http_url(url.strip()):
            raise ConfigError(f"backfill: not an http(s) URL with a host: {url!r}")
    chosen = list(dict.fromkeys(canonicalize_url(u) for u in urls))
    kept = [u for u in chosen if on_allowed_domains(u, cfg.web.domains)]
    if not kept:
        raise ConfigError(
            f"backfill: none of the URLs is on the crawl's allowed domains ({', '.join(cfg.web.domains)})"
        )
    return CrawlMode(urls=tuple(kept)), [u for u in chosen if u not in kept]


@flow(name="backfill")
def backfill_flow(
    crawl: str,
    urls: list[str] | None = None,
    sitemap: str | None = None,
    since: date | None = None,
) -> dict[str, Any]:
    """Re-fetch chosen pages of ``crawl`` (name under crawls/ or YAML path); returns the run summary.

    Give ``urls``, or ``sitemap`` (all its pages), or ``since`` (pages with a sitemap ``<lastmod>`` on or
    after that date; from ``sitemap`` if also given, else the crawl's sitemaps). One run of kind
    ``backfill`` fetches them (see the module docstring). Raises ConfigError for unclear parameters and
    RunFailed (with the summary) when the run failed.
    """
    log = get_run_logger()
    cfg = load_crawl(crawl)
    mode, offsite = backfill_mode(cfg, urls=urls, sitemap=sitemap, since=since)
    if offsite:
        shown = ", ".join(offsite[:SHOWN_URLS]) + (" ..." if len(offsite) > SHOWN_URLS else "")
        log.warning(
            "dropped %d URL(s) off the allowed domains (%s): %s",
            len(offsite),
            ", ".join(cfg.web.domains),
            shown,
        )
    summary = run_ingest(crawl, SpiderCrawler(), mode=mode, hooks=PrefectHooks())
    for warning in summary.warnings:
        log.warning("%s", warning)
    log.info(
        "backfill of %s: %s%s", cfg.name, summary.status, f": {summary.message}" if summary.message else ""
    )
    return summary.to_dict()
