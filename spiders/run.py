"""Run one crawl in this process: ``python -m spiders.run --crawl CRAWL --run-id RUN_ID [options]``.

Which pages (default: the whole site, from its start URLs, links and ``source.sitemaps``):

- ``--urls URL...``: exactly these pages, no link followed (a backfill of chosen pages);
- ``--sitemap-only``: the pages the sitemaps list, no link followed; the sitemaps are ``--sitemaps
  URL...`` when given, else ``source.sitemaps``, else the start URLs' robots.txt (its ``Sitemap:``
  lines); with ``--since YYYY-MM-DD`` only the entries whose ``<lastmod>`` is on or after that day.

The flow always starts this as a subprocess (Twisted's reactor cannot be restarted in one process).
Pages go into the state DB's page store as they are fetched; at the end a JSON stats file is written
if ``--stats-file`` is given (see :meth:`spiders.spiders.config_spider.ConfigSpider.crawl_stats`).

Exit status: 0 when the crawl ran (even if it stored nothing; read ``complete`` in the stats file),
2 on a bad crawl definition or bad arguments (one line on stderr), 1 when the crawl could not run
(state DB unreachable, spider failed to start), 3 when the hard deadline (``--max-seconds``) stopped it
(the stats file then says ``complete: false`` and ``finish_reason: "deadline"``; the pages stored
until then are in the state DB).

Time limits, from soft to hard:

1. ``source.max_duration`` (default 6 h): Scrapy's CLOSESPIDER_TIMEOUT closes the spider gracefully;
   the downloads in flight finish (each within ``source.download_timeout``), the stats file is
   written, ``finish_reason`` is ``closespider_timeout`` and the crawl is not complete.
2. ``--max-seconds`` (default :func:`hard_deadline_seconds`: max_duration + download_timeout + 60 s):
   a watchdog thread writes the stats file and ends the process with status 3, whatever the reactor
   is doing (a hung close, a blocked DNS lookup, a stuck state DB).
3. The caller's own subprocess timeout, :func:`spider_timeout_seconds` (a little longer still), for a
   process that cannot even run its watchdog.

Callers build the command line with :func:`spider_command` and the environment with :func:`spider_env`
(only what the spider needs: no API keys, no proxy variables unless ``source.use_env_proxy``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from ingest.config import CrawlConfig, SourceConfig, load_crawl
from ingest.errors import ConfigError
from ingest.render import BROWSER_ENV, renderer_problem
from ingest.urls import is_http_url
from spiders.frontier import Frontier, frontier_url

# The state DB fetched pages go to, when not the crawl's own (set by spiders.process).
PAGE_STORE_ENV = "WEBVEC_PAGE_STORE_URL"
# The spider runs at a lower CPU priority than the stages after it. On a machine whose CPUs are all
# busy (the start of a run, when pages are fetched, extracted and chunked at once), the pages it has
# fetched wait in the page store, while extraction and chunking, which feed the embedder, go first
# (issue 10: on 2 cores the embedder waited for extraction). When the CPUs are not all busy
# (a remote site, a local model's idle waits), the niceness changes nothing. Not for the processes of
# a shared frontier (``scale.spiders`` > 1), whose politeness is timed across processes.
SPIDER_NICE = 5

logger = logging.getLogger("spiders.run")

EXIT_DEADLINE = 3
# Start-up (imports, reactor) and shut-down (stats, state DB) on top of the crawl's own time limits.
DEADLINE_GRACE_S = 60.0
# How much longer than the process's own deadline a caller's subprocess timeout waits.
CALLER_GRACE_S = 30.0

# The environment the spider process keeps (spider_env): what Python, the network stack and the state
# DB need, and nothing else: embedder and store keys, cloud credentials and tokens stay in the parent.
SPIDER_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "SYSTEMROOT",  # Windows: sockets need it
        "WINDIR",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONWARNINGS",
        "PYTHONNOUSERSITE",
        "PYTHONSAFEPATH",
        "PYTHONHASHSEED",
        "VIRTUAL_ENV",
        "COVERAGE_PROCESS_START",
        "SSL_CERT_FILE",  # OpenSSL's trust store, for https
        "SSL_CERT_DIR",
        "WEBVEC_HOME",
        "WEBVEC_CRAWLS_DIR",
        BROWSER_ENV,  # WEBVEC_CHROMIUM: source.render's browser when source.browser_path is not set
    }
)
# Locale categories, and libpq's settings for a PostgreSQL state DB (PGHOST, PGPASSFILE, ...).
SPIDER_ENV_PREFIXES = ("LC_", "PG")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
PROXY_ENV_NAMES = frozenset(_PROXY_VARIABLES) | {name.upper() for name in _PROXY_VARIABLES}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (argparse exits with status 2 on a usage error)."""
    parser = argparse.ArgumentParser(prog="python -m spiders.run", description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", required=True, help="crawl name under crawls/ or path to a YAML file")
    parser.add_argument("--run-id", required=True, help="run id the fetched pages are stored under")
    parser.add_argument("--stats-file", type=Path, help="write the crawl's stats as JSON here")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--urls", nargs="+", metavar="URL", help="backfill: fetch exactly these URLs, follow no links"
    )
    which.add_argument(
        "--sitemap-only",
        action="store_true",
        help="fetch only the URLs the sitemaps list (--sitemaps, else source.sitemaps, else robots.txt), "
        "follow no links",
    )
    parser.add_argument(
        "--sitemaps",
        nargs="+",
        metavar="URL",
        help="with --sitemap-only: read these sitemaps (urlset, index, .gz, or a robots.txt) instead",
    )
    parser.add_argument(
        "--since",
        type=_day,
        metavar="YYYY-MM-DD",
        help="with --sitemap-only: only the entries whose <lastmod> is on or after this day (UTC)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="write no link cache, and create no state DB (webvec plan)"
    )
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the run) dies")
    parser.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="spider processes sharing the crawl's Redis frontier (scale.spiders; default 1: no frontier)",
    )
    parser.add_argument(
        "--worker", type=int, default=0, help="with --workers N: this process's number, 0 to N-1"
    )
    parser.add_argument(
        "--max-seconds",
        type=_positive_seconds,
        metavar="SECONDS",
        help="hard wall-clock limit: stop the process with status 3 after this long "
        "(default: source.max_duration + source.download_timeout + 60 s)",
    )
    args = parser.parse_args(argv)
    if (args.sitemaps or args.since) and not args.sitemap_only:
        parser.error("--sitemaps and --since need --sitemap-only")
    if not 0 <= args.worker < args.workers:
        parser.error(f"--worker must be between 0 and {args.workers - 1}")
    return args


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of processes: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, not {text!r}")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


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


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def hard_deadline_seconds(source: SourceConfig) -> float:
    """Default ``--max-seconds``: the crawl's time budget, its last downloads, start-up and shut-down."""
    return source.max_duration.total_seconds() + source.download_timeout + DEADLINE_GRACE_S


def spider_timeout_seconds(source: SourceConfig, max_seconds: float | None = None) -> float:
    """A timeout for the caller's ``subprocess.run``: a little longer than the process's own deadline."""
    deadline = max_seconds if max_seconds is not None else hard_deadline_seconds(source)
    return deadline + CALLER_GRACE_S


def spider_command(
    crawl_path: str | os.PathLike[str],
    run_id: str,
    stats_file: str | os.PathLike[str],
    urls: Sequence[str] | None = None,
    *,
    sitemap_only: bool = False,
    sitemaps: Sequence[str] = (),
    since: date | None = None,
    max_seconds: float | None = None,
    dry_run: bool = False,
    parent_pid: int | None = None,
    python: str | None = None,
    worker: int = 0,
    workers: int = 1,
) -> list[str]:
    """The command line that runs one crawl in a subprocess (``python -m spiders.run ...``).

    ``urls``, ``sitemap_only``, ``sitemaps`` and ``since`` choose the pages (see the module docstring).
    ``max_seconds`` sets ``--max-seconds``; without it the process applies
    :func:`hard_deadline_seconds` of the crawl itself. Run it with ``env=spider_env(os.environ, cfg)``
    and ``timeout=spider_timeout_seconds(cfg.web, max_seconds)``. ``workers`` > 1 makes it process
    ``worker`` of that many sharing the crawl's Redis frontier (``scale.spiders``, :mod:`spiders.frontier`).
    """
    command = [python or sys.executable, "-m", "spiders.run", "--crawl", os.fspath(crawl_path)]
    command += ["--run-id", run_id, "--stats-file", os.fspath(stats_file)]
    if sitemap_only:
        command.append("--sitemap-only")
    if since is not None:
        command += ["--since", since.isoformat()]
    if max_seconds is not None:
        command += ["--max-seconds", repr(float(max_seconds))]
    if dry_run:
        command.append("--dry-run")
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    if workers > 1:
        command += ["--workers", str(workers), "--worker", str(worker)]
    # Lists last: each takes every argument after it.
    if sitemaps:
        command += ["--sitemaps", *sitemaps]
    if urls:
        command += ["--urls", *urls]
    return command


def spider_env(environ: Mapping[str, str], crawl: CrawlConfig | None = None) -> dict[str, str]:
    """The environment for the spider subprocess: ``environ`` filtered to what the spider needs.

    Kept: ``SPIDER_ENV_NAMES``, ``LC_*`` and ``PG*`` (libpq), and, given the crawl, the variables its
    ``state.url_env`` and ``scale.frontier_url_env`` name and, with ``source.use_env_proxy``, the proxy
    variables. Everything else
    (OPENAI_API_KEY, PINECONE_API_KEY, cloud credentials, tokens) stays out of a process that parses
    untrusted web content.
    """
    keep = set(SPIDER_ENV_NAMES)
    if crawl is not None:
        if crawl.state.url_env:
            keep.add(crawl.state.url_env)
        if crawl.scale.frontier_url_env:
            keep.add(crawl.scale.frontier_url_env)
        if crawl.web.use_env_proxy:
            keep |= PROXY_ENV_NAMES
    return {
        name: value
        for name, value in environ.items()
        if name in keep or (name.startswith(SPIDER_ENV_PREFIXES) and name not in PROXY_ENV_NAMES)
    }


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


def _start_watchdog(
    seconds: float, crawler: Any, cfg: CrawlConfig, args: argparse.Namespace
) -> threading.Timer:
    """A daemon timer that ends the process after ``seconds``, whatever the reactor is doing."""

    def expire() -> None:
        stats: dict[str, Any] = {"crawl": cfg.name, "run_id": args.run_id}
        # The counters are read from another thread: good enough for a report, and optional.
        with contextlib.suppress(Exception):
            stats.update(crawler.spider.crawl_stats())
        stats.update({"complete": False, "finish_reason": "deadline", "deadline_s": seconds})
        try:
            if args.stats_file:
                write_stats(args.stats_file, stats)
        finally:
            print(
                f"hard deadline of {seconds:g} s (--max-seconds) reached: spider stopped, crawl not complete",
                file=sys.stderr,
                flush=True,
            )
            os._exit(EXIT_DEADLINE)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: Sequence[str] | None = None) -> int:
    """Run the crawl and return the process exit status."""
    args = parse_args(argv)
    if args.parent_pid:
        die_with_parent(args.parent_pid)
    if args.workers <= 1:
        os.nice(SPIDER_NICE)
    try:
        cfg = load_crawl(args.crawl)
        state_url = cfg.state_url()
        for option, urls in (("--urls", args.urls), ("--sitemaps", args.sitemaps)):
            for url in urls or []:
                if not is_http_url(url):
                    raise ConfigError(f"{option}: not an http(s) URL with a host: {url!r}")
        render_problem = renderer_problem(cfg.web)
        if render_problem is not None:
            raise ConfigError(f"{args.crawl}: source.render: {render_problem}")
        redis_url = frontier_url(cfg) if args.workers > 1 else None
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
    frontier = None
    if redis_url is not None:
        try:
            frontier = Frontier.connect(redis_url, cfg.name, args.run_id, args.worker, args.workers)
        except Exception as exc:
            # The URL may hold a password: named by its variable, never printed.
            print(
                f"cannot reach the crawl frontier ({cfg.scale.frontier_url_env}): {type(exc).__name__}",
                file=sys.stderr,
            )
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
        sitemaps=args.sitemaps,
        since=args.since,
        state=state or page_store,
        page_store=page_store,
        dry_run=args.dry_run,
        frontier=frontier,
    )
    deadline = args.max_seconds if args.max_seconds is not None else hard_deadline_seconds(cfg.web)
    watchdog = _start_watchdog(deadline, crawler, cfg, args)
    try:
        process.start()
    finally:
        watchdog.cancel()
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
