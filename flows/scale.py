"""A crawl's batches on a Dask cluster (``scale.task_runner: dask``; DESIGN.md "Scaling out").

The flow run (or ``webvec run`` without a Prefect API) coordinates: it runs the spider, ships each
batch of fetched pages to the cluster as the *seq* numbers of the page store's rows (the page store is
the shared ledger: a worker reads the bodies itself), at most :func:`max_in_flight` batches at a time,
gathers their outcomes and does the run's end (deletions, run row, artifact) as the threads path does.

A worker builds its :class:`ingest.env.RunEnv` from the shipped crawl config once per process and
reuses it for every batch (:func:`worker_env`); environment variables the config names (the state URL,
API keys) are read on the worker, so every worker host must have them, as secrets never travel in the
config. The batch's ledger commit happens on the worker, after its store write.

Two ways to reach the cluster, one unit of work (:func:`run_batch`):

- with a Prefect API, the flow's task runner is a :class:`prefect_dask.DaskTaskRunner` and each batch
  is the Prefect task ``batch`` (:func:`task_runner`, :class:`PrefectShipper`);
- without one (``webvec run`` on a laptop), a plain :class:`distributed.Client` (:func:`dask_shipper`).

Rate limits (:mod:`ingest.vendor.limits`): each worker's embedder keeps its share of the crawl's
requests/tokens-per-minute caps, so that N workers together never exceed them. With a Redis
(``scale.limits_url_env``, else ``scale.frontier_url_env``) the workers share one token bucket there;
without one, each keeps ``cap // N``, N being the workers at the run's start (:func:`cluster_workers`),
shipped with every batch (``workers``) since a worker cannot know how many others there are.

A worker that dies mid-batch: the scheduler runs the batch again on another worker (up to
``distributed.scheduler.allowed-failures`` deaths); the store's upserts are idempotent, and texts the
dead worker had embedded come out of the ledger's embedding cache. When every try dies, the run fails
with a message naming the batch.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from prefect import task
from prefect.cache_policies import NO_CACHE

from ingest.config import CrawlConfig, SourceConfig
from ingest.env import RunEnv, make_env, shared_limits
from ingest.errors import ConfigError, WebvecError
from ingest.extract_pool import Extractor
from ingest.formats import DocumentLimits
from ingest.run import BatchOutcome, CrawlMode, CrawlStats, ShippedBatch, run_shipped_batch
from spiders.process import SpiderFuture, crawl_on_worker

# Batches shipped and not gathered, per worker: one running and one queued keeps every worker busy
# without holding more of the crawl in flight than the workers can take.
IN_FLIGHT_PER_WORKER = 2
IN_PROCESS_EXTRACTION = (
    "extraction ran inside the Dask worker process, without time and memory limits: start workers with "
    "DASK_DISTRIBUTED__WORKER__DAEMON=False (or --no-nanny) so that they may start extraction processes"
)

_envs: dict[tuple[str, int, int], RunEnv] = {}
_envs_lock = threading.Lock()


def _worker_extractor(cfg: CrawlConfig) -> Extractor | None:
    """None (make_env's pool of extraction processes) unless this process may not start children: a
    Dask nanny starts workers as daemonic processes by default."""
    if not multiprocessing.current_process().daemon:
        return None
    x = cfg.extract
    pages = cfg.source.max_document_pages if isinstance(cfg.source, SourceConfig) else 1
    return Extractor(
        workers=0, timeout_s=x.timeout_s, memory_mb=x.memory_mb, limits=DocumentLimits(max_pages=pages)
    )


def worker_env(cfg: CrawlConfig, version: int, workers: int = 1) -> RunEnv:
    """This worker process's environment for a crawl's version, built on its first batch and kept:
    the embedder's client (or model), the store's client and the ledger's pool are made once. Its
    embedder keeps this worker's share of the crawl's rate limits (``workers``: the cluster's workers
    at the run's start, for the split without Redis)."""
    key = (cfg.model_dump_json(), version, workers)
    with _envs_lock:  # a worker with several threads takes batches of one crawl at the same time
        env = _envs.get(key)
        if env is None:
            env = _envs[key] = make_env(
                cfg,
                version=version,
                extractor=_worker_extractor(cfg),
                limits=shared_limits(cfg, workers),
            )
        return env


def run_batch(cfg: CrawlConfig, version: int, run_id: str, seqs: list[int], workers: int = 1) -> BatchOutcome:
    """One shipped batch on a worker: read the pages ``seqs`` of run ``run_id`` from the shared page
    store, take them through stages 2–7 (the ledger commit included), return the outcome. ``workers``:
    how many workers share the crawl's rate limits when they are split (no Redis)."""
    env = worker_env(cfg, version, workers)
    pages = env.db.fetched_by_seq(run_id, seqs)
    if len(pages) != len(seqs):
        raise WebvecError(
            f"batch of run {run_id}: {len(seqs) - len(pages)} of its {len(seqs)} pages are not in the "
            "page store (was it purged by another run?)"
        )
    outcome = run_shipped_batch(env, run_id, pages)
    if multiprocessing.current_process().daemon:
        outcome.summary.warnings.append(IN_PROCESS_EXTRACTION)
    return outcome


@task(name="batch", cache_policy=NO_CACHE, retries=0)
def batch_task(
    cfg: CrawlConfig, version: int, run_id: str, seqs: list[int], workers: int = 1
) -> BatchOutcome:
    """:func:`run_batch` as a Prefect task: a task run per batch (64 pages), on a Dask worker.
    No retries: a dead worker's batch is run again by the Dask scheduler, and the adapters retry
    transient errors within their own budget."""
    return run_batch(cfg, version, run_id, seqs, workers)


@task(name="spider", cache_policy=NO_CACHE, retries=0)
def spider_task(crawl_yaml: str, run_id: str, mode: CrawlMode, worker: int) -> CrawlStats:
    """:func:`spiders.process.crawl_on_worker` as a Prefect task: one spider process of the run's
    shared frontier, for the length of the crawl, on a Dask worker (``scale.spiders`` > 1)."""
    return crawl_on_worker(crawl_yaml, run_id, mode, worker)


def scheduler_address(cfg: CrawlConfig) -> str | None:
    """The scheduler address in ``scale.dask_address_env``; None for a local cluster."""
    name = cfg.scale.dask_address_env
    if name is None:
        return None
    address = os.environ.get(name, "").strip()
    if not address:
        raise ConfigError(
            f"scale.dask_address_env: {name} is not set (export {name}=tcp://scheduler-host:8786)"
        )
    return address


def cluster_workers(cfg: CrawlConfig) -> int:
    """The workers among which the crawl's rate limits are split when no Redis holds them:
    ``scale.dask_workers`` for a local cluster, else the workers of the cluster at
    ``scale.dask_address_env`` now (at the run's start); 1 when no split is needed."""
    if cfg.scale.task_runner != "dask" or cfg.scale.limits_redis_env is not None:
        return 1
    address = scheduler_address(cfg)
    if address is None:
        return cfg.scale.dask_workers
    from distributed import Client

    with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        return max(1, len(client.scheduler_info().get("workers", {})))


def max_in_flight(cfg: CrawlConfig, workers: int | None = None) -> int:
    """Batches in flight at most: :data:`IN_FLIGHT_PER_WORKER` per worker (``workers`` when known, else
    ``scale.dask_workers``)."""
    return IN_FLIGHT_PER_WORKER * max(1, workers or cfg.scale.dask_workers)


def _local_cluster_kwargs(cfg: CrawlConfig) -> dict[str, Any]:
    # One thread per worker process: a batch's CPU work (chunking, extraction) holds the GIL, so
    # processes, not threads, are what scale; no dashboard (a port nobody asked for).
    return {
        "n_workers": cfg.scale.dask_workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }


def _allow_worker_children() -> None:
    # Workers start extraction processes (ingest.extract_pool), which a daemonic process may not: the
    # local cluster's nannies read this when they start their workers.
    import dask

    dask.config.set({"distributed.worker.daemon": False})


def task_runner(cfg: CrawlConfig) -> Any:
    """The Prefect task runner of a crawl's ingest flow under ``scale.task_runner: dask``: the
    cluster at ``scale.dask_address_env``, else a local cluster of ``scale.dask_workers`` processes."""
    from prefect_dask.task_runners import DaskTaskRunner

    address = scheduler_address(cfg)
    if address is not None:
        return DaskTaskRunner(address=address)
    _allow_worker_children()
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=_local_cluster_kwargs(cfg))


class PrefectShipper:
    """Ships batches as the Prefect task ``batch`` through the flow run's (Dask) task runner."""

    def __init__(self, cfg: CrawlConfig) -> None:
        self.workers = cluster_workers(cfg)
        self.max_in_flight = max_in_flight(cfg)

    def ship(self, cfg: CrawlConfig, version: int, run_id: str, seqs: list[int]) -> ShippedBatch:
        """Submit one batch to the flow's task runner."""
        return cast(ShippedBatch, batch_task.submit(cfg, version, run_id, seqs, self.workers))

    def launch_spider(self, crawl_yaml: str, run_id: str, mode: CrawlMode, worker: int) -> SpiderFuture:
        """Submit spider process ``worker`` as the Prefect task ``spider``."""
        return _PrefectSpider(spider_task.submit(crawl_yaml, run_id, mode, worker))


class _PrefectSpider:
    """A ``spider`` task's Prefect future, as :class:`spiders.process.RemoteSpider` polls it."""

    def __init__(self, future: Any) -> None:
        self.future = future

    def done(self) -> bool:
        """Whether the task ended (its Dask future is done)."""
        return bool(self.future.wrapped_future.done())

    def result(self) -> CrawlStats:
        """Its stats, or its error."""
        return cast(CrawlStats, self.future.result())


class _ClientBatch:
    """A plain Dask future whose failure reads as one line (a worker death included)."""

    def __init__(self, future: Any, seqs: list[int]) -> None:
        self.future, self.seqs = future, seqs

    def result(self) -> BatchOutcome:
        from distributed import KilledWorker

        try:
            return cast(BatchOutcome, self.future.result())
        except KilledWorker as exc:
            raise WebvecError(
                f"the Dask workers running the batch of pages {self.seqs[0]}-{self.seqs[-1]} died, every "
                f"try ({exc}); see the workers' logs — a re-run takes up where this one stopped"
            ) from None


class ClientShipper:
    """Ships batches to a Dask cluster through a plain :class:`distributed.Client` (no Prefect API)."""

    def __init__(self, client: Any, cfg: CrawlConfig) -> None:
        self.client = client
        workers = len(client.scheduler_info().get("workers", {}))
        self.max_in_flight = max_in_flight(cfg, workers)
        # The split of the rate limits (no Redis) counts the workers there are now, at the run's start.
        self.workers = 1 if cfg.scale.limits_redis_env is not None else max(1, workers)

    def ship(self, cfg: CrawlConfig, version: int, run_id: str, seqs: list[int]) -> ShippedBatch:
        """Submit one batch; ``pure=False``: a batch is never shared with another submission."""
        future = self.client.submit(run_batch, cfg, version, run_id, seqs, self.workers, pure=False)
        return _ClientBatch(future, seqs)

    def launch_spider(self, crawl_yaml: str, run_id: str, mode: CrawlMode, worker: int) -> SpiderFuture:
        """Submit spider process ``worker`` (:func:`spiders.process.crawl_on_worker`)."""
        return cast(
            SpiderFuture, self.client.submit(crawl_on_worker, crawl_yaml, run_id, mode, worker, pure=False)
        )


@contextmanager
def dask_shipper(cfg: CrawlConfig) -> Iterator[ClientShipper]:
    """A shipper to the crawl's Dask cluster for the length of one run: the scheduler at
    ``scale.dask_address_env``, else a local cluster of ``scale.dask_workers`` processes (stopped at
    the end)."""
    from distributed import Client, LocalCluster

    address = scheduler_address(cfg)
    if address is not None:
        with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
            yield ClientShipper(client, cfg)
        return
    _allow_worker_children()
    with (
        LocalCluster(**_local_cluster_kwargs(cfg)) as cluster,  # type: ignore[no-untyped-call]
        Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        yield ClientShipper(client, cfg)
