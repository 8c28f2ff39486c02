"""One run of a crawl: the crawl process, the batch loop and the run's end.

:func:`run_ingest` is the whole of ``webvec run`` (and, with ``dry_run``, of ``webvec plan``): start the
crawl process, feed its pages through :func:`process_batch` in batches as they arrive (processing
overlaps the crawl), then decide the run's deletions under the coverage guard. The CLI calls it
directly; the Prefect flows call it with hooks that turn each stage into a Prefect task. Its
resources come from :mod:`ingest.env`, its bookkeeping (run row, lock, heartbeat, failure summary,
artifact) from :mod:`ingest.bookkeeping`.
"""

from __future__ import annotations

import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from ingest.ahead import ExtractAhead, StagesBehind
from ingest.batch import (
    Chunked,
    Embedded,
    Extracted,
    Planned,
    SkipRecord,
    chunk_documents,
    commit_batch,
    embed_chunks,
    extract_pages,
    plan_batch,
    rewritable,
    write_documents,
)
from ingest.bookkeeping import Heartbeat, Hooks, RunFailed, first_line, recorded_run
from ingest.config import CrawlConfig, load_crawl, resolve_crawl_path
from ingest.dedup import NearDuplicateIndex
from ingest.deletions import finish_deletions, sweep_repeated_chunks
from ingest.env import RunEnv, ensure_store, make_env, store_changed
from ingest.errors import ConfigError, WebvecError
from ingest.extract import Document
from ingest.model import RunStatus
from ingest.state import FetchedPage, OutcomeRow, PageRow, StateDB, utcnow
from ingest.summary import MAX_LISTED_FAILURES, RunSummary
from ingest.sync import Removal

BATCH_PAGES = 64  # pages per batch: big enough to amortise per-stage overhead, small enough to overlap
# A run's first batches are smaller: at most as many pages as the run took so far (at least 8), so
# they double up to BATCH_PAGES (8, 8, 16, 32, 64) however few pages the spider had ready at each
# poll. The embedder gets its first texts after a few pages are extracted, not 64 (Python docs on
# the OpenAI stand-in: 64 of its long pages took 12-15 s to extract while the embedder waited).
FIRST_BATCH_PAGES = 8
# Batches in extraction at once (threads path): the embedder's supply while one holds a slow page.
EXTRACT_AHEAD = 3
POLL_SECONDS = 0.25
# Pages of more than this much HTML wait to be extracted until the embedder has work queued or no
# other page is there to extract: they can take trafilatura many seconds (the Python docs'
# contents.html, 2.5 MB: 11 s; genindex-all.html, 1.7 MB: 3 s) and come early in a crawl (index pages,
# linked from every page), where on few cores they took the CPU that would have fed the embedder.
# At most HEAVY_HELD wait at once, so memory stays bounded on a site made of such pages.
HEAVY_PAGE_BYTES = 1_000_000
HEAVY_HELD = 8
P = ParamSpec("P")
T = TypeVar("T")


# -- the crawl process -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CrawlMode:
    """Which pages a run fetches; the default is the whole site (start URLs, links, sitemaps).

    ``urls``: exactly these pages. ``sitemap_only``: the pages the sitemaps list (``sitemaps`` when
    given, else the crawl's ``source.sitemaps``, else the start URLs' robots.txt), with ``since`` only
    those whose ``<lastmod>`` is on or after that day. Both are backfills: no link is followed and, as
    the run does not try to reach every page, no page is deleted for not being seen.
    """

    urls: tuple[str, ...] = ()
    sitemap_only: bool = False
    sitemaps: tuple[str, ...] = ()
    since: date | None = None

    def __post_init__(self) -> None:
        if self.urls and self.sitemap_only:
            raise ConfigError("a run fetches either the given URLs or the pages sitemaps list, not both")
        if (self.sitemaps or self.since is not None) and not self.sitemap_only:
            raise ConfigError("sitemaps and since choose among the pages sitemaps list: set sitemap_only")

    @property
    def whole_site(self) -> bool:
        """Whether the run tries to reach every page (only then may unseen pages be deleted as stale)."""
        return not self.urls and not self.sitemap_only


WHOLE_SITE = CrawlMode()


@dataclass
class CrawlStats:
    """How the crawl process ended."""

    complete: bool  # every reachable page visited: not cut short, no failures
    seconds: float
    raw: dict[str, object] = field(default_factory=dict)  # the spider's whole stats file


class CrawlHandle(Protocol):
    """A running crawl that writes pages into a page store."""

    log_path: str

    def finished(self) -> bool:
        """Whether the crawl process has ended."""
        ...

    def result(self) -> CrawlStats:
        """Wait for the end; WebvecError (naming the log) when the crawl process failed."""
        ...

    def stop(self) -> None:
        """End the crawl now (the run failed)."""
        ...


class CrawlSource(Protocol):
    """Starts crawls (:class:`spiders.process.SpiderCrawler`: the spider subprocess)."""

    def start(
        self, crawl_path: Path, run_id: str, *, page_store: str, mode: CrawlMode, dry_run: bool
    ) -> CrawlHandle:
        """Start crawling ``crawl_path``'s site; pages go into the state DB at ``page_store``."""
        ...


# -- one batch ---------------------------------------------------------------------------------------
@dataclass
class RunState:
    """What a run learns batch by batch and needs at its end (or in later batches)."""

    near: NearDuplicateIndex | None  # pages kept so far, for near-duplicate detection
    repeated: dict[str, set[str]] | None  # text_hash → documents, for drop_repeated_chunks
    store_exists: bool  # whether the live store was ever written (a dry run must not create it)
    store_ready: bool = False  # ensured by this run (once, before its first write)
    seen: set[str] = field(default_factory=set)
    removals: list[Removal] = field(default_factory=list)
    start_failures: list[SkipRecord] = field(default_factory=list)  # depth-0 URLs that gave nothing

    @classmethod
    def load(cls, env: RunEnv) -> RunState:
        """Start from what the ledger knows."""
        cfg, db = env.cfg, env.db
        return cls(
            near=NearDuplicateIndex(db.fingerprints(cfg.name)) if cfg.dedup.near_duplicates else None,
            repeated=db.docs_by_text_hash(cfg.name) if cfg.dedup.drop_repeated_chunks else None,
            store_exists=bool(db.versions(cfg.name)),
        )


def timed(summary: RunSummary, hooks: Hooks, name: str, fn: Callable[P, T], *a: P.args, **k: P.kwargs) -> T:
    """``hooks.stage(name, fn, ...)``, its wall time added to the summary's ``stage_seconds``."""
    start = time.perf_counter()
    try:
        return hooks.stage(name, fn, *a, **k)
    finally:
        summary.add_time(name, time.perf_counter() - start)


@dataclass
class Prepared:
    """A batch through stages 2–4 (:func:`prepare_batch`): what stages 5–7 need."""

    planned: Planned
    chunked: Chunked
    ledger: dict[str, PageRow]  # the ledger rows of the batch's URLs, read before planning
    outcomes: list[OutcomeRow]  # of the pages decided so far (extraction and planning)

    @property
    def docs(self) -> list[Document]:
        """The documents to write (new and changed)."""
        return self.planned.changes.to_write

    @property
    def aliases(self) -> list[Document]:
        """New near-duplicates: recorded as aliases, no vectors."""
        return [doc for doc, _ in self.planned.new_aliases]


def prepare_batch(
    env: RunEnv,
    pages: list[FetchedPage],
    state: RunState,
    summary: RunSummary,
    hooks: Hooks,
    *,
    extracted: Extracted | None = None,
) -> Prepared:
    """Stages 2–4 for one batch of fetched pages: extract, plan against the ledger, chunk.
    ``extracted``: stage 2's result when it already ran (overlapped with the previous batch)."""
    keys = env.keys
    if extracted is None:
        extracted = timed(summary, hooks, "extract", extract_pages, pages, env.extractor)
    hooks.progress("fetched", len(pages))
    outcomes: list[OutcomeRow] = extracted.tally(summary)
    state.seen |= extracted.seen
    state.start_failures += [s for s in extracted.skips if s.depth == 0]
    urls = [d.url for d in extracted.documents] + extracted.not_modified + extracted.gone
    ledger = env.db.pages_by_url(keys.crawl, urls + [url for url, _ in extracted.emptied])
    planned = timed(summary, hooks, "plan", plan_batch, extracted, ledger, keys, state.near)
    outcomes += planned.tally(summary)
    state.removals += planned.changes.removals
    docs = planned.changes.to_write
    hooks.progress("written", 0, len(docs))
    chunked = timed(
        summary, hooks, "chunk", chunk_documents, docs, env.embedder.count_tokens, keys, state.repeated
    )
    chunked.tally(summary)
    hooks.progress("embedded", 0, len(chunked.flat))
    return Prepared(planned, chunked, ledger, outcomes)


def embed_batch(
    env: RunEnv, prep: Prepared, summary: RunSummary, hooks: Hooks, *, write: bool = True
) -> Embedded:
    """Stage 5 for one prepared batch: embed the texts the cache does not know (and cache them)."""
    embedded = timed(
        summary,
        hooks,
        "embed",
        embed_chunks,
        prep.chunked.flat,
        env.db,
        env.embedder,
        env.keys.model_key,
        texts=prep.chunked.texts,
        write=write,
        progress=lambda n: hooks.progress("embedded", n),
        source_key=env.keys.source_model_key,
    )
    embedded.tally(summary)
    return embedded


def write_batch(
    env: RunEnv,
    prep: Prepared,
    embedded: Embedded,
    state: RunState,
    summary: RunSummary,
    hooks: Hooks,
    *,
    write: bool = True,
) -> None:
    """Stages 6–7 for one embedded batch: write the store, then commit the ledger (only count when
    ``write`` is off)."""
    keys, docs, chunked = env.keys, prep.docs, prep.chunked
    if write and (docs or prep.aliases) and not state.store_ready:
        ensure_store(env)
        state.store_exists = state.store_ready = True
    now = utcnow()
    written = timed(
        summary,
        hooks,
        "write",
        write_documents,
        docs,
        chunked,
        embedded,
        env.store,
        rewritable(env.db, keys, env.store.target, docs, chunked, prep.ledger),
        keys.model_key,
        now,
        aliases=prep.aliases,
        store_exists=state.store_exists,
        write=write,
    )
    outcomes = prep.outcomes + written.tally(summary)
    if write:
        timed(
            summary,
            hooks,
            "commit",
            commit_batch,
            env.db,
            keys,
            env.store.target,
            summary.run_id,
            prep.planned,
            chunked,
            written,
            now,
        )
        env.db.add_outcomes(summary.run_id, outcomes)
    hooks.progress("written", len(docs))


def process_batch(
    env: RunEnv,
    pages: list[FetchedPage],
    state: RunState,
    summary: RunSummary,
    hooks: Hooks,
    *,
    write: bool = True,
    extracted: Extracted | None = None,
) -> None:
    """Stages 2–7 for one batch of fetched pages, one after another (stage 6–7 only count when
    ``write`` is off). ``extracted``: stage 2's result when it already ran."""
    prep = prepare_batch(env, pages, state, summary, hooks, extracted=extracted)
    embedded = embed_batch(env, prep, summary, hooks, write=write)
    write_batch(env, prep, embedded, state, summary, hooks, write=write)


# -- batches shipped to other processes -------------------------------------------------------------
@dataclass
class BatchOutcome:
    """What a batch run in another process (a Dask worker) hands back: its counters and what the run's
    end needs (pages seen, removals, start URLs that gave nothing). Plain data: it is pickled."""

    summary: RunSummary
    seen: set[str]
    removals: list[Removal]
    start_failures: list[SkipRecord]


def run_shipped_batch(env: RunEnv, run_id: str, pages: list[FetchedPage]) -> BatchOutcome:
    """Stages 2–7 of one batch in a process of its own, the ledger commit included.

    The run-wide knowledge that :class:`RunState` carries from batch to batch in one process (pages
    kept so far for near-duplicate detection, pages per chunk text for ``drop_repeated_chunks``) is
    read from the shared ledger instead: it holds what batches committed before this one started.
    Two near-duplicates in batches running at the same time can therefore both be kept; repeated
    chunks are still swept at the run's end (:func:`ingest.deletions.sweep_repeated_chunks`)."""
    state = RunState.load(env)
    state.store_exists = state.store_ready = True  # the coordinator ensured it before shipping
    summary = RunSummary(crawl=env.cfg.name, run_id=run_id)
    process_batch(env, pages, state, summary, Hooks())
    return BatchOutcome(summary, state.seen, state.removals, state.start_failures)


def merge_outcome(summary: RunSummary, state: RunState, outcome: BatchOutcome) -> None:
    """Add a shipped batch's counters, times and findings to the run's."""
    part = outcome.summary
    summary.add({name: value for name, value in vars(part).items() if name in _COUNTERS})
    for stage, seconds in part.stage_seconds.items():
        summary.add_time(stage, seconds)
    for kind, n in part.skip_reasons.items():
        summary.skip_reasons[kind] = summary.skip_reasons.get(kind, 0) + n
    room = max(0, MAX_LISTED_FAILURES - len(summary.failed_urls))
    summary.failed_urls += part.failed_urls[:room]
    summary.warnings += [w for w in part.warnings if w not in summary.warnings]
    state.seen |= outcome.seen
    state.removals += outcome.removals
    state.start_failures += outcome.start_failures


# A batch's counters: every int field (those the run's end sets itself stay 0 in a batch's summary).
_COUNTERS = frozenset(name for name, f in RunSummary.__dataclass_fields__.items() if f.type == "int")


class ShippedBatch(Protocol):
    """A batch running elsewhere (a Dask or Prefect future)."""

    def result(self) -> BatchOutcome:
        """Wait for it; its error, if any, raised here."""
        ...


class BatchShipper(Protocol):
    """Runs batches in other processes (:mod:`flows.scale`: the workers of a Dask cluster), each
    through :func:`run_shipped_batch` with an environment of its own built from the crawl config."""

    max_in_flight: int  # batches shipped and not yet gathered, at most: the run's back-pressure

    def ship(self, cfg: CrawlConfig, version: int, run_id: str, seqs: list[int]) -> ShippedBatch:
        """Start the batch of the run's fetched pages ``seqs`` (the page store is shared)."""
        ...


def _ship_batches(
    env: RunEnv,
    summary: RunSummary,
    handle: CrawlHandle,
    page_store: StateDB,
    state: RunState,
    shipper: BatchShipper,
    hooks: Hooks,
    heartbeat: Heartbeat | None,
) -> None:
    """The coordinator's loop: ship each batch of fetched pages as the crawl stores them, at most
    ``max_in_flight`` at a time, and gather the outcomes in order."""
    in_flight: deque[ShippedBatch] = deque()

    def gather_oldest() -> None:
        outcome = in_flight.popleft().result()
        merge_outcome(summary, state, outcome)
        part = outcome.summary
        hooks.progress("fetched", part.pages_fetched)
        written = part.pages_new + part.pages_changed
        hooks.progress("embedded", part.chunks, part.chunks)
        hooks.progress("written", written, written)

    seq = 0
    try:
        while True:
            finished = handle.finished()
            seqs = page_store.fetched_seqs_after(summary.run_id, seq, limit=BATCH_PAGES)
            if seqs:
                seq = seqs[-1]
                if not state.store_ready:
                    # Once, here: workers writing at the same time must not race to create the store
                    # and record version 1.
                    ensure_store(env)
                    state.store_exists = state.store_ready = True
                while len(in_flight) >= max(1, shipper.max_in_flight):
                    gather_oldest()
                in_flight.append(shipper.ship(env.cfg, env.version, summary.run_id, seqs))
            elif finished:
                break
            else:
                time.sleep(POLL_SECONDS)
            if heartbeat is not None:
                heartbeat.check()
        while in_flight:
            gather_oldest()
    except BaseException:
        in_flight.clear()  # the futures of a failed run are released; their batches may still finish
        raise


# -- the run's end -----------------------------------------------------------------------------------
def _no_pages_message(
    cfg: CrawlConfig, mode: CrawlMode, state: RunState, summary: RunSummary, log: str
) -> str:
    causes = [f"{s.url}: {s.reason}" for s in state.start_failures[:3]]
    if not causes:
        causes = [f"{k} ×{v}" for k, v in sorted(summary.skip_reasons.items())] or ["no response"]
    where = ", ".join(cfg.origins) if mode.whole_site else "the chosen pages"
    return f"no pages fetched from {where} ({'; '.join(causes)}); spider log: {log}"


def _report_selection(cfg: CrawlConfig, mode: CrawlMode, stats: CrawlStats, summary: RunSummary) -> bool:
    """A backfill's end: warnings for what it left out; WebvecError naming the sitemaps that could not
    be read when nothing was fetched (degraded when some pages were). True when the sitemaps list no
    page to fetch: nothing to do, an ``ok`` run with a message."""
    raw, warn = stats.raw, summary.warnings.append
    domains = ", ".join(cfg.web.domains)
    if raw.get("offsite_links"):
        warn(f"dropped {raw['offsite_links']} URL(s) off the allowed domains ({domains})")
    if raw.get("sitemap_undated"):
        warn(f"left out {raw['sitemap_undated']} sitemap entries without a usable <lastmod>")
    if raw.get("limit_reached"):
        warn(f"source.max_pages ({cfg.web.max_pages}) reached: the other chosen pages were not fetched")
    listed = raw.get("sitemap_failed")
    failed = [f"sitemap {f['url']}: {f['reason']}" for f in listed] if isinstance(listed, list) else []
    if failed and not summary.pages_fetched:
        raise WebvecError("; ".join(failed[:3]))
    if failed:
        summary.degrade(f"pages only these sitemaps list were not fetched: {'; '.join(failed[:3])}")
    if mode.sitemap_only and not summary.pages_fetched:
        what = f"with a <lastmod> on or after {mode.since}" if mode.since else "on the allowed domains"
        summary.message = f"nothing to backfill: the sitemaps list no page {what}"
        return True
    return False


def crawl_and_sync(
    env: RunEnv,
    crawl_path: Path,
    summary: RunSummary,
    hooks: Hooks,
    crawler: CrawlSource,
    *,
    page_store: StateDB,
    mode: CrawlMode = WHOLE_SITE,
    heartbeat: Heartbeat | None = None,
    write: bool = True,
    shipper: BatchShipper | None = None,
) -> None:
    """Crawl and bring the store up to date (or, ``write`` off, count what that would do).

    ``shipper``: run the batches in other processes (a Dask cluster) instead of this one; this process
    then only coordinates (ships, gathers, and does the run's end)."""
    state = RunState.load(env)
    handle = crawler.start(
        crawl_path, summary.run_id, page_store=page_store.url, mode=mode, dry_run=not write
    )
    summary.spider_log = handle.log_path
    if shipper is not None and write:
        try:
            _ship_batches(env, summary, handle, page_store, state, shipper, hooks, heartbeat)
            stats = handle.result()
        except BaseException:
            handle.stop()
            raise
        _finish_crawl(env, mode, handle, stats, state, summary, write)
        return
    # Stages overlap: stage 2 of the next batches (ExtractAhead: worker processes), stages 3–4 of the
    # current one (this thread) and stages 5–7 of those before it (StagesBehind: one writing, one
    # embedding, up to two waiting for the embedder). The waiting ones are the embedder's reserve:
    # pages differ in size, and a batch of long pages takes longer to extract than a batch of short
    # ones takes to embed (Python docs on the OpenAI stand-in: with no reserve the embedder waited
    # 18 s of a 208 s run). Every hand-over is bounded, so a slow embedder holds the crawl's pages
    # in the page store, not in memory.
    # Batches are prepared in the order their extraction ends, not the order they were taken: one
    # slow page (the Python docs' contents.html takes trafilatura 11 s) holds back its own batch only,
    # while the batches extracted beside it go on to the embedder.
    ahead = ExtractAhead(env, summary, hooks, batches=EXTRACT_AHEAD)
    behind: StagesBehind[Prepared, Embedded] = StagesBehind(
        lambda prep: embed_batch(env, prep, summary, hooks, write=write),
        lambda prep, embedded: write_batch(env, prep, embedded, state, summary, hooks, write=write),
    )
    try:
        seq = taken = 0
        pending: list[tuple[list[FetchedPage], Future[tuple[Extracted, float]]]] = []
        heavy: list[FetchedPage] = []  # held back (HEAVY_PAGE_BYTES)
        while True:
            finished = handle.finished()
            pages: list[FetchedPage] = []
            if len(pending) < EXTRACT_AHEAD:
                limit = min(BATCH_PAGES, max(FIRST_BATCH_PAGES, taken))
                pages = page_store.fetched_after(summary.run_id, seq, limit=limit)
                if pages:
                    seq, taken = pages[-1].seq, taken + len(pages)
                    light: list[FetchedPage] = []
                    for page in pages:
                        (heavy if len(page.body or b"") > HEAVY_PAGE_BYTES else light).append(page)
                    if light:
                        pending.append((light, ahead.submit(light)))
                if heavy and len(pending) < EXTRACT_AHEAD:
                    idle = not pages and not pending  # nothing else to extract now: the CPU is free
                    if behind.queued >= 2 or len(heavy) >= HEAVY_HELD or idle:
                        pending.append((heavy, ahead.submit(heavy)))
                        pages, heavy = pages or heavy, []  # pages: what this round took, for the wait
            if pending and (len(pending) >= EXTRACT_AHEAD or not pages):
                # Room for no more, or no more pages yet: wait for an extraction (a poll's time at
                # most, so pages the spider stores meanwhile are taken).
                wait([f for _, f in pending], timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            ready = next((item for item in pending if item[1].done()), None)  # the oldest one done
            if ready is not None:
                pending.remove(ready)
                batch, future = ready
                behind.submit(
                    prepare_batch(env, batch, state, summary, hooks, extracted=ahead.result(future))
                )
            elif not pending and not pages and not heavy:
                if finished:
                    break
                time.sleep(POLL_SECONDS)
            if heartbeat is not None:
                heartbeat.check()
        behind.drain()
        stats = handle.result()
    except BaseException:
        handle.stop()
        raise
    finally:
        behind.close()
        ahead.close()
    _finish_crawl(env, mode, handle, stats, state, summary, write)


def _finish_crawl(
    env: RunEnv,
    mode: CrawlMode,
    handle: CrawlHandle,
    stats: CrawlStats,
    state: RunState,
    summary: RunSummary,
    write: bool,
) -> None:
    """The run's end, once every batch is in: crawl figures, deletions, sweeps, the run's message."""
    summary.add_time("crawl", stats.seconds)  # the spider's own run, which overlapped the rest
    summary.crawl_complete = stats.complete and mode.whole_site
    # source.render: pages the browser rendered, and (auto) how many of them were app shells.
    for name, key in (("pages_rendered", "rendered"), ("pages_render_needed", "render_needed")):
        value = stats.raw.get(key)
        setattr(summary, name, value if isinstance(value, int) else 0)
    if not mode.whole_site and _report_selection(env.cfg, mode, stats, summary):
        return
    if not state.seen:  # no server answered with a page (refused, unreachable, robots, ...)
        raise WebvecError(_no_pages_message(env.cfg, mode, state, summary, handle.log_path))
    finish_deletions(env, state.seen, state.removals, summary, whole_site=mode.whole_site, write=write)
    if write:
        sweep_repeated_chunks(env, summary)
    if summary.chunks_quarantined:
        summary.degrade(
            f"{summary.chunks_quarantined} chunk(s) quarantined: the embedder rejected them, the rest was "
            f"written (see `webvec status {env.cfg.name}`)"
        )
    if summary.pages_failed and not summary.message:
        summary.message = f"{summary.pages_failed} page(s) failed: see `webvec report {env.cfg.name}`"


def run_ingest(
    crawl: str | Path,
    crawler: CrawlSource,
    *,
    urls: list[str] | None = None,
    mode: CrawlMode | None = None,
    hooks: Hooks | None = None,
    dry_run: bool = False,
    shipper: BatchShipper | None = None,
) -> RunSummary:
    """Crawl a site and sync its vectors (``webvec run``); with ``dry_run``, report what that would do
    and write nothing (``webvec plan``). Raises RunFailed (with the summary) when the run failed.

    ``mode`` chooses the pages (:class:`CrawlMode`; default the whole site); ``urls`` is short for
    ``mode=CrawlMode(urls=...)``. ``shipper``: the batches run in other processes (``scale:``,
    :mod:`flows.scale`); a dry run always runs here."""
    if urls and mode is not None:
        raise ConfigError("give urls or mode, not both")
    mode = CrawlMode(urls=tuple(urls)) if urls else mode or WHOLE_SITE
    hooks = hooks or Hooks()
    path = resolve_crawl_path(crawl).resolve()
    cfg = load_crawl(path)
    from ingest.preflight import check

    warnings = [w.line(str(path)) for w in check(cfg, str(path))]  # ConfigError before anything runs
    if dry_run:
        return _dry_run(cfg, path, crawler, hooks, mode)
    env = make_env(cfg)
    summary = RunSummary(crawl=cfg.name, kind="ingest" if mode.whole_site else "backfill", warnings=warnings)
    summary.target, summary.model_key = env.store.target, env.keys.model_key

    def finish(s: RunSummary) -> None:
        s.estimated_cost_usd = env.embedder.estimate_cost(s.tokens_embedded)
        env.db.purge_fetched(cfg.name, keep_run_id=s.run_id)
        env.extractor.close()

    try:
        with recorded_run(env.db, summary, hooks, finish) as heartbeat:
            from ingest.versions import model_changed, rebuild_version

            if model_changed(env) or store_changed(env):
                # The embedder changed: move every stored chunk to a new version first, so this run
                # writes into a store that holds one model's vectors only. The store changed: the
                # same, from the embedding cache (nothing is embedded again), and the old store stays
                # as the previous version until pruned, so `rollback` goes back.
                rebuild_version(env, summary, hooks)
                env = make_env(cfg, env.db)
                summary.target, summary.model_key = env.store.target, env.keys.model_key
            crawl_and_sync(
                env,
                path,
                summary,
                hooks,
                crawler,
                page_store=env.db,
                mode=mode,
                heartbeat=heartbeat,
                shipper=shipper,
            )
    finally:
        env.db.close()  # pooled connections of a server ledger are not left to the garbage collector
    return summary


def _dry_run(cfg: CrawlConfig, path: Path, crawler: CrawlSource, hooks: Hooks, mode: CrawlMode) -> RunSummary:
    """``webvec plan``: the run's decisions with writing off. Fetched pages go to a temporary page
    store; the ledger is only read (and not created when the crawl never ran)."""
    with tempfile.TemporaryDirectory(prefix="webvec-plan-") as tmp:
        ledger = StateDB.open_existing(cfg.state_url())
        pages = StateDB(f"sqlite:///{tmp}/pages.db")
        env = make_env(cfg, ledger or pages)
        summary = RunSummary(crawl=cfg.name, kind="plan", dry_run=True)
        summary.run_id = f"plan-{int(time.time() * 1000)}"
        summary.target, summary.model_key = env.store.target, env.keys.model_key
        started = time.monotonic()
        try:
            from ingest.versions import model_changed

            if ledger is not None and model_changed(env):
                summary.warnings.append(
                    "the embedder changed: a run first re-embeds every stored chunk into a new version"
                )
            crawl_and_sync(env, path, summary, hooks, crawler, page_store=pages, mode=mode, write=False)
            if summary.status == RunStatus.RUNNING:
                summary.status = RunStatus.OK
        except Exception as exc:
            summary.status, summary.message = RunStatus.FAILED, first_line(exc)
            raise RunFailed(summary.message, summary) from exc
        finally:
            summary.seconds = round(time.monotonic() - started, 3)
            summary.estimated_cost_usd = env.embedder.estimate_cost(summary.tokens_embedded)
            env.extractor.close()
            pages.close()
            if ledger is not None:
                ledger.close()
    return summary


__all__ = [
    "BATCH_PAGES",
    "BatchOutcome",
    "BatchShipper",
    "CrawlHandle",
    "CrawlMode",
    "CrawlSource",
    "CrawlStats",
    "Hooks",
    "Prepared",
    "RunFailed",
    "RunState",
    "crawl_and_sync",
    "embed_batch",
    "merge_outcome",
    "prepare_batch",
    "process_batch",
    "run_ingest",
    "run_shipped_batch",
    "write_batch",
]
