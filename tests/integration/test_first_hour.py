"""What a new user meets in the first hour: runs without a Prefect server, read-only commands that
create nothing and fail clearly, failures that name their cause, a ledger that can move, a summary
that adds up, a per-URL report. The CLI runs as users run it (a subprocess, no PREFECT_API_URL)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ingest.config import load_crawl
from ingest.state import StateDB
from ingest.stores import make_store
from tests.integration.test_cli import webvec

pytestmark = pytest.mark.slow


@pytest.fixture
def no_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI as a new user runs it: no Prefect API configured."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


def test_read_only_commands_on_a_crawl_that_never_ran(no_prefect, write_crawl, webvec_home: Path) -> None:  # type: ignore[no-untyped-def]
    crawl = write_crawl("http://127.0.0.1:9/", name="never")
    result = webvec("query", str(crawl), "anything at all")
    assert result.returncode == 1
    assert "nothing ingested yet" in result.stderr and "webvec run never" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = webvec("query", str(crawl), "   ")
    assert result.returncode == 2 and "query text is empty" in result.stderr
    result = webvec("status", str(crawl), "--json")
    assert result.returncode == 0 and "never run" in json.loads(result.stdout)["message"]
    assert webvec("report", str(crawl)).returncode == 1
    assert webvec("verify", str(crawl)).returncode == 1
    assert not webvec_home.exists()  # no state DB, no Chroma folder, no logs


def test_plan_writes_nothing(no_prefect, site, write_crawl, webvec_home: Path) -> None:  # type: ignore[no-untyped-def]
    crawl = write_crawl(site.url, name="planned")
    result = webvec("plan", str(crawl), "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and plan["pages_new"] >= 20 and plan["texts_embedded"] > 0
    assert not webvec_home.exists()  # a dry run of a crawl that never ran leaves nothing behind

    assert webvec("run", str(crawl), "--json").returncode == 0
    db = StateDB(load_crawl(crawl).state_url())
    counts = (
        "select (select count(*) from page_links), (select count(*) from runs), "
        "(select count(*) from fetched)"
    )
    with db.engine.connect() as conn:
        before_counts = tuple(conn.exec_driver_sql(counts).one())
    before = {p: p.stat().st_mtime_ns for p in _files(webvec_home) if p.is_file()}
    result = webvec("plan", str(crawl), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pages_unchanged"] >= 20
    with db.engine.connect() as conn:
        assert tuple(conn.exec_driver_sql(counts).one()) == before_counts  # no link, run or page row
    after = {p for p in _files(webvec_home) if p.is_file()}
    # SQLite's WAL files may be touched by reading; no other file appears.
    assert {p for p in after - set(before) if not p.name.endswith(("-wal", "-shm"))} == set()


def test_run_without_prefect_summary_adds_up_and_report_explains_each_url(  # type: ignore[no-untyped-def]
    no_prefect, site, write_crawl
) -> None:
    crawl = write_crawl(site.url, name="explained")
    result = webvec("run", str(crawl), "--json")
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout)
    parts = ("new", "changed", "unchanged", "duplicate", "gone", "skipped", "failed")
    assert s["pages_fetched"] == sum(s[f"pages_{p}"] for p in parts)
    assert s["pages_duplicate"] >= 1 and s["pages_skipped"] >= 2

    result = webvec("report", str(crawl), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {r["url"].removeprefix(site.url): r for r in report["urls"]}
    assert rows["private/test-kitchen-notes.html"]["kind"] == "robots"
    assert rows["files/recipe-card.pdf"]["outcome"] == "new"  # a PDF is a document (issue 13)
    assert rows["files/starter-log.txt"]["kind"] == "not_html"
    assert rows["tags.html"]["kind"] == "no_main_text"
    assert rows["guides/starter-print.html"]["outcome"] == "alias"
    assert rows["guides/starter-print.html"]["detail"].endswith("guides/starter.html")
    assert report["counts"]["new"] == s["pages_new"]

    # The collection says which model made its vectors, so other clients can embed queries alike.
    cfg = load_crawl(crawl)
    meta = make_store(cfg.store, cfg.name).collection.metadata  # type: ignore[attr-defined]
    assert meta["webvec_model"] == "all-MiniLM-L6-v2" and meta["webvec_model_key"] == s["model_key"]


def test_unreachable_start_url_names_the_cause(no_prefect, write_crawl, webvec_home: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.servers.chroma_server import free_port

    crawl = write_crawl(f"http://127.0.0.1:{free_port()}/", name="refused", source={"sitemaps": []})
    result = webvec("run", str(crawl))
    assert result.returncode == 1
    assert "no pages fetched" in result.stderr and "onnection refused" in result.stderr
    log = next(webvec_home.glob("logs/*.spider.log"))
    assert str(log) in result.stderr
    # A failed first run leaves no live version pointing at nothing: a query says so.
    db = StateDB(load_crawl(crawl).state_url())
    assert db.versions("refused") == [] and db.last_runs("refused")[0]["status"] == "failed"
    result = webvec("query", str(crawl), "anything")
    assert result.returncode == 1 and "no live version" in result.stderr


def test_a_ledger_moves_with_its_home(
    no_prefect, site, write_crawl, webvec_home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    crawl = write_crawl(site.url, name="moving")
    assert webvec("run", str(crawl), "--json").returncode == 0
    moved = tmp_path / "elsewhere" / "home"
    shutil.copytree(webvec_home, moved)
    shutil.rmtree(webvec_home)
    env = {"WEBVEC_HOME": str(moved)}
    result = webvec("verify", str(crawl), "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["wrong_model_key"] == 0 and report["missing"] == 0
    status = json.loads(webvec("status", str(crawl), "--json", env=env).stdout)
    assert status["live_version"]["location"].startswith(f"chroma:{moved}/")
    assert status["live_version"]["target"].startswith("chroma:$WEBVEC_HOME/")
    result = webvec("query", str(crawl), "how long should dough rise", "--json", env=env)
    assert result.returncode == 0 and json.loads(result.stdout)


def test_verify_keeps_records_it_did_not_write(no_prefect, site, write_crawl) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from ingest.stores import VectorRecord

    crawl = write_crawl(site.url, name="shared-coll", source={"max_pages": 5, "sitemaps": []})
    assert webvec("run", str(crawl), "--json").returncode == 0
    cfg = load_crawl(crawl)
    store = make_store(cfg.store, cfg.name)
    vector = np.ones(384, dtype=np.float32) / 384**0.5
    store.upsert([VectorRecord("someone-elses-note", vector, {"text": "mine"})])
    report = json.loads(webvec("verify", str(crawl), "--json").stdout)
    assert report["foreign"] == 1 and report["orphans"] == 0 and report["ok"]
    assert webvec("verify", str(crawl), "--repair").returncode == 0
    assert "someone-elses-note" in store.list_ids()
    result = webvec("verify", str(crawl), "--repair", "--delete-foreign", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["repaired"]
    assert "someone-elses-note" not in store.list_ids()


def test_tables_are_not_cut_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    long_url = "https://example.org/" + "very-long-path-segment/" * 6
    (tmp_path / "wide.yaml").write_text(f"name: wide\nsource:\n  start_urls: [{long_url}]\n")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["WEBVEC_CRAWLS_DIR"] = str(tmp_path)
    result = webvec("list", env=env)
    assert result.returncode == 0 and long_url in result.stdout
    result = webvec("validate", str(tmp_path / "missing.yaml"), env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
