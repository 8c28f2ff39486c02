"""Operator commands: plan (dry run), verify [--repair], status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.config import load_crawl
from ingest.ops import status_crawl, verify_crawl
from ingest.run import run_ingest
from ingest.state import StateDB
from ingest.stores import VectorRecord, make_store
from spiders.process import SpiderCrawler
from tests.integration.conftest import ingest
from tests.integration.sites import make_site

pytestmark = [pytest.mark.server, pytest.mark.model]


@pytest.fixture
def ingested(tmp_path: Path, serve_dir, write_crawl):  # type: ignore[no-untyped-def]
    root = tmp_path / "ops"
    make_site(root)
    server = serve_dir(root)
    crawl = write_crawl(server.url, name="ops", source={"sitemaps": []})
    first = ingest(crawl)
    return root, crawl, first


def _snapshot(crawl: Path) -> tuple[int, int, int, int]:
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    with db.engine.connect() as conn:
        cache = conn.exec_driver_sql("select count(*) from embeddings").scalar_one()
        fetched = conn.exec_driver_sql("select count(*) from fetched").scalar_one()
    return make_store(cfg.store, cfg.name).count(), len(db.all_chunks("ops")), cache, fetched


def _plan(crawl: Path) -> dict[str, object]:
    return run_ingest(crawl, SpiderCrawler(), dry_run=True).to_dict()


def test_plan_is_a_dry_run(ingested) -> None:  # type: ignore[no-untyped-def]
    root, crawl, first = ingested
    before = _snapshot(crawl)
    plan = _plan(crawl)
    assert plan["pages_unchanged"] == first["pages_new"] + first["pages_duplicate"]  # aliases answer 304 too
    assert plan["pages_new"] == plan["pages_changed"] == 0
    assert plan["texts_embedded"] == plan["vectors_written"] == plan["vectors_deleted"] == 0
    page = root / "glaciers.html"
    page.write_text(
        page.read_text().replace("In part 2, sentence 1 about glaciers", "In part 2, a new claim about ice")
    )
    plan = _plan(crawl)
    assert plan["pages_changed"] == 1 and plan["texts_embedded"] == 1 and plan["vectors_written"] == 1
    assert plan["vectors_deleted"] == 1 and plan["tokens_embedded"] > 0 and plan["estimated_cost_usd"] == 0.0
    assert _snapshot(crawl) == before  # nothing embedded, written, cached or left in the page store
    run = ingest(crawl)  # the run does what the plan said
    counted = ("pages_", "texts_", "tokens", "vectors_", "chunks")
    counts = [k for k in plan if k.startswith(counted)]
    assert {k: run[k] for k in counts} == {k: plan[k] for k in counts}


def test_verify_finds_and_repairs_drift(ingested) -> None:  # type: ignore[no-untyped-def]
    _root, crawl, first = ingested
    cfg = load_crawl(crawl)
    assert verify_crawl(cfg)["ok"]
    store = make_store(cfg.store, cfg.name)
    ids = sorted(store.list_ids())
    store.delete(ids[:3])  # vectors lost behind the ledger's back
    store.upsert(
        [
            VectorRecord(
                "ffffffffffffffff#" + "0" * 16, np.ones(384, dtype=np.float32) / 384**0.5, {"text": "x"}
            )
        ]
    )
    report = verify_crawl(cfg)
    assert not report["ok"] and report["missing"] == 3 and report["orphans"] == 1
    assert set(report["examples"]["missing"]) == set(ids[:3])
    repaired = verify_crawl(cfg, repair=True)
    assert repaired["repaired"]
    assert verify_crawl(cfg)["ok"] and sorted(store.list_ids()) == ids
    assert store.count() == first["vectors_written"]


def test_status_and_cli_exit_codes(ingested) -> None:  # type: ignore[no-untyped-def]
    _root, crawl, first = ingested
    cfg = load_crawl(crawl)
    status = status_crawl(cfg)
    live = status["live_version"]
    assert live["version"] == 1 and live["vectors"] == first["vectors_written"]
    assert status["pages"]["live"] >= 8 and status["last_runs"][0]["status"] == "ok"
    assert status["running"] is None
    exe = str(Path(sys.executable).with_name("webvec"))
    result = subprocess.run(
        [exe, "status", str(crawl), "--json"], capture_output=True, text=True, env=os.environ
    )
    assert result.returncode == 0 and json.loads(result.stdout)["live_version"]["target"].endswith("/ops")
    make_store(cfg.store, cfg.name).delete(sorted(make_store(cfg.store, cfg.name).list_ids())[:1])
    result = subprocess.run(
        [exe, "verify", str(crawl), "--json"], capture_output=True, text=True, env=os.environ
    )
    assert result.returncode == 1 and json.loads(result.stdout)["missing"] == 1
    result = subprocess.run(
        [exe, "verify", str(crawl), "--repair"], capture_output=True, text=True, env=os.environ
    )
    assert result.returncode == 0
    result = subprocess.run([exe, "rollback", str(crawl)], capture_output=True, text=True, env=os.environ)
    assert result.returncode == 2 and "no previous version" in result.stderr
