"""Operator views and repairs: ``verify [--repair]``, ``status`` and ``report``.

``status`` and ``report`` read the ledger only (they never load a model or open the store, so they
answer in well under a second) and create nothing for a crawl that never ran. ``verify`` compares the
ledger with the live store; ``--repair`` is a recorded run like any other (lock, run row).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from ingest.bookkeeping import Hooks, recorded_run
from ingest.config import CrawlConfig
from ingest.env import make_env
from ingest.ids import is_chunk_id
from ingest.model import RunStatus
from ingest.paths import expand
from ingest.query import open_ledger
from ingest.state import LockRow, RunRow, StateDB, VersionRow, as_utc, utcnow
from ingest.state.runs import holder_is_dead
from ingest.summary import RunSummary
from ingest.versions import rewrite_chunks


def verify_crawl(
    cfg: CrawlConfig, repair: bool = False, delete_foreign: bool = False, hooks: Hooks | None = None
) -> dict[str, Any]:
    """Compare the ledger with the live store: missing ids, orphans (webvec ids the ledger does not
    know), ids under another model_key, and foreign ids (not webvec's id scheme: records someone else
    added). With ``repair``: re-upsert missing and wrong-model vectors (embedding cache first) and
    delete orphans — foreign ids only with ``delete_foreign``."""
    db = open_ledger(cfg)
    try:
        return _verify(cfg, db, repair, delete_foreign, hooks)
    finally:
        db.close()


def _verify(
    cfg: CrawlConfig, db: StateDB, repair: bool, delete_foreign: bool, hooks: Hooks | None
) -> dict[str, Any]:
    env = make_env(cfg, db)
    chunks = {c["chunk_id"]: c for c in db.all_chunks(cfg.name)}
    written = db.written_ids(env.store.target)
    in_store = set(env.store.list_ids())
    missing = sorted(set(chunks) - in_store)
    strays = in_store - set(chunks)
    foreign = sorted(i for i in strays if not is_chunk_id(i))
    orphans = sorted(i for i in strays if is_chunk_id(i))
    wrong_model = sorted(cid for cid in set(chunks) & in_store if written.get(cid) != env.keys.model_key)
    report: dict[str, Any] = {
        "crawl": cfg.name,
        "target": env.store.target,
        "location": expand(env.store.target),
        "ledger_chunks": len(chunks),
        "store_vectors": len(in_store),
        "missing": len(missing),
        "orphans": len(orphans),
        "wrong_model_key": len(wrong_model),
        "foreign": len(foreign),
        "examples": {
            "missing": missing[:5],
            "orphans": orphans[:5],
            "wrong_model_key": wrong_model[:5],
            "foreign": foreign[:5],
        },
        "ok": not (missing or orphans or wrong_model or (foreign and delete_foreign)),
        "repaired": False,
    }
    if repair and not report["ok"]:
        summary = RunSummary(crawl=cfg.name, kind="repair", target=env.store.target)
        with recorded_run(db, summary, hooks):
            delete = orphans + (foreign if delete_foreign else [])
            if delete:
                env.store.delete(delete)
                db.mark_written(env.store.target, env.keys.model_key, [], delete)
                summary.add({"vectors_deleted": len(delete)})
            rewrite_chunks(env, [chunks[c] for c in [*missing, *wrong_model]], summary)
        report["repaired"] = True
    return report


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat(timespec="seconds") if value else None


def _version_view(db: StateDB, v: VersionRow | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "version": v["version"],
        "status": v["status"],
        "target": v["target"],
        "location": expand(v["target"]),
        "model_key": v["model_key"],
        "pinned": bool(v["pinned"]),
        "vectors": db.count_written(v["target"]),
        "activated_at": _iso(v["activated_at"]),
    }


def _run_status(run: RunRow, lock: LockRow | None, now: datetime) -> str:
    """A run recorded ``running`` whose process is gone is shown as crashed."""
    if run["status"] != RunStatus.RUNNING:
        return run["status"]
    if lock is not None and lock["run_id"] == run["run_id"] and not holder_is_dead(lock, now):
        return RunStatus.RUNNING
    return RunStatus.CRASHED


def status_crawl(cfg: CrawlConfig) -> dict[str, Any]:
    """Last runs, counts, the live version (and where it really is now), the lock, what is due."""
    db = StateDB.open_existing(cfg.state_url())
    if db is None:
        return {"crawl": cfg.name, "message": f"never run: `webvec run {cfg.name}` starts it"}
    try:
        now = utcnow()
        live = db.live_version(cfg.name)
        runs = db.last_runs(cfg.name, 5)
        lock = db.lock_holder(cfg.name)
        due: dict[str, Any] = {
            "next_ingest": _next_cron(cfg.schedule, now),
            "next_reembed": _next_cron(cfg.reembed.schedule, now),
        }
        last_complete = next(
            (r for r in runs if r["kind"] == "ingest" and (r["summary"] or {}).get("crawl_complete")), None
        )
        if last_complete:
            started = as_utc(last_complete["started_at"])
            due["pages_unseen_awaiting_deletion"] = sum(
                1 for t in db.live_last_seen(cfg.name).values() if t < started
            )
        if live and cfg.reembed.max_age:
            due["vectors_older_than_max_age"] = sum(
                1 for t in db.written_at(live["target"]).values() if now - t >= cfg.reembed.max_age
            )
        quarantined = db.quarantined(cfg.name)
        return {
            "crawl": cfg.name,
            "pages": db.page_counts(cfg.name),
            "chunks": db.count_chunks(cfg.name),
            "chunks_quarantined": len(quarantined),
            "quarantined": [{"url": q["url"], "reason": q["reason"]} for q in quarantined[:5]],
            "live_version": _version_view(db, live),
            "versions": [_version_view(db, v) for v in db.versions(cfg.name)],
            "running": None
            if lock is None
            else {
                "run_id": lock["run_id"],
                "owner": lock["owner"],
                "since": _iso(lock["acquired_at"]),
                "alive": not holder_is_dead(lock, now),
            },
            "last_runs": [
                {
                    "run_id": r["run_id"],
                    "kind": r["kind"],
                    "status": _run_status(r, lock, now),
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
    finally:
        db.close()


def report_crawl(cfg: CrawlConfig, run_id: str | None = None) -> dict[str, Any]:
    """What the last crawl run (or ``run_id``) did with each URL: fetched, not modified, skipped and
    why, failed and why, alias of which page, quarantined, deleted and why."""
    db = open_ledger(cfg)
    try:
        runs = [r for r in db.last_runs(cfg.name, 20) if r["kind"] in ("ingest", "backfill")]
        run = (
            next((r for r in runs if r["run_id"] == run_id), None) if run_id else (runs[0] if runs else None)
        )
        if run is None:
            what = f"run {run_id}" if run_id else "crawl run"
            return {"crawl": cfg.name, "message": f"no {what} recorded (kept: the last runs of each crawl)"}
        rows = db.outcomes_of(run["run_id"])
        return {
            "crawl": cfg.name,
            "run_id": run["run_id"],
            "status": run["status"],
            "started_at": _iso(run["started_at"]),
            "counts": dict(Counter(r["outcome"] for r in rows)),
            "urls": rows,
        }
    finally:
        db.close()


def _next_cron(expr: str | None, now: datetime) -> str | None:
    if not expr:
        return None
    try:
        from cronsim import CronSim
    except ImportError:
        return None
    return as_utc(next(CronSim(expr, now.replace(tzinfo=None)))).isoformat(timespec="minutes")
