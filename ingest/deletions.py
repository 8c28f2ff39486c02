"""A run's deletions: decided together at its end under the coverage guard, then carried out.

Pages that go away (404/410, emptied, turned duplicate, unreached for ``sync.delete_after``) are
collected batch by batch (:class:`ingest.sync.Removal`); :func:`finish_deletions` asks
:func:`ingest.sync.plan_deletions` what may go and deletes their vectors, store first, ledger second.
With ``dedup.drop_repeated_chunks``, :func:`sweep_repeated_chunks` then removes chunks whose text
became too common during the run.
"""

from __future__ import annotations

from ingest.env import RunEnv
from ingest.ids import doc_prefix
from ingest.model import Outcome, PageStatus
from ingest.state import OutcomeRow, utcnow
from ingest.summary import RunSummary
from ingest.sync import Removal, plan_deletions


def delete_pages(env: RunEnv, removals: list[Removal], summary: RunSummary, *, write: bool = True) -> None:
    """Delete every vector of the given pages from the store, then record their new status."""
    if not removals:
        return
    rows = env.db.pages_by_url(env.cfg.name, [r.url for r in removals])
    ids: list[str] = []
    for removal in removals:
        if removal.url in rows:
            ids += env.store.list_ids(doc_prefix(rows[removal.url]["doc_id"]))
    if write:
        if ids:
            env.store.delete(ids)
        env.db.remove_pages(env.cfg.name, env.store.target, [(r.url, r.status, r.alias_of) for r in removals])
        env.db.add_outcomes(summary.run_id, [_deleted(r) for r in removals])
    summary.add(
        {
            "vectors_deleted": len(ids),
            "pages_deleted": len(removals),
            "pages_stale_deleted": sum(1 for r in removals if r.status == PageStatus.STALE),
        }
    )


def _deleted(r: Removal) -> OutcomeRow:
    return {"url": r.url, "outcome": str(Outcome.DELETED), "kind": str(r.status), "detail": r.reason}


def finish_deletions(
    env: RunEnv,
    seen: set[str],
    removals: list[Removal],
    summary: RunSummary,
    *,
    whole_site: bool,
    write: bool = True,
) -> None:
    """Decide and carry out the run's deletions under the coverage guard (:mod:`ingest.sync`)."""
    cfg = env.cfg
    deletions = plan_deletions(
        env.db.live_last_seen(cfg.name),
        seen,
        removals,
        whole_site=whole_site,
        complete=summary.crawl_complete,
        now=utcnow(),
        delete_after=cfg.sync.delete_after,
        min_coverage=cfg.sync.min_coverage,
    )
    summary.coverage = round(deletions.coverage, 4)
    if deletions.degraded:
        summary.degrade(deletions.reason)
        summary.pages_held_back = len(deletions.held_back)
        if write:
            env.db.add_outcomes(
                summary.run_id,
                [
                    {
                        "url": r.url,
                        "outcome": str(Outcome.KEPT),
                        "kind": str(r.status),
                        "detail": deletions.reason,
                    }
                    for r in deletions.held_back
                ],
            )
    delete_pages(env, deletions.delete, summary, write=write)


def sweep_repeated_chunks(env: RunEnv, summary: RunSummary) -> None:
    """Delete chunks whose text is now on more than ``drop_repeated_chunks`` pages (pages processed
    before the count passed the limit kept them); the ledger keeps them, marked dropped."""
    limit = env.cfg.dedup.drop_repeated_chunks
    if not limit:
        return
    over = {h for h, docs in env.db.docs_by_text_hash(env.cfg.name).items() if len(docs) > limit}
    ids = [c["chunk_id"] for c in env.db.all_chunks(env.cfg.name) if c["text_hash"] in over]
    if ids:
        env.store.delete(ids)
        env.db.drop_chunks(env.cfg.name, env.store.target, ids)
        summary.add({"vectors_deleted": len(ids), "chunks_dropped_repeated": len(ids)})
