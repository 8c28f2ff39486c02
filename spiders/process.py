"""The spider subprocess as the flows start it (``python -m spiders.run``), without importing Scrapy.

:class:`SpiderCrawler` is the crawl source of a run (:class:`ingest.run.CrawlSource`): it starts the
spider with only the environment it needs, its output in ``$WEBVEC_HOME/logs/<run_id>.spider.log``,
and the parent's pid, so that the spider dies with the run (it sets Linux's parent-death signal on
itself, :func:`spiders.run.die_with_parent`) instead of crawling on after a ``kill -9`` of the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from ingest.config import load_crawl, webvec_home
from ingest.errors import WebvecError
from ingest.run import CrawlStats
from spiders.run import PAGE_STORE_ENV

# Seconds a stopped spider gets to close cleanly before it is killed.
STOP_GRACE_S = 5.0
# Environment variables the spider needs: its own settings, Python's, locale, TLS and a proxy only
# when the crawl says so (see spider_env). API keys and other secrets never reach it.
_PASS = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
_PASS_PREFIXES = ("WEBVEC_", "SSL_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SCRAPY_")


def spider_env(environ: Mapping[str, str], keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of the spider subprocess: only what it needs (plus the variables in ``keep``,
    e.g. the one holding a shared ledger's URL)."""
    return {
        k: v
        for k, v in environ.items()
        if k in _PASS or k in keep or any(k.startswith(p) for p in _PASS_PREFIXES)
    }


class SpiderRun:
    """One running spider subprocess (:class:`ingest.run.CrawlHandle`)."""

    def __init__(
        self, cmd: list[str], env: dict[str, str], log_path: Path, stats_file: Path, temp: bool
    ) -> None:
        self.log_path = str(log_path)
        self._stats_file = stats_file
        self._temp = temp
        self._started = time.perf_counter()
        self._seconds: float | None = None  # the spider's own run time, taken when it is seen ending
        with open(log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def finished(self) -> bool:
        """Whether the spider has exited."""
        if self._proc.poll() is None:
            return False
        if self._seconds is None:
            self._seconds = round(time.perf_counter() - self._started, 3)
        return True

    def _tail(self) -> str:
        try:
            lines = Path(self.log_path).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in lines[-3:])

    def result(self) -> CrawlStats:
        """Wait for the spider; its stats, or WebvecError with the end of its log and the log's path."""
        try:
            code = self._proc.wait()
            self.finished()
            seconds = self._seconds or 0.0
            if code != 0:
                where = "" if self._temp else f" (log: {self.log_path})"
                raise WebvecError(f"spider exited with code {code}: {self._tail()}{where}")
            raw = json.loads(self._stats_file.read_text()) if self._stats_file.exists() else {}
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


class SpiderCrawler:
    """Starts the spider subprocess for a run (:class:`ingest.run.CrawlSource`)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)

    def start(
        self, crawl_path: Path, run_id: str, *, page_store: str, urls: list[str] | None, dry_run: bool
    ) -> SpiderRun:
        """Start crawling; pages go to the state DB at ``page_store``. A dry run keeps its log in a
        temporary folder (removed at the end; a failure quotes its last lines) and writes nothing else."""
        logs = Path(tempfile.mkdtemp(prefix="webvec-spider-")) if dry_run else webvec_home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stats = logs / f"{run_id}.stats.json"
        cmd = [sys.executable, "-m", "spiders.run", "--crawl", str(crawl_path), "--run-id", run_id]
        cmd += ["--stats-file", str(stats), "--parent-pid", str(os.getpid())]
        if dry_run:
            cmd.append("--dry-run")
        if urls:
            cmd += ["--urls", *urls]
        # A shared ledger's URL sits in the environment variable the crawl names (it may hold a
        # password, so neither URL goes on the command line, where `ps` shows it).
        url_env = load_crawl(crawl_path).state.url_env
        env = spider_env(self.environ, (url_env,) if url_env else ())
        env[PAGE_STORE_ENV] = page_store
        return SpiderRun(cmd, env, logs / f"{run_id}.spider.log", stats, temp=dry_run)
