"""Faults that must not stall, wipe or poison an index (issue: fault handling), against real sites on
127.0.0.1 and the real spider, run as the CLI runs it (in process, no Prefect)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.config import load_crawl
from ingest.run import RunFailed
from ingest.state import StateDB
from ingest.stores import make_store
from tests.integration.conftest import ingest
from tests.integration.sites import make_site

pytestmark = pytest.mark.slow

MAINTENANCE = "<html><body><h1>Down for maintenance</h1><p>Back soon.</p></body></html>"


@pytest.fixture
def tiny(tmp_path: Path, serve_dir, write_crawl):  # type: ignore[no-untyped-def]
    root = tmp_path / "tiny"
    make_site(root)
    server = serve_dir(root)
    crawl = write_crawl(server.url, name="tiny", source={"sitemaps": []}, sync={"delete_after": "0s"})
    return root, server, crawl


def test_a_maintenance_page_on_every_url_deletes_nothing(tiny) -> None:  # type: ignore[no-untyped-def]
    root, _server, crawl = tiny
    first = ingest(crawl)
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    statuses = {p["url"]: p["status"] for p in db.all_pages("tiny")}
    saved = {p: p.read_text() for p in root.glob("*.html")}
    for page in saved:
        page.write_text(MAINTENANCE)
    outage = ingest(crawl)
    assert outage["status"] == "degraded" and "min_coverage" in outage["message"]
    assert outage["vectors_deleted"] == 0 and outage["pages_deleted"] == 0 and outage["pages_held_back"] >= 1
    assert make_store(cfg.store, cfg.name).count() == first["vectors_written"]
    assert {p["url"]: p["status"] for p in db.all_pages("tiny")} == statuses  # no page lost its vectors
    for page, html in saved.items():  # the site is back: nothing to re-embed
        page.write_text(html)
    back = ingest(crawl)
    assert back["status"] == "ok", back["message"]
    assert back["texts_embedded"] == 0 and back["vectors_deleted"] == 0


def test_a_burst_of_404s_deletes_nothing(tiny) -> None:  # type: ignore[no-untyped-def]
    root, server, crawl = tiny
    first = ingest(crawl)
    for page in root.glob("*.html"):
        if page.name != "index.html":
            server.overrides[f"/{page.name}"] = 404
    burst = ingest(crawl)
    assert burst["status"] == "degraded" and burst["pages_gone"] == 8 and burst["vectors_deleted"] == 0
    cfg = load_crawl(crawl)
    assert make_store(cfg.store, cfg.name).count() == first["vectors_written"]
    report = StateDB(cfg.state_url()).outcomes_of(burst["run_id"])
    assert sum(1 for r in report if r["outcome"] == "kept") == 8


def test_a_rejected_chunk_is_quarantined_and_the_rest_written(  # type: ignore[no-untyped-def]
    tmp_path: Path, serve_dir, write_crawl, monkeypatch
) -> None:
    from tests.servers.openai_server import REJECT_MARKER, start_openai_server

    root = tmp_path / "site"
    make_site(root)
    page = root / "caves.html"
    page.write_text(page.read_text().replace("In part 1, sentence 2 about caves", f"{REJECT_MARKER} caves"))
    server = serve_dir(root)
    with start_openai_server(api_key="sk-test") as oai:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        crawl = write_crawl(
            server.url,
            name="poison",
            source={"sitemaps": []},
            embedder={"kind": "openai", "base_url": oai.base_url},
        )
        first = ingest(crawl)
        assert first["status"] == "degraded" and "quarantined" in first["message"]
        assert first["chunks_quarantined"] == 1 and first["vectors_written"] == first["chunks"] - 1
        cfg = load_crawl(crawl)
        db = StateDB(cfg.state_url())
        [bad] = db.quarantined("poison")
        assert bad["url"].endswith("/caves.html") and "400" in bad["reason"]
        assert make_store(cfg.store, cfg.name).count() == first["vectors_written"]
        again = ingest(crawl)  # the page is unchanged: nothing is retried, nothing fails
        assert again["status"] == "ok" and again["texts_embedded"] == 0
        assert len(db.quarantined("poison")) == 1


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited; it only waits to be reaped


def test_a_killed_run_takes_its_spider_with_it_and_is_recorded_crashed(  # type: ignore[no-untyped-def]
    tmp_path: Path, serve_dir, write_crawl
) -> None:
    root = tmp_path / "slow"
    make_site(root)
    server = serve_dir(root)
    # One request per 2 seconds: the crawl takes long enough to be killed in the middle.
    crawl = write_crawl(
        server.url, name="slow", source={"sitemaps": [], "download_delay": 2, "concurrency": 1}
    )
    env = {**os.environ, "PREFECT_API_URL": ""}
    cli = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", str(crawl)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    spiders: list[int] = []
    while time.monotonic() < deadline and not spiders:
        spiders = _children(cli.pid)
        time.sleep(0.2)
    assert spiders, "the run started no spider"
    time.sleep(1)
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in spiders):
        time.sleep(0.2)
    assert not any(_alive(p) for p in spiders), "the spider outlived the run"

    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    killed = db.last_runs("slow")[0]
    assert killed["status"] == "running"  # nobody could record its end
    fast = crawl.parent / "fast.yaml"
    fast.write_text(crawl.read_text().replace("download_delay: 2", "download_delay: 0"))
    summary = ingest(fast)
    assert summary["status"] == "ok" and any(killed["run_id"] in w for w in summary["warnings"])
    statuses = {r["run_id"]: r["status"] for r in db.last_runs("slow")}
    assert statuses[killed["run_id"]] == "crashed"


def test_a_refused_lock_leaves_no_run_recorded_running(tiny) -> None:  # type: ignore[no-untyped-def]
    from flows.reembed import reembed

    _root, _server, crawl = tiny
    ingest(crawl)
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    holder = db.start_run("tiny", "ingest")
    db.acquire_lock("tiny", holder)  # this (live) process holds it
    with pytest.raises(RunFailed, match="in progress"):
        reembed(str(crawl))
    with pytest.raises(RunFailed, match="in progress"):
        ingest(crawl)
    runs = [r for r in db.last_runs("tiny", 10) if r["run_id"] != holder]
    assert [r["status"] for r in runs[:2]] == ["failed", "failed"]
    assert {r["kind"] for r in runs[:2]} == {"reembed", "ingest"}
