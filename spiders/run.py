"""Run one crawl in this process: ``python -m spiders.run --crawl CRAWL --run-id RUN_ID [options]``.

The flow always starts this as a subprocess (Twisted's reactor cannot be restarted in one process).
Pages go into the state DB's page store as they are fetched; at the end a JSON stats file is written
if ``--stats-file`` is given (see :meth:`spiders.spiders.config_spider.ConfigSpider.crawl_stats`).

Exit status: 0 when the crawl ran (even if it stored nothing; read ``complete`` in the stats file),
2 on a bad crawl definition or bad arguments (one line on stderr), 1 when the crawl could not run
(state DB unreachable, spider failed to start).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ingest.config import load_crawl
from ingest.errors import ConfigError

# The state DB fetched pages go to, when not the crawl's own (set by spiders.process).
PAGE_STORE_ENV = "WEBVEC_PAGE_STORE_URL"

logger = logging.getLogger("spiders.run")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (argparse exits with status 2 on a usage error)."""
    parser = argparse.ArgumentParser(prog="python -m spiders.run", description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", required=True, help="crawl name under crawls/ or path to a YAML file")
    parser.add_argument("--run-id", required=True, help="run id the fetched pages are stored under")
    parser.add_argument("--stats-file", type=Path, help="write the crawl's stats as JSON here")
    parser.add_argument(
        "--urls", nargs="+", metavar="URL", help="backfill: fetch exactly these URLs, follow no links"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="write no link cache, and create no state DB (webvec plan)"
    )
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the run) dies")
    parser.add_argument(
        "--sitemap-only",
        action="store_true",
        help="fetch only the URLs the sitemaps list (source.sitemaps, else robots.txt), follow no links",
    )
    return parser.parse_args(argv)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when its parent dies (``PR_SET_PDEATHSIG``), so a crawl never
    outlives a run that was killed; exit at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        sys.exit(1)


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    """Write the stats JSON atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(stats, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def _redacted(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the crawl and return the process exit status."""
    args = parse_args(argv)
    if args.parent_pid:
        die_with_parent(args.parent_pid)
    try:
        cfg = load_crawl(args.crawl)
        state_url = cfg.state_url()
        for url in args.urls or []:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"--urls: not an http(s) URL with a host: {url!r}")
    except ConfigError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 2

    # Scrapy is imported only now, so a config error costs no reactor start-up.
    from scrapy.crawler import CrawlerProcess
    from scrapy.settings import Settings

    from ingest.state import StateDB
    from spiders.spiders.config_spider import ConfigSpider

    store_url = os.environ.get(PAGE_STORE_ENV) or state_url
    try:
        # A dry run only reads the ledger (validators, link cache), and creates none.
        state = StateDB.open_existing(state_url) if args.dry_run else StateDB(state_url)
        page_store = StateDB(store_url) if store_url != state_url or state is None else state
    except Exception as exc:
        print(f"cannot open the state DB {_redacted(state_url)}: {type(exc).__name__}", file=sys.stderr)
        return 1

    settings = Settings()
    settings.setmodule("spiders.settings", priority="project")
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(ConfigSpider)
    process.crawl(
        crawler,
        crawl=cfg,
        run_id=args.run_id,
        urls=args.urls,
        sitemap_only=args.sitemap_only,
        state=state or page_store,
        page_store=page_store,
        dry_run=args.dry_run,
    )
    try:
        process.start()
    finally:
        page_store.close()
        if state is not None:
            state.close()

    spider = crawler.spider
    if not isinstance(spider, ConfigSpider) or spider.finish_reason is None:
        print("the spider did not run; see the log above", file=sys.stderr)
        return 1
    stats = spider.crawl_stats()
    if args.stats_file:
        write_stats(args.stats_file, stats)
    logger.info(
        "crawl %s finished (%s): %d stored, %d not modified, %d gone, %d skipped, %d errors, complete=%s",
        cfg.name,
        stats["finish_reason"],
        stats["pages_stored"],
        stats["not_modified"],
        stats["gone"],
        stats["pages_skipped"],
        stats["errors"],
        stats["complete"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
