"""ingest_flow: crawl a site and bring its vectors up to date (DESIGN.md stages 1–8).

The spider runs as a subprocess (Twisted's reactor cannot restart in one process) inside the
``crawl`` task, writing pages into the state DB; meanwhile the flow consumes them in batches, so
processing overlaps the crawl. Each stage of a batch is one Prefect task (a task costs 10–25 ms,
so never one per page or chunk). Tasks do not retry: the adapters retry transient errors inside
one budget of their own, and retrying on top would multiply attempts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import progress
from ingest.chunking import Chunk
from ingest.config import load_crawl, resolve_crawl_path, webvec_home
from ingest.errors import WebvecError
from ingest.extract import Document
from ingest.pipeline import (
    Embedded,
    Extracted,
    RunContext,
    Written,
    alias_documents,
    chunk_documents,
    commit_documents,
    delete_pages,
    embed_chunks,
    extract_pages,
    make_context,
    plan_batch,
    sweep_repeated_chunks,
    write_documents,
)
from ingest.state import FetchedPage, utcnow
from ingest.summary import RunSummary
from ingest.sync import ChangeSet, plan_stale
from ingest.versions import ensure_first_version, metric_of, model_changed

BATCH_PAGES = 64  # pages per batch: big enough to amortise task overhead, small enough to overlap the crawl
POLL_SECONDS = 0.25
T = TypeVar("T")


class RunFailed(WebvecError):
    """A run ended without doing its job; ``summary`` says how far it got."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


def timed(ctx: RunContext, stage: str, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(*args)``, adding its duration to the summary's time for ``stage``."""
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        ctx.summary.add_time(stage, time.perf_counter() - start)


@task(name="crawl", cache_policy=NO_CACHE)
def crawl_task(crawl_path: str, run_id: str, urls: list[str] | None = None) -> dict[str, Any]:
    """Stage 1 as a Prefect task: the spider subprocess, to the end."""
    return run_spider(crawl_path, run_id, urls)


def run_spider(crawl_path: str, run_id: str, urls: list[str] | None = None) -> dict[str, Any]:
    """Run the spider subprocess to the end; returns its stats (``complete``, counts, reason)."""
    logs = webvec_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stats_file = logs / f"{run_id}.stats.json"
    cmd = [sys.executable, "-m", "spiders.run", "--crawl", crawl_path, "--run-id", run_id]
    cmd += ["--stats-file", str(stats_file)]
    if urls:
        cmd += ["--urls", *urls]
    started = time.perf_counter()
    with open(logs / f"{run_id}.spider.log", "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), check=False)
    seconds = round(time.perf_counter() - started, 3)
    if proc.returncode != 0:
        tail = (logs / f"{run_id}.spider.log").read_text(errors="replace").strip().splitlines()[-5:]
        raise WebvecError(f"spider exited with code {proc.returncode}: {' | '.join(tail)}")
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {"complete": False}
    return {**stats, "seconds": seconds}


@task(name="extract", cache_policy=NO_CACHE)
def extract_task(ctx: RunContext, pages: list[FetchedPage]) -> Extracted:
    """Stage 2: HTML → documents."""
    return timed(ctx, "extract", extract_pages, pages)


@task(name="plan", cache_policy=NO_CACHE)
def plan_task(ctx: RunContext, extracted: Extracted) -> ChangeSet:
    """Stage 3: new / changed / unchanged / gone against the ledger."""
    return timed(ctx, "plan", plan_batch, ctx, extracted)


@task(name="chunk", cache_policy=NO_CACHE)
def chunk_task(ctx: RunContext, docs: list[Document]) -> dict[str, list[Chunk]]:
    """Stage 4: token-aware chunks."""
    return timed(ctx, "chunk", chunk_documents, ctx, docs)


@task(name="embed", cache_policy=NO_CACHE)
def embed_task(ctx: RunContext, chunks: list[Chunk]) -> Embedded:
    """Stage 5: embed what the cache lacks."""
    return timed(ctx, "embed", embed_chunks, ctx, chunks)


@task(name="write", cache_policy=NO_CACHE)
def write_task(
    ctx: RunContext, docs: list[Document], chunks: dict[str, list[Chunk]], embedded: Embedded, at: datetime
) -> Written:
    """Stage 6: upsert, then delete stale ids."""
    return timed(ctx, "write", write_documents, ctx, docs, chunks, embedded, at)


@task(name="commit", cache_policy=NO_CACHE)
def commit_task(
    ctx: RunContext,
    docs: list[Document],
    chunks: dict[str, list[Chunk]],
    written: Written,
    validators: dict[str, tuple[str | None, str | None]],
    at: datetime,
) -> None:
    """Stage 7: the ledger, after the store acknowledged."""
    timed(ctx, "commit", commit_documents, ctx, docs, chunks, written, validators, at)


# Skip reasons that mean the page itself now has nothing to index (not a passing failure).
_EMPTIED = ("no main text", "not html")


def process_batch(ctx: RunContext, pages: Sequence[FetchedPage], seen: set[str], ensured: list[bool]) -> None:
    """Stages 2–7 for one batch of fetched pages."""
    s = ctx.summary
    s.pages_fetched += sum(1 for p in pages if p.body is not None and not p.skip_reason)
    extracted = extract_task(ctx, list(pages))
    seen |= extracted.seen
    s.pages_not_modified += len(extracted.not_modified)
    s.pages_extracted += len(extracted.documents)
    s.add_skips([k.reason for k in extracted.skipped])
    changes = plan_task(ctx, extracted)
    s.pages_new += len(changes.new)
    s.pages_changed += len(changes.changed)
    s.pages_unchanged += len(changes.unchanged)
    s.pages_gone += len(changes.gone)
    s.pages_duplicate += len(changes.aliases)
    alias_documents(ctx, changes.aliases)
    ctx.db.touch_pages(ctx.cfg.name, changes.unchanged, extracted.validators)
    emptied = [k.url for k in extracted.skipped if k.reason.startswith(_EMPTIED)]
    seen.update(emptied)
    delete_pages(ctx, changes.gone, "gone")
    delete_pages(ctx, [u for u in emptied if u in ctx.db.pages_by_url(ctx.cfg.name, emptied)], "skipped")
    docs = changes.to_write
    if not docs:
        return
    chunks = chunk_task(ctx, docs)
    flat = [c for doc in docs for c in chunks[doc.doc_id]]
    s.chunks += len(flat)
    s.tokens += sum(c.tokens for c in flat)
    progress.emit("chunked", len(flat))
    embedded = embed_task(ctx, flat)
    s.texts_embedded += embedded.texts_embedded
    s.tokens_embedded += embedded.tokens_embedded
    s.cache_hits += embedded.cache_hits
    progress.emit("embedded", embedded.texts_embedded + embedded.cache_hits)
    if not ensured[0]:
        ctx.store.ensure(ctx.embedder.dimension, metric_of(ctx.cfg))
        ensured[0] = True
    now = utcnow()
    written = write_task(ctx, docs, chunks, embedded, now)
    commit_task(ctx, docs, chunks, written, extracted.validators, now)
    progress.emit("written", len(docs))


def publish(summary: RunSummary) -> None:
    """Publish the summary as a Prefect markdown artifact (when there is a Prefect API)."""
    # Without a Prefect API (e.g. called via .fn) there is nowhere to publish; the summary is returned.
    with contextlib.suppress(Exception):
        create_markdown_artifact(
            markdown=summary.to_markdown(),
            key=f"webvec-{summary.kind}-{summary.crawl}".replace("_", "-").lower(),
            description=f"webvec {summary.kind} of {summary.crawl}: {summary.status}",
        )


@flow(name="ingest")
def ingest_flow(crawl: str, urls: list[str] | None = None) -> dict[str, Any]:
    """Crawl ``crawl`` (a name under crawls/ or a YAML path) and sync its vectors; returns the summary.

    ``urls``: re-fetch just these pages (no link following, no stale deletion) — the backfill mode.
    Raises RunFailed (with the summary) when no page could be fetched or a stage failed.
    """
    started = time.monotonic()
    crawl_path = resolve_crawl_path(crawl).resolve()
    cfg = load_crawl(crawl_path)
    summary = RunSummary(crawl=cfg.name, kind="backfill" if urls else "ingest")
    ctx = make_context(cfg, summary)
    run_id = ctx.db.start_run(cfg.name, summary.kind)
    summary.run_id = run_id
    seen: set[str] = set()
    ensured = [False]
    try:
        ctx.db.acquire_lock(cfg.name, run_id)
    except WebvecError as exc:
        summary.status, summary.message = "failed", str(exc)
        ctx.db.finish_run(run_id, "failed", summary.to_dict())
        raise RunFailed(summary.message, summary) from exc
    try:
        if model_changed(ctx):
            # The embedder changed: move every stored chunk to a new version first, so this run
            # writes into a store that holds one model's vectors only.
            from flows.reembed import rebuild_version

            rebuild_version(cfg, ctx.db, summary)
            ctx = make_context(cfg, summary, ctx.db)
        ensure_first_version(ctx)
        future = crawl_task.submit(str(crawl_path), run_id, urls)
        seq = 0
        while True:
            finished = future.state.is_final()
            pages = ctx.db.fetched_after(run_id, seq, limit=BATCH_PAGES)
            if pages:
                seq = pages[-1].seq
                progress.emit("fetched", len(pages))
                process_batch(ctx, pages, seen, ensured)
                ctx.db.heartbeat(cfg.name, run_id)
            elif finished:
                break
            else:
                time.sleep(POLL_SECONDS)
        stats = future.result()
        summary.add_time("crawl", stats["seconds"])  # the spider's own run, which overlapped the rest
        summary.crawl_complete = bool(stats.get("complete")) and not urls
        if summary.pages_fetched + summary.pages_not_modified == 0:
            reasons = ", ".join(f"{k} ×{v}" for k, v in summary.skip_reasons.items()) or "no response"
            raise WebvecError(f"no pages fetched from {', '.join(cfg.source.start_urls)} ({reasons})")
        if not urls:
            _delete_stale(ctx, seen)
        sweep_repeated_chunks(ctx)
        summary.status = "degraded" if summary.status == "degraded" else "ok"
    except Exception as exc:
        summary.status = "failed"
        summary.message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        summary.seconds = round(time.monotonic() - started, 3)
        summary.estimated_cost_usd = ctx.embedder.estimate_cost(summary.tokens_embedded)
        ctx.db.finish_run(run_id, "failed", summary.to_dict())
        publish(summary)
        raise RunFailed(summary.message, summary) from exc
    finally:
        ctx.db.purge_fetched(cfg.name, keep_run_id=run_id)
        ctx.db.release_lock(cfg.name, run_id)
    summary.seconds = round(time.monotonic() - started, 3)
    summary.estimated_cost_usd = ctx.embedder.estimate_cost(summary.tokens_embedded)
    ctx.db.finish_run(run_id, summary.status, summary.to_dict())
    publish(summary)
    return summary.to_dict()


def _delete_stale(ctx: RunContext, seen: set[str]) -> None:
    """Delete pages a complete crawl no longer reaches, once unseen for ``sync.delete_after``."""
    stale = plan_stale(
        ctx.db.live_last_seen(ctx.cfg.name),
        seen,
        complete=ctx.summary.crawl_complete,
        now=utcnow(),
        delete_after=ctx.cfg.sync.delete_after,
        min_coverage=ctx.cfg.sync.min_coverage,
    )
    ctx.summary.coverage = round(stale.coverage, 4)
    if stale.degraded:
        ctx.summary.status = "degraded"
        ctx.summary.message = stale.reason
    if stale.to_delete:
        delete_pages(ctx, stale.to_delete, "stale")
        ctx.summary.pages_stale_deleted += len(stale.to_delete)
