"""The state DB on a temporary SQLite file: commit, remove, cut-over, locks, migration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.bookkeeping import Heartbeat
from ingest.errors import RunInProgressError
from ingest.model import PageStatus, RunStatus, VersionStatus
from ingest.state import NewChunk, NewPage, StateDB, utcnow
from ingest.state.schema import locks


@pytest.fixture
def db(tmp_path: Path) -> StateDB:
    return StateDB(f"sqlite:///{tmp_path / 'state.db'}")


def _page(url: str, doc: str, status: PageStatus = PageStatus.LIVE, alias_of: str | None = None) -> NewPage:
    return {
        "url": url,
        "doc_id": doc,
        "canonical_url": None,
        "title": "T",
        "etag": '"e1"',
        "last_modified": None,
        "content_hash": "h-" + doc,
        "chunk_key": "ck",
        "text": "text of " + doc if status == PageStatus.LIVE else None,
        "fingerprint": 7,
        "alias_of": alias_of,
        "status": str(status),
        "last_changed": utcnow(),
    }


def _chunk(doc: str, n: int, dropped: bool = False) -> NewChunk:
    return {
        "chunk_id": f"{doc}#{n:016x}",
        "doc_id": doc,
        "url": f"u/{doc}",
        "position": n,
        "text": f"chunk {n} of {doc}",
        "text_hash": f"{n:016x}",
        "tokens": 3,
        "heading_path": "A > B",
        "dropped": dropped,
    }


def test_commit_replaces_a_pages_rows_and_records_written_ids(db: StateDB) -> None:
    db.commit_pages("c", "t", "mk", [_page("u/a", "a")], [_chunk("a", 1), _chunk("a", 2)], ["a#1", "a#2"], [])
    first_seen = db.pages_by_url("c", ["u/a"])["u/a"]["first_seen"]
    quarantined = [(_chunk("a", 4), "400 invalid input")]
    db.commit_pages(
        "c", "t", "mk", [_page("u/a", "a")], [_chunk("a", 3)], ["a#3"], ["a#1", "a#2"], quarantined, "r1"
    )
    row = db.pages_by_url("c", ["u/a"])["u/a"]
    assert row["first_seen"] == first_seen and row["status"] == "live"
    assert [c["chunk_id"] for c in db.all_chunks("c")] == [_chunk("a", 3)["chunk_id"]]
    assert db.written_ids("t") == {"a#3": "mk"}
    assert [(q["url"], q["reason"]) for q in db.quarantined("c")] == [("u/a", "400 invalid input")]
    assert db.page_validators("c") == {"u/a": ('"e1"', None)}


def test_remove_marks_pages_and_forgets_their_chunks_and_aliases(db: StateDB) -> None:
    db.commit_pages(
        "c",
        "t",
        "mk",
        [_page("u/a", "a"), _page("u/b", "b"), _page("u/a2", "a2", PageStatus.ALIAS, alias_of="u/a")],
        [_chunk("a", 1), _chunk("b", 1)],
        [_chunk("a", 1)["chunk_id"], _chunk("b", 1)["chunk_id"]],
        [],
    )
    db.remove_pages("c", "t", [("u/a", PageStatus.GONE, None), ("u/b", PageStatus.ALIAS, "u/x")])
    pages = {p["url"]: p for p in db.all_pages("c")}
    assert pages["u/a"]["status"] == "gone" and pages["u/a"]["text"] is None
    assert pages["u/b"]["status"] == "alias" and pages["u/b"]["alias_of"] == "u/x"
    assert "u/a2" not in pages  # an alias of a removed page is indexed afresh when next seen
    assert db.all_chunks("c") == [] and db.written_ids("t") == {}
    assert db.page_counts("c") == {"gone": 1, "alias": 1}


def test_cut_over_switches_live_version_and_chunking_in_one_step(db: StateDB) -> None:
    db.add_version("c", 1, "t1", "m1", "k1", VersionStatus.LIVE)
    db.commit_pages("c", "t1", "m1", [_page("u/a", "a")], [_chunk("a", 1)], [_chunk("a", 1)["chunk_id"]], [])
    db.add_version("c", 2, "t2", "m2", "k2", VersionStatus.BUILDING)
    rows = [_chunk("a", 5), _chunk("a", 6, dropped=True)]
    db.cut_over("c", 2, "k2", rows, "t2", "m2", vectors=1)
    live = db.live_version("c")
    assert live is not None and live["version"] == 2 and live["vectors"] == 1
    assert [v["status"] for v in db.versions("c")] == ["previous", "live"]
    assert db.pages_by_url("c", ["u/a"])["u/a"]["chunk_key"] == "k2"
    assert db.written_ids("t2") == {_chunk("a", 5)["chunk_id"]: "m2"}
    assert db.count_written("t1") == 1  # the previous version's record stays until prune


def test_a_live_holder_keeps_its_lock_and_a_dead_one_is_taken_over_and_marked_crashed(db: StateDB) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = db.start_run("c", "ingest")
    with db.engine.begin() as conn:  # a holder on this host whose process is gone
        conn.execute(
            locks.insert().values(
                crawl="c",
                run_id=run,
                owner=f"{socket.gethostname()}:{dead.pid}",
                acquired_at=utcnow(),
                heartbeat_at=utcnow(),
            )
        )
    mine = db.start_run("c", "ingest")
    assert db.acquire_lock("c", mine) == run
    assert db.last_runs("c")[-1]["status"] == RunStatus.CRASHED
    other = db.start_run("c", "ingest")
    with pytest.raises(RunInProgressError, match="in progress"):
        db.acquire_lock("c", other)  # this process is alive: refused however old its heartbeat
    with db.engine.begin() as conn:
        conn.execute(locks.update().values(heartbeat_at=utcnow() - timedelta(hours=1)))
    with pytest.raises(RunInProgressError):
        db.acquire_lock("c", other)
    db.release_lock("c", mine)
    assert db.lock_holder("c") is None


def test_a_holder_elsewhere_is_dead_only_when_its_heartbeat_is_stale(db: StateDB) -> None:
    run = db.start_run("c", "ingest")
    with db.engine.begin() as conn:
        conn.execute(
            locks.insert().values(
                crawl="c", run_id=run, owner="far-away-host:1", acquired_at=utcnow(), heartbeat_at=utcnow()
            )
        )
    with pytest.raises(RunInProgressError):
        db.acquire_lock("c", db.start_run("c", "ingest"))
    with db.engine.begin() as conn:
        conn.execute(locks.update().values(heartbeat_at=utcnow() - timedelta(minutes=11)))
    assert db.acquire_lock("c", db.start_run("c", "ingest")) == run


def test_heartbeat_thread_beats_during_a_long_stage(db: StateDB) -> None:
    run = db.start_run("c", "ingest")
    db.acquire_lock("c", run)
    before = db.lock_holder("c")["heartbeat_at"]  # type: ignore[index]
    with Heartbeat(db, "c", run, every=0.05) as beat:
        time.sleep(0.5)  # a stage that never returns to the batch loop
        after = db.lock_holder("c")["heartbeat_at"]  # type: ignore[index]
        assert after > before and not beat.lost
        db.release_lock("c", run)  # someone took the lock away
        deadline = time.monotonic() + 10
        while not beat.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.lost


def test_an_older_ledger_gains_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "create table locks (crawl varchar(100) primary key, run_id varchar(40) not null, "
            "owner text not null, acquired_at datetime not null, heartbeat_at datetime not null)"
        )
        conn.exec_driver_sql(
            "insert into locks values ('c', 'r', 'h:1', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    db = StateDB(url)
    holder = db.lock_holder("c")
    assert holder is not None and holder["owner_started"] is None and holder["run_id"] == "r"


def test_open_existing_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    assert StateDB.open_existing(f"sqlite:///{path}") is None
    assert not path.parent.exists()
    StateDB(f"sqlite:///{path}").close()
    reopened = StateDB.open_existing(f"sqlite:///{path}")
    assert reopened is not None and reopened.last_runs("c") == []
    assert os.path.getsize(path) > 0


def test_the_embedding_cache_keeps_or_replaces(db: StateDB) -> None:
    import numpy as np

    db.cache_vectors("mk", {"a": np.ones(4, dtype=np.float32)})
    db.cache_vectors("mk", {"a": np.zeros(4, dtype=np.float32) + 2, "b": np.ones(4, dtype=np.float32)})
    got = db.cached_vectors("mk", ["a", "b", "c"])
    assert set(got) == {"a", "b"} and got["a"][0] == 1  # an existing entry is kept
    db.cache_vectors("mk", {"a": np.zeros(4, dtype=np.float32) + 3}, replace=True)
    assert db.cached_vectors("mk", ["a"])["a"][0] == 3


def test_batch_lookups_by_document_use_an_index_and_older_ledgers_get_it(tmp_path: Path) -> None:
    # A commit deletes a batch's chunks by (crawl, doc_id): with only a doc_id index SQLite used the
    # primary key's crawl prefix and read every chunk of the crawl for each batch.
    path = tmp_path / "old.db"
    StateDB(f"sqlite:///{path}").close()
    with sa.create_engine(f"sqlite:///{path}").begin() as conn:  # a ledger as webvec wrote it before
        for name in ("ix_chunks_crawl_doc_id", "ix_quarantine_crawl_doc_id", "ix_pages_crawl_alias_of"):
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql("CREATE INDEX ix_chunks_doc_id ON chunks (doc_id)")
    StateDB(f"sqlite:///{path}").close()  # opening it adds what is missing
    with sa.create_engine(f"sqlite:///{path}").connect() as conn:
        for sql in (
            "DELETE FROM chunks WHERE crawl = 'c' AND doc_id IN ('a', 'b')",
            "DELETE FROM quarantine WHERE crawl = 'c' AND doc_id IN ('a', 'b')",
            "DELETE FROM pages WHERE crawl = 'c' AND alias_of IN ('a', 'b')",
        ):
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "doc_id=?" in plan or "alias_of=?" in plan, plan
