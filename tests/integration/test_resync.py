"""Re-run semantics (issue: keep the index in sync). Each test edits a local site between runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.bookkeeping import RunFailed
from ingest.config import load_crawl, sqlite_file
from ingest.env import live_version_number
from ingest.state import StateDB
from ingest.stores import make_store
from tests.integration.conftest import ingest
from tests.integration.sites import make_site, prose

pytestmark = [pytest.mark.server, pytest.mark.model]


def _state(crawl: Path) -> tuple[StateDB, object]:
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    return db, make_store(cfg.store, cfg.name, live_version_number(cfg, db))


def _ids(store: object) -> set[str]:
    return set(store.list_ids())  # type: ignore[attr-defined]


@pytest.fixture
def tiny(tmp_path: Path, serve_dir, write_crawl):  # type: ignore[no-untyped-def]
    root = tmp_path / "tiny"
    make_site(root)
    server = serve_dir(root)
    crawl = write_crawl(server.url, name="tiny", source={"sitemaps": []})
    return root, server, crawl


def test_one_page_edited(tiny) -> None:  # type: ignore[no-untyped-def]
    root, _server, crawl = tiny
    first = ingest(crawl)
    db, store = _state(crawl)
    before = _ids(store)
    assert first["vectors_written"] == len(before) > 0
    # Edit one section of one page.
    page = root / "rivers.html"
    page.write_text(
        page.read_text().replace(
            "In part 1, sentence 3 about rivers", "In part 1, sentence 3, newly revised, about rivers"
        )
    )
    second = ingest(crawl)
    after = _ids(store)
    assert second["pages_changed"] == 1 and second["pages_unchanged"] >= 8
    assert 1 <= second["texts_embedded"] <= 2  # only the chunk(s) whose text changed
    assert second["vectors_written"] == second["texts_embedded"]
    assert second["vectors_deleted"] == len(before - after) >= 1
    rivers = next(p["doc_id"] for p in db.all_pages("tiny") if p["url"].endswith("/rivers.html"))
    assert {i for i in before if not i.startswith(rivers)} == {i for i in after if not i.startswith(rivers)}
    assert after == {c["chunk_id"] for c in db.all_chunks("tiny")}


def test_repeated_text_is_embedded_once_and_can_be_dropped(tmp_path, serve_dir, write_crawl) -> None:  # type: ignore[no-untyped-def]
    shared = prose("this atlas and its licence", 9, sentences=9)
    make_site(tmp_path / "s", shared=shared)
    server = serve_dir(tmp_path / "s")
    # Bare chunks: the shared section is embedded once and reused on 7 more pages. (With the default
    # context template each page's title goes with it into the embedder: one vector per page.)
    bare = write_crawl(server.url, name="shared", source={"sitemaps": []}, chunk={"context_template": None})
    summary = ingest(bare)
    assert summary["cache_hits"] >= 7
    assert summary["texts_embedded"] == summary["chunks"] - summary["cache_hits"]

    crawl2 = write_crawl(
        server.url, name="dropped", source={"sitemaps": []}, dedup={"drop_repeated_chunks": 3}
    )
    dropped = ingest(crawl2)
    db, store = _state(crawl2)
    assert dropped["chunks_dropped_repeated"] >= 8
    texts = [c["text"] for c in db.all_chunks("dropped")]
    assert texts and not any("this atlas and its licence" in t for t in texts)
    assert _ids(store) == {c["chunk_id"] for c in db.all_chunks("dropped")}


def test_near_duplicate_pages_are_stored_once(tmp_path, serve_dir, write_crawl) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "nd"
    make_site(root, extra_links=["rivers-print.html", "rivers.html?page=1"])
    html = (root / "rivers.html").read_text()
    (root / "rivers-print.html").write_text(
        html.replace("</article>", "<p>Printed from the web edition.</p></article>")
    )
    server = serve_dir(root)
    crawl = write_crawl(server.url, name="neardup", source={"sitemaps": []})
    summary = ingest(crawl)
    db, store = _state(crawl)
    pages = {p["url"].removeprefix(server.url): p for p in db.all_pages("neardup")}
    aliases = {u: p["alias_of"].removeprefix(server.url) for u, p in pages.items() if p["status"] == "alias"}
    # Two groups of one page each: "/" = "/index.html", and rivers.html = its print copy = ?page=1.
    # Which member is kept depends on fetch order; every other member is an alias of the kept one.
    assert summary["pages_duplicate"] == len(aliases) == 3
    for group in ({"", "index.html"}, {"rivers.html", "rivers-print.html", "rivers.html?page=1"}):
        kept = [u for u in group if pages[u]["status"] == "live"]
        assert len(kept) == 1 and all(aliases[u] == kept[0] for u in group - set(kept))
    for url in aliases:
        assert store.list_ids(pages[url]["doc_id"] + "#") == []  # type: ignore[attr-defined]
    # Unchanged: aliases answer 304 like live pages; nothing is extracted again.
    again = ingest(crawl)
    assert again["pages_extracted"] == 0 and again["pages_not_modified"] == again["pages_unchanged"]
    assert {p["url"] for p in db.all_pages("neardup") if p["status"] == "alias"} == {
        server.url + u for u in aliases
    }
    # The kept page changes: its aliases are fetched afresh next time and decided again.
    kept_rivers = next(
        u for u in ("rivers.html", "rivers-print.html", "rivers.html?page=1") if u not in aliases
    )
    (root / kept_rivers.split("?")[0]).write_text(
        (root / kept_rivers.split("?")[0]).read_text().replace("sentence 4 about rivers", "a new claim")
    )
    ingest(crawl)
    third = ingest(crawl)
    assert third["pages_duplicate"] >= 1  # re-fetched (not 304) and found to be duplicates again


def test_gone_and_unseen_pages(tiny, write_crawl) -> None:  # type: ignore[no-untyped-def]
    root, server, crawl = tiny
    ingest(crawl)
    db, store = _state(crawl)
    doc = {p["url"].removeprefix(server.url): p["doc_id"] for p in db.all_pages("tiny")}
    assert store.list_ids(doc["deserts.html"] + "#")  # type: ignore[attr-defined]

    server.overrides["/deserts.html"] = 410  # gone: deleted at once
    # caves.html is no longer linked from anywhere: unseen, deleted only after sync.delete_after.
    for path in root.glob("*.html"):
        path.write_text(path.read_text().replace('<a href="caves.html">caves.html</a>', ""))
    second = ingest(crawl)
    assert second["pages_gone"] == 1 and second["pages_stale_deleted"] == 0
    assert store.list_ids(doc["deserts.html"] + "#") == []  # type: ignore[attr-defined]
    assert store.list_ids(doc["caves.html"] + "#")  # type: ignore[attr-defined]  # within the 7-day grace

    now = write_crawl(server.url, name="tiny", source={"sitemaps": []}, sync={"delete_after": "0s"})
    third = ingest(now)
    assert third["pages_stale_deleted"] == 1 and third["status"] == "ok"
    assert store.list_ids(doc["caves.html"] + "#") == []  # type: ignore[attr-defined]
    assert _ids(store) == {c["chunk_id"] for c in db.all_chunks("tiny")}


def test_low_coverage_deletes_nothing_and_is_degraded(tiny, write_crawl) -> None:  # type: ignore[no-untyped-def]
    root, server, crawl = tiny
    first = ingest(crawl)
    _db, store = _state(crawl)
    for path in root.glob("*.html"):
        if path.name != "index.html":
            server.overrides[f"/{path.name}"] = 503  # the site is mostly down
    now = write_crawl(server.url, name="tiny", source={"sitemaps": []}, sync={"delete_after": "0s"})
    second = ingest(now)
    assert second["status"] == "degraded" and "min_coverage" in second["message"]
    assert second["vectors_deleted"] == 0 and store.count() == first["vectors_written"]  # type: ignore[attr-defined]


def _webvec(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    exe = str(Path(sys.executable).with_name("webvec"))
    return subprocess.Popen(
        [exe, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wrote_some(cfg) -> bool:  # type: ignore[no-untyped-def]
    """Whether the running crawl has vectors in its store. A local Qdrant folder or Milvus Lite file is
    one process's at a time, so for those the ledger's ``written`` rows (committed only after the
    store acknowledged) answer, read without opening the store."""
    if cfg.store.kind not in ("qdrant", "milvus"):
        return make_store(cfg.store, cfg.name).count() > 0
    state = sqlite_file(cfg.state_url())
    if state is None or not state.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return bool(conn.execute("SELECT count(*) FROM written").fetchone()[0])
        except sqlite3.OperationalError:  # the run has not made its tables yet
            return False


@pytest.mark.parametrize("store_kind", ["chroma", "pgvector", "qdrant", "milvus", "pinecone"])
def test_kill_9_mid_run_then_rerun_converges(
    tmp_path, serve_dir, write_crawl, store_kind, request, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "site"
    shutil.copytree(Path(__file__).resolve().parents[2] / "bench" / "site", root)
    server = serve_dir(root)
    store: dict[str, str] = {"kind": store_kind}
    env = {"PREFECT_API_URL": ""}  # the CLI runs the crawl itself, without Prefect
    if store_kind == "pinecone":  # the Pinecone API server of the tests (tests/servers/pinecone_server.py)
        from tests.servers.pinecone_server import start_pinecone_server

        pinecone = start_pinecone_server()
        request.addfinalizer(pinecone.stop)
        store = {"kind": "pinecone", "host": pinecone.url, "index": "killed"}
        env["PINECONE_API_KEY"] = pinecone.api_key
        monkeypatch.setenv("PINECONE_API_KEY", pinecone.api_key)
    crawl = write_crawl(server.url, name="killed", store=store)
    clean_crawl = crawl
    if store_kind == "pinecone":  # the clean run's own index on the same server
        clean_crawl = tmp_path / "clean.yaml"
        clean_crawl.write_text(crawl.read_text().replace("index: killed", "index: killed-clean"))
    clean_env = {**env, "WEBVEC_HOME": str(tmp_path / "clean-home")}
    if store_kind == "pgvector":  # a database for the runs, another for the clean run
        pg = request.getfixturevalue("pgvector_server")
        env["WEBVEC_PGVECTOR_URL"] = pg.create_database()
        clean_env["WEBVEC_PGVECTOR_URL"] = pg.create_database()
        monkeypatch.setenv("WEBVEC_PGVECTOR_URL", env["WEBVEC_PGVECTOR_URL"])  # for the checks below
    cfg = load_crawl(crawl)
    proc = _webvec("run", str(crawl), "--json", env=env)
    deadline = time.monotonic() + 120
    # Wait until the run is mid-way: some vectors in the store, not all pages committed.
    while time.monotonic() < deadline:
        if _wrote_some(cfg):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the flow process and its spider subprocess
    proc.communicate()  # waits, and closes its pipes
    assert proc.returncode == -signal.SIGKILL

    again = _webvec("run", str(crawl), "--json", env=env)
    _out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    db, store = _state(crawl)
    ledger = {c["chunk_id"] for c in db.all_chunks("killed")}
    in_store = store.list_ids()  # type: ignore[attr-defined]
    assert len(in_store) == len(set(in_store))  # no duplicate ids
    assert set(in_store) == ledger  # no orphans, nothing missing

    # The same as a clean run from scratch into another home.
    clean = _webvec("run", str(clean_crawl), "--json", env=clean_env)
    clean.communicate(timeout=300)
    assert clean.returncode == 0
    clean_db = StateDB(f"sqlite:///{tmp_path / 'clean-home' / 'state.db'}")
    assert {c["chunk_id"] for c in clean_db.all_chunks("killed")} == ledger


def test_two_runs_of_one_crawl_never_interleave(tiny) -> None:  # type: ignore[no-untyped-def]
    _root, _server, crawl = tiny
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    db.acquire_lock("tiny", "someone-else")  # as if another worker were running this crawl
    with pytest.raises(RunFailed, match="another run of 'tiny' is in progress"):
        ingest(crawl)
    assert make_store(cfg.store, cfg.name).count() == 0
    db.release_lock("tiny", "someone-else")
    assert ingest(crawl)["status"] == "ok"


def test_reembed_with_another_model_cuts_over_and_rolls_back(tiny, write_crawl, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from flows.reembed import reembed
    from ingest.errors import ConfigError
    from ingest.query import search
    from ingest.versions import rollback
    from tests.servers.openai_server import start_openai_server

    _root, server, crawl = tiny
    original = crawl.read_text()
    first = ingest(crawl)
    db, v1 = _state(crawl)
    with start_openai_server() as oai:
        monkeypatch.setenv("OPENAI_API_KEY", oai.api_key or "test-key")
        crawl2 = write_crawl(
            server.url,
            name="tiny",
            source={"sitemaps": []},
            embedder={"kind": "openai", "base_url": oai.base_url},
        )
        summary = reembed(str(crawl2)).to_dict()
        cfg2 = load_crawl(crawl2)
        live = db.live_version("tiny")
        assert live is not None and live["version"] == 2 and summary["status"] == "ok"
        v2 = make_store(cfg2.store, cfg2.name, 2)
        assert v2.count() == live["vectors"] == len(db.all_chunks("tiny"))
        assert v1.count() == first["vectors_written"]  # previous version kept
        assert oai.requests > 0  # re-embedded without a crawl: nothing fetched
        hits = search(cfg2, "glaciers shape the land", k=3)
        assert hits and all(h["id"] in set(v2.list_ids()) for h in hits)
        # An unchanged ingest with the new model writes nothing new.
        assert ingest(crawl2)["vectors_written"] == 0
        # Roll back: version 1 is live again and pinned, so ingesting with the new model is refused.
        assert rollback(cfg2, db) == (2, 1)
        with pytest.raises(RunFailed) as info:
            ingest(crawl2)
        assert isinstance(info.value.__cause__, ConfigError) and "rolled back" in str(info.value)
    # With the original embedder, ingest works against version 1 again.
    crawl.write_text(original)
    assert ingest(crawl)["status"] == "ok"
    assert db.live_version("tiny")["version"] == 1  # type: ignore[index]


def test_reembed_max_age_refreshes_old_vectors_in_place(tiny, write_crawl) -> None:  # type: ignore[no-untyped-def]
    from flows.reembed import reembed

    _root, server, crawl = tiny
    first = ingest(crawl)
    db, store = _state(crawl)
    before = db.written_at(store.target)  # type: ignore[attr-defined]
    assert reembed(str(crawl)).to_dict()["texts_embedded"] == 0  # same model, no max_age: nothing to do
    aged = write_crawl(server.url, name="tiny", source={"sitemaps": []}, reembed={"max_age": "0s"})
    summary = reembed(str(aged)).to_dict()
    assert summary["vectors_written"] == first["vectors_written"] == store.count()  # type: ignore[attr-defined]
    assert 0 < summary["texts_embedded"] <= first["vectors_written"]
    after = db.written_at(store.target)  # type: ignore[attr-defined]
    assert set(after) == set(before) and all(after[i] > before[i] for i in before)
    assert db.live_version("tiny")["version"] == 1  # type: ignore[index]  # in place, no new version
