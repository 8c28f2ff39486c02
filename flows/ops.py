"""Operator commands behind the CLI: ``plan`` (dry run), ``verify [--repair]``, ``status``.

They use the same core steps as the flows but write nothing to the store or the ledger (``plan``),
or only repairs (``verify --repair``). No Prefect run is created for them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ingest.chunking import Chunk
from ingest.config import CrawlConfig, resolve_crawl_path
from ingest.pipeline import (
    chunk_documents,
    extract_pages,
    make_context,
    plan_batch,
    rewrite_chunks,
)
from ingest.state import StateDB, as_utc, utcnow
from ingest.summary import RunSummary
from ingest.sync import plan_stale
from ingest.versions import metric_of


def plan_crawl(crawl: str, cfg: CrawlConfig) -> dict[str, Any]:
    """Dry run: crawl (conditional requests), extract and chunk, compare with the ledger and the
    embedding cache, and report what a run would do. Embeds nothing; writes no vector and no ledger
    row (the fetched pages are dropped afterwards)."""
    from flows.ingest import BATCH_PAGES, run_spider

    ctx = make_context(cfg, RunSummary(crawl=cfg.name, kind="plan"))
    run_id = f"plan-{uuid.uuid4().hex}"
    try:
        stats = run_spider(str(resolve_crawl_path(crawl).resolve()), run_id)
        pages = new = changed = unchanged = gone = aliases = skipped = 0
        chunks = tokens = tokens_to_embed = texts_to_embed = vectors_to_write = vectors_to_delete = 0
        seen: set[str] = set()
        known_hashes: set[str] = set()
        seq = 0
        while batch := ctx.db.fetched_after(run_id, seq, BATCH_PAGES):
            seq = batch[-1].seq
            pages += len(batch)
            extracted = extract_pages(batch)
            seen |= extracted.seen
            skipped += len(extracted.skipped)
            changes = plan_batch(ctx, extracted)
            new, changed, unchanged = (
                new + len(changes.new),
                changed + len(changes.changed),
                unchanged + len(changes.unchanged),
            )
            gone, aliases = gone + len(changes.gone), aliases + len(changes.aliases)
            by_doc = chunk_documents(ctx, changes.to_write)
            old = ctx.db.chunk_ids_by_doc(cfg.name, [d.doc_id for d in changes.to_write])
            flat: list[Chunk] = [c for d in changes.to_write for c in by_doc[d.doc_id]]
            chunks += len(flat)
            tokens += sum(c.tokens for c in flat)
            cached = set(ctx.db.cached_vectors(ctx.model_key, [c.text_hash for c in flat]))
            for c in flat:
                if c.text_hash not in cached and c.text_hash not in known_hashes:
                    known_hashes.add(c.text_hash)
                    texts_to_embed += 1
                    tokens_to_embed += c.tokens
            written = ctx.db.written_ids(ctx.store.target)
            vectors_to_write += sum(1 for c in flat if written.get(c.id) != ctx.model_key)
            for d in changes.to_write:
                vectors_to_delete += len(old.get(d.doc_id, set()) - {c.id for c in by_doc[d.doc_id]})
            for doc, _ in changes.aliases:
                vectors_to_delete += len(ctx.db.chunk_ids_by_doc(cfg.name, [doc.doc_id])[doc.doc_id])
            gone_rows = ctx.db.pages_by_url(cfg.name, changes.gone)
            gone_ids = ctx.db.chunk_ids_by_doc(cfg.name, [r["doc_id"] for r in gone_rows.values()])
            vectors_to_delete += sum(len(v) for v in gone_ids.values())
        stale = plan_stale(
            ctx.db.live_last_seen(cfg.name),
            seen,
            complete=bool(stats.get("complete")),
            now=utcnow(),
            delete_after=cfg.sync.delete_after,
            min_coverage=cfg.sync.min_coverage,
        )
        stale_rows = ctx.db.pages_by_url(cfg.name, stale.to_delete)
        stale_ids = ctx.db.chunk_ids_by_doc(cfg.name, [r["doc_id"] for r in stale_rows.values()])
        vectors_to_delete += sum(len(v) for v in stale_ids.values())
        return {
            "crawl": cfg.name,
            "target": ctx.store.target,
            "model_key": ctx.model_key,
            "pages_fetched": pages,
            "pages_new": new,
            "pages_changed": changed,
            "pages_unchanged": unchanged,
            "pages_gone": gone,
            "pages_duplicate": aliases,
            "pages_skipped": skipped,
            "pages_unseen": len(stale.unseen),
            "pages_stale_to_delete": len(stale.to_delete),
            "coverage": round(stale.coverage, 4),
            "degraded": stale.degraded,
            "crawl_complete": bool(stats.get("complete")),
            "chunks": chunks,
            "tokens": tokens,
            "texts_to_embed": texts_to_embed,
            "tokens_to_embed": tokens_to_embed,
            "vectors_to_write": vectors_to_write,
            "vectors_to_delete": vectors_to_delete,
            "estimated_cost_usd": ctx.embedder.estimate_cost(tokens_to_embed),
        }
    finally:
        ctx.db.delete_fetched(run_id)


def verify_crawl(cfg: CrawlConfig, repair: bool = False) -> dict[str, Any]:
    """Compare the ledger with the live store: missing ids, orphan ids, ids under another model_key.

    With ``repair``: re-upsert missing and wrong-model vectors (embedding cache first), delete
    orphans, and record the result in the ledger.
    """
    ctx = make_context(cfg, RunSummary(crawl=cfg.name, kind="verify"))
    chunks = {c["chunk_id"]: c for c in ctx.db.all_chunks(cfg.name)}
    written = ctx.db.written_ids(ctx.store.target)
    in_store = set(ctx.store.list_ids())
    missing = sorted(set(chunks) - in_store)
    orphans = sorted(in_store - set(chunks))
    wrong_model = sorted(cid for cid in set(chunks) & in_store if written.get(cid) != ctx.model_key)
    report: dict[str, Any] = {
        "crawl": cfg.name,
        "target": ctx.store.target,
        "ledger_chunks": len(chunks),
        "store_vectors": len(in_store),
        "missing": len(missing),
        "orphans": len(orphans),
        "wrong_model_key": len(wrong_model),
        "examples": {"missing": missing[:5], "orphans": orphans[:5], "wrong_model_key": wrong_model[:5]},
        "ok": not (missing or orphans or wrong_model),
        "repaired": False,
    }
    if repair and not report["ok"]:
        with ctx.db.locked_run(cfg.name, "repair") as result:
            _repair(ctx, [chunks[c] for c in [*missing, *wrong_model]], orphans)
            result.update(report)
        report["repaired"] = True
    return report


def _repair(ctx: Any, rows: list[dict[str, Any]], orphans: list[str]) -> None:
    if orphans:
        ctx.store.delete(orphans)
        ctx.db.mark_written(ctx.store.target, ctx.model_key, [], orphans)
    if rows:
        ctx.store.ensure(ctx.embedder.dimension, metric_of(ctx.cfg))
        rewrite_chunks(ctx, rows)


def status_crawl(cfg: CrawlConfig) -> dict[str, Any]:
    """Last runs, counts, the live version, and what is due."""
    db = StateDB(cfg.state_url())
    pages = db.all_pages(cfg.name)
    by_status: dict[str, int] = {}
    for p in pages:
        by_status[p["status"]] = by_status.get(p["status"], 0) + 1
    live = db.live_version(cfg.name)
    runs = db.last_runs(cfg.name, 5)
    now = utcnow()
    due: dict[str, Any] = {
        "next_ingest": _next_cron(cfg.schedule, now),
        "next_reembed": _next_cron(cfg.reembed.schedule, now),
    }
    last_complete = next(
        (r for r in runs if r["kind"] == "ingest" and (r["summary"] or {}).get("crawl_complete")), None
    )
    if last_complete:
        started = as_utc(last_complete["started_at"])
        unseen = [t for t in db.live_last_seen(cfg.name).values() if started and t < started]
        due["pages_unseen_awaiting_deletion"] = len(unseen)
    if live and cfg.reembed.max_age:
        written_at = db.written_at(str(live["target"]))
        due["vectors_older_than_max_age"] = sum(
            1 for t in written_at.values() if now - t >= cfg.reembed.max_age
        )
    store_count = None
    if live:
        from ingest.pipeline import version_store

        try:
            store_count = version_store(cfg, int(live["version"])).count()
        except Exception as exc:  # a status report should still print when the store is unreachable
            store_count = f"unavailable: {str(exc).splitlines()[0]}"
    return {
        "crawl": cfg.name,
        "pages": by_status,
        "chunks": len(db.all_chunks(cfg.name)),
        "store_vectors": store_count,
        "live_version": _version_view(live),
        "versions": [_version_view(v) for v in db.versions(cfg.name)],
        "running": _lock_view(db.lock_holder(cfg.name)),
        "last_runs": [
            {
                "run_id": r["run_id"],
                "kind": r["kind"],
                "status": r["status"],
                "started_at": _iso(r["started_at"]),
                "seconds": (r["summary"] or {}).get("seconds"),
                "texts_embedded": (r["summary"] or {}).get("texts_embedded"),
                "vectors_written": (r["summary"] or {}).get("vectors_written"),
                "vectors_deleted": (r["summary"] or {}).get("vectors_deleted"),
                "message": (r["summary"] or {}).get("message", ""),
            }
            for r in runs
        ],
        "due": due,
    }


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat(timespec="seconds") if value else None


def _version_view(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "version": v["version"],
        "status": v["status"],
        "target": v["target"],
        "model_key": v["model_key"],
        "pinned": bool(v["pinned"]),
        "vectors": v["vectors"],
        "activated_at": _iso(v["activated_at"]),
    }


def _lock_view(lock: dict[str, Any] | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    return {"run_id": lock["run_id"], "owner": lock["owner"], "since": _iso(lock["acquired_at"])}


def _next_cron(expr: str | None, now: datetime) -> str | None:
    if not expr:
        return None
    try:
        from cronsim import CronSim
    except ImportError:
        return None
    return as_utc(next(CronSim(expr, now.replace(tzinfo=None)))).isoformat(timespec="minutes")
