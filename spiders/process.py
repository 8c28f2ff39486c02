"""The spider subprocess as a run starts it (``python -m spiders.run``), without importing Scrapy.

:class:`SpiderCrawler` is the crawl source of a run (:class:`ingest.run.CrawlSource`): it starts the
spider with the command line and environment :mod:`spiders.run` defines (no API keys), its output in
``$WEBVEC_HOME/logs/<run_id>.spider.log``, and the parent's pid, so that the spider dies with the run
(it sets Linux's parent-death signal on itself, :func:`spiders.run.die_with_parent`) instead of
crawling on after a ``kill -9`` of the CLI. A spider past its hard deadline is killed.

With ``scale.spiders: N`` (N > 1) a run starts N such processes, ``--worker 0`` to ``N-1``, sharing
the crawl's Redis frontier (:mod:`spiders.frontier`): :class:`FrontierCrawl` watches them, puts the
requests a dead one held back on the shared queue (so the others fetch them), merges their stats
(:func:`merge_stats`) and deletes the run's frontier keys when the crawl ends. Their logs are
``<run_id>.spider.log`` (worker 0, the run's ``spider_log``) and ``<run_id>.spider-<i>.log``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

from ingest.config import CrawlConfig, load_crawl, parse_crawl, resolve_crawl_path, webvec_home
from ingest.errors import WebvecError
from ingest.run import CrawlMode, CrawlSource, CrawlStats
from spiders.frontier import Frontier, frontier_url
from spiders.run import PAGE_STORE_ENV, spider_command, spider_env, spider_timeout_seconds

logger = logging.getLogger(__name__)

# Seconds a stopped spider gets to close cleanly before it is killed.
STOP_GRACE_S = 5.0
# Exit status of a spider that hit its own hard deadline (spiders.run): it ran, it is not complete.
DEADLINE_EXIT = 3
# How often a spider task on a Dask worker looks for the run's stop flag.
STOP_POLL_S = 0.5


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

    @property
    def pid(self) -> int:
        """The spider process's id."""
        return self._proc.pid

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


def crawl_source_for(
    crawl: str | Path, environ: Mapping[str, str] | None = None, launcher: Launcher | None = None
) -> CrawlSource:
    """The crawl source a crawl definition asks for: the spider for a web site (``source.kind: web``,
    the default), :class:`ingest.sources.apify.ApifyDatasetSource` for an Apify dataset. ``launcher``:
    the Dask cluster's, for spiders as Dask tasks (see :class:`SpiderCrawler`)."""
    cfg = load_crawl(resolve_crawl_path(crawl))
    if cfg.dataset is not None:
        from ingest.sources.apify import ApifyDatasetSource

        return ApifyDatasetSource(environ)
    return SpiderCrawler(environ, launcher)


class Launcher(Protocol):
    """Starts :func:`crawl_on_worker` as a task of a Dask cluster and returns its future
    (``launch_spider`` of :class:`flows.scale.ClientShipper` and :class:`flows.scale.PrefectShipper`)."""

    def __call__(self, crawl_yaml: str, run_id: str, mode: CrawlMode, worker: int) -> SpiderFuture:
        """Start spider process ``worker`` of run ``run_id`` on a worker of the cluster."""
        ...


class SpiderFuture(Protocol):
    """A spider task running on the cluster."""

    def done(self) -> bool:
        """Whether it ended (finished, failed, or every try lost with its worker)."""
        ...

    def result(self) -> CrawlStats:
        """Its crawl stats, or its error (a lost task as WebvecError)."""
        ...


class SpiderCrawler:
    """Starts the spider subprocess for a run (:class:`ingest.run.CrawlSource`).

    ``launcher``: with ``scale.spiders`` > 1 and ``scale.task_runner: dask``, the processes are started
    by Dask tasks on the cluster's workers (:func:`crawl_on_worker`) instead of as this process's
    children."""

    def __init__(self, environ: Mapping[str, str] | None = None, launcher: Launcher | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.launcher = launcher

    def start(
        self, crawl_path: Path, run_id: str, *, page_store: str, mode: CrawlMode, dry_run: bool
    ) -> SpiderRun | FrontierCrawl:
        """Start crawling; pages go to the state DB at ``page_store``. A dry run keeps its log in a
        temporary folder (removed at the end; a failure quotes its last lines) and writes nothing else.
        With ``scale.spiders`` > 1, that many processes share the crawl's Redis frontier."""
        cfg = load_crawl(crawl_path)
        if cfg.scale.spiders > 1:
            return self._start_shared(
                cfg, crawl_path, run_id, page_store=page_store, mode=mode, dry_run=dry_run
            )
        return self._start_one(cfg, crawl_path, run_id, page_store=page_store, mode=mode, dry_run=dry_run)

    def _start_shared(
        self,
        cfg: CrawlConfig,
        crawl_path: Path,
        run_id: str,
        *,
        page_store: str,
        mode: CrawlMode,
        dry_run: bool,
    ) -> FrontierCrawl:
        try:
            url = frontier_url(cfg, self.environ)
        except Exception as exc:
            raise WebvecError(str(exc)) from None
        try:
            frontier = Frontier.connect(url, cfg.name, run_id, workers=cfg.scale.spiders)
        except Exception as exc:  # the URL may hold a password: named by its variable only
            raise WebvecError(
                f"cannot reach the crawl frontier ({cfg.scale.frontier_url_env}): {type(exc).__name__}"
            ) from None
        frontier.clear()  # a fresh run id has nothing there; a reused one must not inherit a queue
        runs: list[SpiderRun | RemoteSpider] = []
        try:
            for worker in range(cfg.scale.spiders):
                if self.launcher is not None and not dry_run:
                    text = crawl_path.read_text(encoding="utf-8")
                    future = self.launcher(text, run_id, mode, worker)
                    runs.append(RemoteSpider(future, frontier, run_id, worker))
                    continue
                runs.append(
                    self._start_one(
                        cfg,
                        crawl_path,
                        run_id,
                        page_store=page_store,
                        mode=mode,
                        dry_run=dry_run,
                        worker=worker,
                    )
                )
        except BaseException:
            for run in runs:
                run.stop()
            frontier.clear()
            raise
        return FrontierCrawl(runs, frontier)

    def _start_one(
        self,
        cfg: CrawlConfig,
        crawl_path: Path,
        run_id: str,
        *,
        page_store: str,
        mode: CrawlMode,
        dry_run: bool,
        worker: int | None = None,
    ) -> SpiderRun:
        logs = Path(tempfile.mkdtemp(prefix="webvec-spider-")) if dry_run else webvec_home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        suffix = f"-{worker}" if worker else ""  # worker 0 keeps the single spider's file names
        stats = logs / f"{run_id}.stats{suffix}.json"
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
            worker=worker or 0,
            workers=cfg.scale.spiders if worker is not None else 1,
        )
        # Only what the spider needs (no API keys). The page store's URL goes in the environment, not
        # on the command line, where `ps` would show a password it may hold.
        env = spider_env(self.environ, cfg)
        env[PAGE_STORE_ENV] = page_store
        timeout = spider_timeout_seconds(cfg.web)
        log = logs / f"{run_id}.spider{suffix}.log"
        return SpiderRun(cmd, env, log, stats, temp=dry_run, timeout=timeout)


def merge_stats(stats: list[dict[str, Any]], *, workers: int, lost: int, drained: bool) -> dict[str, Any]:
    """One stats dict for the processes of a shared frontier (those that wrote one): counters summed,
    lists joined. ``complete`` only if every process that ended normally was complete and the
    frontier was drained at the end (nothing queued, nothing in flight): a killed process's
    requests were then all fetched by the others."""
    merged: dict[str, Any] = {}
    for one in stats:
        for key, value in one.items():
            if isinstance(value, bool):
                merged[key] = merged.get(key, False) or value
            elif isinstance(value, int | float):
                merged[key] = merged.get(key, 0) + value
            elif isinstance(value, list):
                merged[key] = [*merged.get(key, []), *value]
            elif isinstance(value, dict):
                into = dict(merged.get(key, {}))
                for name, count in value.items():
                    into[name] = into.get(name, 0) + count
                merged[key] = into
            else:
                merged.setdefault(key, value)
    reasons = [one.get("finish_reason") for one in stats]
    merged["finish_reason"] = next((r for r in reasons if r != "finished"), "finished" if reasons else None)
    merged["complete"] = bool(stats) and drained and all(one.get("complete") for one in stats)
    merged.update({"spiders": workers, "spiders_lost": lost, "frontier_drained": drained})
    return merged


class FrontierCrawl:
    """The spider processes of one run sharing a Redis frontier (:class:`ingest.run.CrawlHandle`)."""

    def __init__(self, runs: list[SpiderRun | RemoteSpider], frontier: Frontier) -> None:
        self.runs = runs
        self.frontier = frontier
        self.log_path = runs[0].log_path
        self._ended: set[int] = set()
        self._cleared = False
        self._seed_lost = False

    def _watch(self) -> bool:
        """Whether every process has ended; what a process that ended held goes back on the queue
        (a killed one's requests in flight; a normal end leaves nothing there)."""
        for worker, run in enumerate(self.runs):
            if worker not in self._ended and run.finished():
                self._ended.add(worker)
                if worker == 0 and not self.frontier.is_seeded():
                    # Worker 0 died before queuing every start URL: the others must not wait for it
                    # forever, and the crawl cannot be complete.
                    self._seed_lost = True
                    self.frontier.mark_seeded()
                requeued = self.frontier.requeue(worker)
                self.frontier.release_leases(worker)
                if requeued:
                    logger.warning(
                        "spider %d of %d ended with %d requests in flight: back on the shared queue",
                        worker,
                        len(self.runs),
                        requeued,
                    )
        return len(self._ended) == len(self.runs)

    def finished(self) -> bool:
        """Whether every spider process has exited."""
        return self._watch()

    def result(self) -> CrawlStats:
        """Wait for every process; their merged stats. A process that failed (killed, crashed) is
        tolerated when others ended normally: the crawl is complete if they drained the frontier.
        WebvecError when none ended normally."""
        try:
            while not self._watch():
                time.sleep(0.2)
            drained = self.frontier.drained()
            results: list[CrawlStats] = []
            failures: list[WebvecError] = []
            for run in self.runs:
                try:
                    results.append(run.result())
                except WebvecError as exc:
                    failures.append(exc)
            if not results:
                raise failures[0]
            for failure in failures:
                logger.warning("a spider process of the shared frontier failed: %s", failure)
        finally:
            self._clear()
        raw = merge_stats(
            [r.raw for r in results], workers=len(self.runs), lost=len(failures), drained=drained
        )
        raw["seed_lost"] = self._seed_lost
        complete = bool(raw["complete"]) and all(r.complete for r in results) and not self._seed_lost
        return CrawlStats(complete=complete, seconds=max(r.seconds for r in results), raw=raw)

    def stop(self) -> None:
        """Stop every process and delete the run's frontier."""
        try:
            for run in self.runs:
                run.stop()
        finally:
            self._clear()

    def _clear(self) -> None:
        if not self._cleared:
            self._cleared = True
            self.frontier.clear()


# -- spiders as Dask tasks ---------------------------------------------------------------------------
def crawl_on_worker(crawl_yaml: str, run_id: str, mode: CrawlMode, worker: int) -> CrawlStats:
    """Spider process ``worker`` of a run's shared frontier, started by the Dask worker this runs on
    (``scale.spiders`` > 1 with ``scale.task_runner: dask``); its crawl stats when it ends.

    Only the crawl definition's text travels (it holds no secrets); the page store (the crawl's
    shared ledger, ``state.url_env``) and the frontier's Redis (``scale.frontier_url_env``) are read
    from this worker's environment, as a batch reads them. The process dies with the worker process
    (parent-death signal); the Dask scheduler then runs this task again on another worker, and that
    try first puts back on the queue what the dead process held in flight. The task secedes from the
    worker's thread pool: a crawl lasts the whole run and must not hold a slot batches need. The run
    stops it through the frontier's stop flag (:meth:`Frontier.request_stop`)."""
    try:
        from distributed import secede

        secede()  # type: ignore[no-untyped-call]
    except (ImportError, ValueError):  # not on a Dask worker's thread (called directly)
        pass
    cfg = parse_crawl(yaml.safe_load(crawl_yaml), "the run's crawl definition")
    frontier = Frontier.connect(frontier_url(cfg), cfg.name, run_id, workers=cfg.scale.spiders)
    frontier.requeue(worker)  # left by an earlier try whose worker died; nothing on a first try
    frontier.release_leases(worker)
    with tempfile.TemporaryDirectory(prefix="webvec-spider-task-") as tmp:
        path = Path(tmp) / f"{cfg.name}.yaml"
        path.write_text(crawl_yaml, encoding="utf-8")
        run = SpiderCrawler()._start_one(
            cfg, path, run_id, page_store=cfg.state_url(), mode=mode, dry_run=False, worker=worker
        )
        while not run.finished():
            if frontier.stop_requested():
                run.stop()
                return CrawlStats(complete=False, seconds=0.0, raw={"stopped": True})
            time.sleep(STOP_POLL_S)
        return run.result()


class RemoteSpider:
    """A spider process a Dask task started (:func:`crawl_on_worker`), as :class:`FrontierCrawl` sees
    it: the same three calls as :class:`SpiderRun`."""

    def __init__(self, future: SpiderFuture, frontier: Frontier, run_id: str, worker: int) -> None:
        self.future, self.frontier, self.worker = future, frontier, worker
        suffix = f"-{worker}" if worker else ""
        self.log_path = f"$WEBVEC_HOME/logs/{run_id}.spider{suffix}.log on the Dask worker that ran it"

    def finished(self) -> bool:
        """Whether the task has ended."""
        return self.future.done()

    def result(self) -> CrawlStats:
        """Its stats; WebvecError when it failed or every worker that ran it died."""
        try:
            return self.future.result()
        except WebvecError:
            raise
        except Exception as exc:  # KilledWorker and the like: one line, no remote traceback
            raise WebvecError(
                f"spider {self.worker} on the Dask cluster failed: {type(exc).__name__}: {exc}"
            ) from None

    def stop(self) -> None:
        """Raise the run's stop flag and give the task a moment to stop its process."""
        self.frontier.request_stop()
        deadline = time.monotonic() + STOP_GRACE_S + 2 * STOP_POLL_S
        while not self.future.done() and time.monotonic() < deadline:
            time.sleep(0.1)
