"""reembed_flow: move a crawl to the configured embedder, or refresh old vectors (no re-crawl).

- Embedder changed → build a new version from the ledger's page text (cache first), check its
  ids, cut over (see :mod:`ingest.versions`).
- Same embedder and ``reembed.max_age`` set → re-embed vectors older than that in place.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.ingest import BATCH_PAGES, RunFailed, publish, timed
from ingest.config import CrawlConfig, load_crawl, resolve_crawl_path
from ingest.pipeline import RunContext, make_context
from ingest.state import StateDB, utcnow
from ingest.summary import RunSummary
from ingest.versions import build_batch, finish_build, refresh_old_vectors, start_build


@task(name="reembed-batch", cache_policy=NO_CACHE)
def reembed_batch_task(ctx: RunContext, rows: list[dict[str, Any]], at: Any) -> list[dict[str, object]]:
    """Chunk, embed and write one batch of pages into the version being built."""
    return timed(ctx, "embed+write", build_batch, ctx, rows, at)


def rebuild_version(cfg: CrawlConfig, db: StateDB, summary: RunSummary) -> int:
    """Build the next version with the configured embedder and cut over; returns its number.

    The caller holds the crawl's lock.
    """
    ctx, number = start_build(cfg, db, summary)
    pages = [r for r in db.all_pages(cfg.name) if r["status"] == "live" and r["text"]]
    stamp = utcnow()
    rows: list[dict[str, object]] = []
    for i in range(0, len(pages), BATCH_PAGES):
        rows.extend(reembed_batch_task(ctx, pages[i : i + BATCH_PAGES], stamp))
        db.heartbeat(cfg.name, summary.run_id)
    finish_build(ctx, number, rows)
    summary.target = ctx.store.target
    summary.model_key = ctx.model_key
    return number


@flow(name="reembed")
def reembed_flow(crawl: str) -> dict[str, Any]:
    """Re-embed a crawl's stored chunks for its configured embedder; returns the run summary."""
    started = time.monotonic()
    cfg = load_crawl(resolve_crawl_path(crawl))
    summary = RunSummary(crawl=cfg.name, kind="reembed")
    db = StateDB(cfg.state_url())
    ctx = make_context(cfg, summary, db)
    run_id = db.start_run(cfg.name, "reembed")
    summary.run_id = run_id
    db.acquire_lock(cfg.name, run_id)
    try:
        live = db.live_version(cfg.name)
        if live is None:
            summary.message = "nothing ingested yet: run the ingest first"
        elif live["model_key"] != ctx.model_key:  # an explicit re-embed also overrides a rollback pin
            number = rebuild_version(cfg, db, summary)
            summary.message = f"version {number} built with model {summary.model_key} and now live"
        elif live["pinned"]:
            db.activate_version(cfg.name, int(live["version"]), pinned=False)
            summary.message = f"version {live['version']} already uses the configured embedder; unpinned"
        elif cfg.reembed.max_age is not None:
            n = refresh_old_vectors(ctx, cfg.reembed.max_age)
            summary.message = f"{n} vectors older than {cfg.reembed.max_age} re-embedded"
        else:
            summary.message = "the live version already uses the configured embedder"
        summary.status = "ok"
    except Exception as exc:
        summary.status = "failed"
        summary.message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        summary.seconds = round(time.monotonic() - started, 3)
        db.finish_run(run_id, "failed", summary.to_dict())
        publish(summary)
        raise RunFailed(summary.message, summary) from exc
    finally:
        db.release_lock(cfg.name, run_id)
    summary.seconds = round(time.monotonic() - started, 3)
    summary.estimated_cost_usd = ctx.embedder.estimate_cost(summary.tokens_embedded)
    db.finish_run(run_id, summary.status, summary.to_dict())
    publish(summary)
    return summary.to_dict()
