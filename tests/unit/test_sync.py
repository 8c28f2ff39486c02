"""Planning against the ledger (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.extract import Document
from ingest.sync import plan, plan_stale

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
    assert cs.gone == ["u/e"]


def test_changed_chunking_rebuilds_even_a_304_page_from_the_ledger_text() -> None:
    ledger = {"u/a": _row("ha", key="old-key"), "u/b": _row("hb", key="old-key")}
    cs = plan([_doc("u/a", "ha")], ["u/b"], [], ledger, chunk_key="new-key")
    assert [d.url for d in cs.changed] == ["u/a", "u/b"]
    assert cs.changed[1].markdown == "old text"


def test_stale_needs_a_complete_crawl_enough_coverage_and_the_grace_period() -> None:
    live = {f"u/{i}": NOW - timedelta(days=10) for i in range(10)}
    live["u/recent"] = NOW - timedelta(days=1)
    seen = {f"u/{i}" for i in range(8)}
    p = plan_stale(live, seen, complete=True, now=NOW, delete_after=timedelta(days=7), min_coverage=0.5)
    assert p.to_delete == ["u/8", "u/9"] and "u/recent" in p.unseen and not p.degraded
    p = plan_stale(live, seen, complete=False, now=NOW, delete_after=timedelta(days=7), min_coverage=0.5)
    assert p.to_delete == [] and not p.degraded
    p = plan_stale(live, {"u/0"}, complete=True, now=NOW, delete_after=timedelta(0), min_coverage=0.5)
    assert p.to_delete == [] and p.degraded and p.coverage < 0.5
