"""ingest_flow: the Prefect flow of ``webvec run`` (DESIGN.md stages 1–8), for deployments and for the
CLI when ``PREFECT_API_URL`` is set.

The run itself is :func:`ingest.run.run_ingest`; this flow only runs its stages as Prefect tasks
(:class:`PrefectHooks`: one task run per stage per batch — a task costs 10–25 ms, so never one per
page or chunk) and publishes the summary as a markdown artifact. Tasks do not retry: the adapters
retry transient errors inside one budget of their own, and retrying on top would multiply attempts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import progress
from ingest.config import load_crawl, resolve_crawl_path
from ingest.run import Hooks, RunFailed, run_ingest
from ingest.summary import RunSummary
from spiders.process import crawl_source_for

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["PrefectHooks", "RunFailed", "ingest_flow", "ingest_flow_for"]


class PrefectHooks(Hooks):
    """Runs each stage as a Prefect task named after it; publishes the summary as an artifact."""

    def __init__(self, on_progress: Callable[[str, int, int], None] | None = None) -> None:
        super().__init__(on_progress)
        self._tasks: dict[tuple[str, Callable[..., Any]], Any] = {}

    def stage(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` as the Prefect task ``name`` (tasks are made once per stage and function)."""
        key = (name, fn)
        if key not in self._tasks:
            self._tasks[key] = task(name=name, cache_policy=NO_CACHE, retries=0)(fn)
        result: T = self._tasks[key](*args, **kwargs)
        return result

    def progress(self, event: str, advance: int = 0, total: int = 0) -> None:
        """Progress goes to the listeners of :mod:`flows.progress` (the CLI's bars)."""
        progress.emit(event, advance, total)

    def publish(self, summary: RunSummary) -> None:
        """Publish the summary as a Prefect markdown artifact (when there is a Prefect API)."""
        with contextlib.suppress(
            Exception
        ):  # without an API (e.g. called via .fn) there is nowhere to publish
            create_markdown_artifact(
                markdown=summary.to_markdown(),
                key=f"webvec-{summary.kind}-{summary.crawl}".replace("_", "-").lower(),
                description=f"webvec {summary.kind} of {summary.crawl}: {summary.status}",
            )


def ingest_flow_for(crawl: str) -> Any:
    """:func:`ingest_flow` with the task runner the crawl's ``scale:`` asks for: the default one
    (threads) or a Dask cluster (:func:`flows.scale.task_runner`)."""
    cfg = load_crawl(resolve_crawl_path(crawl))
    if cfg.scale.task_runner != "dask":
        return ingest_flow
    from flows import scale

    return ingest_flow.with_options(task_runner=scale.task_runner(cfg))


@flow(name="ingest")
def ingest_flow(crawl: str, urls: list[str] | None = None) -> dict[str, Any]:
    """Crawl ``crawl`` (a name under crawls/ or a YAML path) and sync its vectors; returns the summary.

    ``urls``: re-fetch just these pages (no link following, no stale deletion) — the backfill mode.
    Raises RunFailed (with the summary) when no page could be fetched or a stage failed.

    With ``scale.task_runner: dask`` the batches run as ``batch`` tasks on the flow's Dask task runner
    while this flow run coordinates. A flow run started with another runner (a deployment's) runs
    itself again as a subflow on the crawl's Dask cluster.
    """
    cfg = load_crawl(resolve_crawl_path(crawl))
    if cfg.scale.task_runner == "dask":
        from prefect.context import FlowRunContext
        from prefect_dask.task_runners import DaskTaskRunner

        from flows import scale

        ctx = FlowRunContext.get()
        if ctx is None or not isinstance(ctx.task_runner, DaskTaskRunner):
            result: dict[str, Any] = ingest_flow_for(crawl)(crawl, urls)
            return result
        shipper = scale.PrefectShipper(cfg)
        source = crawl_source_for(crawl, launcher=shipper.launch_spider)  # spiders: N as Dask tasks
        return run_ingest(crawl, source, urls=urls, hooks=PrefectHooks(), shipper=shipper).to_dict()
    return run_ingest(crawl, crawl_source_for(crawl), urls=urls, hooks=PrefectHooks()).to_dict()
