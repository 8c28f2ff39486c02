"""Apify datasets as a crawl source (issue 13): JSON, JSONL and CSV exports, with the sync semantics of
a crawl: an unchanged page embeds nothing, a changed one is re-embedded, a missing one goes stale."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.config import load_crawl
from ingest.env import make_env
from ingest.errors import ConfigError
from ingest.run import CrawlMode, run_ingest
from ingest.sources.apify import ApifyDatasetSource, read_export
from ingest.state import StateDB
from spiders.process import SpiderCrawler, crawl_source_for

SITE = "https://docs.example.com/"


def _item(path: str, text: str, title: str | None = None, status: int = 200) -> dict[str, Any]:
    return {
        "url": SITE + path,
        "crawl": {
            "loadedUrl": SITE + path,
            "loadedTime": "2026-11-30T10:00:00.000Z",
            "httpStatusCode": status,
        },
        "metadata": {"title": title or path, "languageCode": "en"},
        "text": text,
        "markdown": f"# {title or path}\n\n{text}",
    }


def _prose(topic: str, salt: str = "") -> str:
    return " ".join(
        f"The {topic} section explains step {i} of the process in plain words{salt}." for i in range(12)
    )


FIRST = [
    _item("a", _prose("alpha"), "Alpha"),
    _item("b", _prose("beta"), "Beta"),
    _item("c", _prose("gamma"), "Gamma"),
]


def _write_export(path: Path, items: list[dict[str, Any]]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(items))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(i) + "\n" for i in items))
    else:  # the console's CSV: nested keys flattened with "/", and no markdown column
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(
                f, ["url", "crawl/loadedTime", "crawl/httpStatusCode", "metadata/title", "text"]
            )
            writer.writeheader()
            for i in items:
                writer.writerow(
                    {
                        "url": i["url"],
                        "crawl/loadedTime": i["crawl"]["loadedTime"],
                        "crawl/httpStatusCode": i["crawl"]["httpStatusCode"],
                        "metadata/title": i["metadata"]["title"],
                        "text": i["text"],
                    }
                )
    return path


def _crawl(tmp_path: Path, export: str) -> Path:
    data = {
        "name": "dataset",
        "source": {"kind": "apify_dataset", "path": export},
        "embedder": {"kind": "fake"},
        "store": {"kind": "memory"},
        "extract": {"workers": 0},
        "sync": {"delete_after": "0s", "min_coverage": 0.5},
    }
    path = tmp_path / "dataset.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_export_ingests_then_a_newer_export_embeds_only_the_change(tmp_path: Path, suffix: str) -> None:
    export = _write_export(tmp_path / f"export{suffix}", FIRST)
    crawl = _crawl(tmp_path, export.name)  # relative: taken from the crawl file's folder
    assert isinstance(crawl_source_for(crawl), ApifyDatasetSource)
    first = run_ingest(crawl, crawl_source_for(crawl)).to_dict()
    assert first["status"] == "ok" and first["pages_new"] == 3 and first["texts_embedded"] > 0
    cfg = load_crawl(crawl)
    db = StateDB(cfg.state_url())
    titles = {p["url"]: p["title"] for p in db.all_pages("dataset")}
    assert titles[SITE + "a"] == "Alpha"

    again = run_ingest(crawl, crawl_source_for(crawl)).to_dict()
    assert again["pages_unchanged"] == 3 and again["texts_embedded"] == 0

    # A newer export: b changed, c is gone, a as it was.
    _write_export(export, [FIRST[0], _item("b", _prose("beta", " again"), "Beta")])
    newer = run_ingest(crawl, crawl_source_for(crawl)).to_dict()
    assert (newer["pages_unchanged"], newer["pages_changed"], newer["pages_stale_deleted"]) == (1, 1, 1)
    changed_chunks = [c for c in db.all_chunks("dataset") if c["url"] == SITE + "b"]
    assert 0 < newer["texts_embedded"] <= len(changed_chunks)  # only b's new texts
    assert {p["url"]: p["status"] for p in db.all_pages("dataset")}[SITE + "c"] == "stale"
    store = make_env(cfg, db).store
    assert not [
        i
        for i in store.list_ids()
        if i.startswith(db.pages_by_url("dataset", [SITE + "c"])[SITE + "c"]["doc_id"])
    ]
    db.close()


def test_items_without_text_404s_and_duplicates(tmp_path: Path) -> None:
    items = [*FIRST, _item("gone", "", status=404), {"url": "not a url"}, FIRST[0], _item("empty", "")]
    items[-1]["markdown"] = items[-1]["text"] = ""
    export = _write_export(tmp_path / "export.json", items)
    summary = run_ingest(_crawl(tmp_path, str(export)), ApifyDatasetSource()).to_dict()
    assert summary["pages_new"] == 3 and summary["pages_gone"] == 1 and summary["pages_skipped"] == 1


def test_a_dataset_crawl_needs_its_file_and_allows_no_backfill(tmp_path: Path) -> None:
    crawl = _crawl(tmp_path, "missing.json")
    with pytest.raises(ConfigError, match="no such dataset export"):
        ApifyDatasetSource().start(crawl, "r1", page_store="sqlite://", mode=CrawlMode(), dry_run=True)
    _write_export(tmp_path / "missing.json", FIRST)
    with pytest.raises(ConfigError, match="read whole"):
        ApifyDatasetSource().start(
            crawl, "r1", page_store="sqlite://", mode=CrawlMode(urls=(SITE,)), dry_run=True
        )
    web = tmp_path / "web.yaml"
    web.write_text(yaml.safe_dump({"name": "webcrawl", "source": {"start_urls": [SITE]}}))
    assert isinstance(crawl_source_for(web), SpiderCrawler)


def test_read_export_sniffs_a_file_without_suffix(tmp_path: Path) -> None:
    path = tmp_path / "items"
    path.write_text("\n".join(json.dumps(i) for i in FIRST))
    assert [i["url"] for i in read_export(path)] == [SITE + "a", SITE + "b", SITE + "c"]


def test_dataset_id_reads_through_the_client_with_the_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline: a stand-in for apify_client with the calls webvec makes (the SDK's own API).
    import sys
    import types

    calls: list[tuple[str, str]] = []

    class FakeClient:
        def __init__(self, token: str) -> None:
            self.token = token

        def dataset(self, dataset_id: str) -> Any:
            calls.append((self.token, dataset_id))
            return types.SimpleNamespace(iterate_items=lambda: iter(FIRST))

    monkeypatch.setitem(sys.modules, "apify_client", types.SimpleNamespace(ApifyClient=FakeClient))
    crawl = tmp_path / "online.yaml"
    data = yaml.safe_load(_crawl(tmp_path, "unused.json").read_text())
    data["source"] = {"kind": "apify_dataset", "dataset_id": "abc123", "token_env": "MY_APIFY_TOKEN"}
    crawl.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="MY_APIFY_TOKEN is not set"):
        ApifyDatasetSource(environ={}).start(
            crawl, "r0", page_store="sqlite://", mode=CrawlMode(), dry_run=True
        )
    summary = run_ingest(crawl, ApifyDatasetSource(environ={"MY_APIFY_TOKEN": "t0ken"})).to_dict()
    assert summary["pages_new"] == 3 and calls == [("t0ken", "abc123")]
    assert "t0ken" not in json.dumps(summary)
