"""The ingest flow end to end: real spider subprocess, trafilatura, the local model, embedded Chroma,
under a Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.ingest import RunFailed, ingest_flow
from ingest.config import load_crawl
from ingest.env import live_version_number
from ingest.query import search
from ingest.state import StateDB
from ingest.stores import make_store
from tests.conftest import SAMPLE_SITE

pytestmark = pytest.mark.server
QUESTIONS = json.loads((SAMPLE_SITE.parent / "site_questions.json").read_text())


@pytest.mark.model
def test_ingest_sample_site_then_query_then_unchanged_rerun(prefect_api, site, write_crawl) -> None:  # type: ignore[no-untyped-def]
    crawl = write_crawl(site.url)
    summary = ingest_flow(str(crawl))
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    store = make_store(cfg.store, cfg.name, live_version_number(cfg, db))

    assert summary["status"] == "ok", summary["message"]
    assert summary["pages_fetched"] >= 20 and summary["pages_new"] >= 20
    assert summary["pages_skipped"] >= 1  # the text file / the /private/ page / the page without main text
    assert summary["chunks"] > summary["pages_new"]
    assert summary["texts_embedded"] + summary["cache_hits"] <= summary["chunks"]
    assert summary["vectors_written"] == store.count() == len(db.all_chunks(cfg.name))
    assert set(summary["stage_seconds"]) >= {"crawl", "extract", "chunk", "embed", "write", "commit"}
    ledger_ids = {c["chunk_id"] for c in db.all_chunks(cfg.name)}
    assert set(store.list_ids()) == ledger_ids
    # robots.txt kept /private/ out of the index.
    assert not [c for c in db.all_chunks(cfg.name) if "INTERNAL-ONLY-7731" in c["text"]]
    assert not [p for p in db.all_pages(cfg.name) if "/private/" in p["url"]]

    # The local model ranks the right page first for plain questions.
    right = 0
    for q in QUESTIONS:
        hits = search(cfg, q["question"], k=3)
        right += hits[0]["url"].endswith(q["expected_path"])
    assert right >= len(QUESTIONS) - 2, f"{right}/{len(QUESTIONS)} questions answered by the expected page"

    # The summary is published as a Prefect markdown artifact.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["webvec-ingest-sample"]))
        )
    assert artifacts and artifacts[0].type == "markdown"
    assert f"| vectors written / deleted | {summary['vectors_written']} / 0 |" in str(artifacts[0].data)

    # Nothing changed on the site: nothing embedded, nothing written, nothing deleted.
    again = ingest_flow(str(crawl))
    assert again["status"] == "ok"
    assert again["texts_embedded"] == 0 and again["vectors_written"] == 0 and again["vectors_deleted"] == 0
    assert again["pages_new"] == 0 and again["pages_changed"] == 0
    assert again["pages_unchanged"] == summary["pages_new"] + summary["pages_duplicate"]  # aliases: 304 too
    assert store.count() == summary["vectors_written"]


@pytest.mark.model
def test_unreachable_start_url_fails_cleanly(prefect_api, write_crawl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.servers.chroma_server import free_port

    crawl = write_crawl(f"http://127.0.0.1:{free_port()}/", name="nowhere")
    with pytest.raises(RunFailed) as info:
        ingest_flow(str(crawl))
    summary = info.value.summary
    assert summary.status == "failed" and "no pages fetched" in summary.message
    cfg = load_crawl(crawl)
    assert make_store(cfg.store, cfg.name).count() == 0  # no collection, nothing half-written
    assert StateDB(cfg.state_url()).last_runs("nowhere")[0]["status"] == "failed"


def test_ingest_with_openai_and_pinecone(prefect_api, site, write_crawl, monkeypatch, webvec_home) -> None:  # type: ignore[no-untyped-def]
    from tests.servers.openai_server import start_openai_server
    from tests.servers.pinecone_server import start_pinecone_server

    oai_key, pc_key = "sk-test-SECRET-0001", "pc-test-SECRET-0002"
    monkeypatch.setenv("OPENAI_API_KEY", oai_key)
    monkeypatch.setenv("PINECONE_API_KEY", pc_key)
    pinecone = start_pinecone_server(api_key=pc_key)
    try:
        with start_openai_server(api_key=oai_key) as oai:
            crawl = write_crawl(
                site.url,
                name="cloudy",
                embedder={"kind": "openai", "base_url": oai.base_url, "max_concurrency": 2},
                store={"kind": "pinecone", "host": pinecone.url, "index": "cloudy", "namespace": "prod"},
            )
            summary = ingest_flow(str(crawl))
            cfg = load_crawl(crawl)
            db = StateDB(cfg.state_url())
            store = make_store(cfg.store, cfg.name)
            assert summary["status"] == "ok", summary["message"]
            assert summary["vectors_written"] == store.count() == len(db.all_chunks("cloudy")) > 0
            assert summary["target"] == store.target and "/cloudy/prod" in store.target
            assert oai.ok_requests >= 1 and summary["tokens_embedded"] > 0
            # The tokens the summary reports (and prices) are those the server billed: chunks in their
            # context (title, headings), not the bare chunks.
            assert summary["tokens_embedded"] == oai.tokens
            assert summary["estimated_cost_usd"] == pytest.approx(summary["tokens_embedded"] * 0.02 / 1e6)
            assert pinecone.upserts() and max(r.vectors for r in pinecone.upserts()) <= 1000
            right = sum(
                search(cfg, q["question"], k=3)[0]["url"].endswith(q["expected_path"]) for q in QUESTIONS
            )
            assert right >= len(QUESTIONS) // 2  # the test server's vectors are bags of words, not a model
            again = ingest_flow(str(crawl))
            assert again["texts_embedded"] == 0 and again["vectors_written"] == 0
            # Keys come from the environment and appear in no summary, log or ledger row.
            for key in (oai_key, pc_key):
                assert key not in json.dumps(summary) and key not in json.dumps(again)
                for path in webvec_home.rglob("*"):
                    if path.is_file() and path.suffix in (".log", ".json", ".db"):
                        assert key.encode() not in path.read_bytes(), path
    finally:
        pinecone.stop()
