"""The spider subprocess as a run starts it (``python -m spiders.run``), without importing Scrapy.

:class:`SpiderCrawler` is the crawl source of a run (:class:`ingest.run.CrawlSource`): it starts the
spider with the command line and environment :mod:`spiders.run` defines (no API keys), its output in
``$WEBVEC_HOME/logs/<run_id>.spider.log``, and the parent's pid, so that the spider dies with the run
(it sets Linux's parent-death signal on itself, :func:`spiders.run.die_with_parent`) instead of
crawling on after a ``kill -9`` of the CLI. A spider past its hard deadline is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ingest.config import load_crawl, resolve_crawl_path, webvec_home
from ingest.errors import WebvecError
from ingest.run import CrawlMode, CrawlSource, CrawlStats
from spiders.run import PAGE_STORE_ENV, spider_command, spider_env, spider_timeout_seconds

# Seconds a stopped spider gets to close cleanly before it is killed.
STOP_GRACE_S = 5.0
# Exit status of a spider that hit its own hard deadline (spiders.run): it ran, it is not complete.
DEADLINE_EXIT = 3


class SpiderRun:
    """One running spider subprocess (:class:`ingest.run.CrawlHandle`)."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        log_path: Path,
        stats_file: Path,
        *,
        temp: bool,
        timeout: float,
    ) -> None:
        self.log_path = str(log_path)
        self._stats_file = stats_file
        self._temp = temp
        self._timeout = timeout
        self._started = time.perf_counter()
        self._seconds: float | None = None
        self._killed = False
        with open(log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        # The spider's own run time, taken when it ends: the run polls between batches, which may
        # be a minute apart while a batch is embedded.
        self._ended = threading.Event()
        threading.Thread(target=self._wait, name="webvec-spider-wait", daemon=True).start()

    def _wait(self) -> None:
        self._proc.wait()
        self._seconds = round(time.perf_counter() - self._started, 3)
        self._ended.set()

    def finished(self) -> bool:
        """Whether the spider has exited. One past its deadline is killed here: a hung crawl must
        not hold the run forever (the spider's own watchdog normally ends it first)."""
        if self._proc.poll() is None:
            if time.perf_counter() - self._started < self._timeout:
                return False
            self._proc.kill()
            self._proc.wait()
            self._killed = True
        self._ended.wait()  # the waiting thread has taken the time
        return True

    def _tail(self) -> str:
        try:
            lines = Path(self.log_path).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in lines[-3:])

    def _stats(self) -> dict[str, Any]:
        if not self._stats_file.exists():
            return {}
        stats: dict[str, Any] = json.loads(self._stats_file.read_text())
        return stats

    def result(self) -> CrawlStats:
        """Wait for the spider; its stats, or WebvecError with the end of its log and the log's path."""
        try:
            while not self.finished():
                time.sleep(0.2)
            seconds = self._seconds or 0.0
            code = self._proc.returncode
            if self._killed or code == DEADLINE_EXIT:  # out of time: what it stored stands, incomplete
                return CrawlStats(complete=False, seconds=seconds, raw={**self._stats(), "deadline": True})
            if code != 0:
                where = "" if self._temp else f" (log: {self.log_path})"
                raise WebvecError(f"spider exited with code {code}: {self._tail()}{where}")
            raw = self._stats()
        finally:
            self._cleanup()
        return CrawlStats(complete=bool(raw.get("complete")), seconds=seconds, raw=raw)

    def stop(self) -> None:
        """Stop the spider: SIGTERM (Scrapy closes cleanly), then SIGKILL after STOP_GRACE_S."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._temp:
            shutil.rmtree(Path(self.log_path).parent, ignore_errors=True)


def crawl_source_for(crawl: str | Path, environ: Mapping[str, str] | None = None) -> CrawlSource:
    """The crawl source a crawl definition asks for: the spider for a web site (``source.kind: web``,
    the default), :class:`ingest.sources.apify.ApifyDatasetSource` for an Apify dataset."""
    cfg = load_crawl(resolve_crawl_path(crawl))
    if cfg.dataset is not None:
        from ingest.sources.apify import ApifyDatasetSource

        return ApifyDatasetSource(environ)
    return SpiderCrawler(environ)


class SpiderCrawler:
    """Starts the spider subprocess for a run (:class:`ingest.run.CrawlSource`)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)

    def start(
        self, crawl_path: Path, run_id: str, *, page_store: str, mode: CrawlMode, dry_run: bool
    ) -> SpiderRun:
        """Start crawling; pages go to the state DB at ``page_store``. A dry run keeps its log in a
        temporary folder (removed at the end; a failure quotes its last lines) and writes nothing else."""
        cfg = load_crawl(crawl_path)
        logs = Path(tempfile.mkdtemp(prefix="webvec-spider-")) if dry_run else webvec_home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stats = logs / f"{run_id}.stats.json"
        cmd = spider_command(
            crawl_path,
            run_id,
            stats,
            mode.urls,
            sitemap_only=mode.sitemap_only,
            sitemaps=mode.sitemaps,
            since=mode.since,
            dry_run=dry_run,
            parent_pid=os.getpid(),
        )
        # Only what the spider needs (no API keys). The page store's URL goes in the environment, not
        # on the command line, where `ps` would show a password it may hold.
        env = spider_env(self.environ, cfg)
        env[PAGE_STORE_ENV] = page_store
        timeout = spider_timeout_seconds(cfg.web)
        return SpiderRun(cmd, env, logs / f"{run_id}.spider.log", stats, temp=dry_run, timeout=timeout)
