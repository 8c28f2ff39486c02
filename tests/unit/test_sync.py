"""Planning against the ledger (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.extract import Document
from ingest.model import PageStatus
from ingest.sync import Removal, plan, plan_deletions

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def _doc(url: str, h: str) -> Document:
    return Document(url=url, doc_id=url[-1], markdown="text", content_hash=h)


def _row(h: str, key: str = "k", status: str = "live", text: str | None = "old text") -> dict:
    return {
        "status": status,
        "content_hash": h,
        "chunk_key": key,
        "text": text,
        "title": "T",
        "canonical_url": None,
    }


def test_plan_sorts_new_changed_unchanged_gone() -> None:
    ledger = {
        "u/b": _row("hb"),
        "u/c": _row("old"),
        "u/d": _row("hd"),
        "u/e": _row("he"),
        "u/f": _row("hf", status="gone"),
    }
    cs = plan(
        [_doc("u/a", "ha"), _doc("u/b", "hb"), _doc("u/c", "hc"), _doc("u/f", "hf")],
        not_modified=["u/d"],
        gone=["u/e", "u/zz"],
        ledger=ledger,
        chunk_key="k",
    )
    assert [d.url for d in cs.new] == ["u/a", "u/f"]
    assert [d.url for d in cs.changed] == ["u/c"]
    assert sorted(cs.unchanged) == ["u/b", "u/d"]
    assert [(r.url, r.status) for r in cs.removals] == [("u/e", PageStatus.GONE)]


def test_changed_chunking_rebuilds_even_a_304_page_from_the_ledger_text() -> None:
    ledger = {"u/a": _row("ha", key="old-key"), "u/b": _row("hb", key="old-key")}
    cs = plan([_doc("u/a", "ha")], ["u/b"], [], ledger, chunk_key="new-key")
    assert [d.url for d in cs.changed] == ["u/a", "u/b"]
    assert cs.changed[1].markdown == "old text"


def _deletions(live, seen, removals=(), complete=True, delete_after=timedelta(days=7)):  # type: ignore[no-untyped-def]
    return plan_deletions(
        live,
        seen,
        removals,
        whole_site=True,
        complete=complete,
        now=NOW,
        delete_after=delete_after,
        min_coverage=0.5,
    )


def test_stale_needs_a_complete_crawl_enough_coverage_and_the_grace_period() -> None:
    live = {f"u/{i}": NOW - timedelta(days=10) for i in range(10)}
    live["u/recent"] = NOW - timedelta(days=1)
    seen = {f"u/{i}" for i in range(8)}
    p = _deletions(live, seen)
    assert [r.url for r in p.delete] == ["u/8", "u/9"] and "u/recent" in p.unseen and not p.degraded
    assert {r.status for r in p.delete} == {PageStatus.STALE}
    p = _deletions(live, seen, complete=False)
    assert p.delete == [] and not p.degraded
    p = _deletions(live, {"u/0"}, delete_after=timedelta(0))
    assert p.delete == [] and p.degraded and p.coverage < 0.5


def test_a_single_gone_page_goes_at_once() -> None:
    live = {f"u/{i}": NOW for i in range(10)}
    gone = [Removal("u/3", PageStatus.GONE, "answered 404/410")]
    p = _deletions(live, set(live), gone)
    assert [r.url for r in p.delete] == ["u/3"] and not p.degraded and p.coverage == 0.9


def test_a_soft_outage_deletes_nothing() -> None:
    # Every page answers 200 with a maintenance template (no main text) or 404: they were all seen,
    # but they vanish at once, so the guard holds every deletion back.
    live = {f"u/{i}": NOW - timedelta(days=30) for i in range(10)}
    removals = [Removal(f"u/{i}", PageStatus.SKIPPED, "no main text") for i in range(6)]
    removals += [Removal(f"u/{i}", PageStatus.GONE, "answered 404/410") for i in range(6, 10)]
    p = _deletions(live, set(live), removals, delete_after=timedelta(0))
    assert p.delete == [] and p.degraded and len(p.held_back) == 10 and "min_coverage" in p.reason
    # Removed and unseen pages count together.
    p = _deletions(live, {f"u/{i}" for i in range(5)}, removals[:2], delete_after=timedelta(0))
    assert p.degraded and p.coverage == 0.3


def test_a_backfill_counts_only_its_own_removals() -> None:
    live = {f"u/{i}": NOW for i in range(10)}
    removals = [Removal("u/1", PageStatus.GONE, "answered 404/410")]
    p = plan_deletions(
        live,
        {"u/1"},
        removals,
        whole_site=False,
        complete=False,
        now=NOW,
        delete_after=timedelta(0),
        min_coverage=0.5,
    )
    assert [r.url for r in p.delete] == ["u/1"] and p.unseen == [] and not p.degraded
