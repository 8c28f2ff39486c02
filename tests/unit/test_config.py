"""Crawl definitions: defaults, and one clear line for every kind of bad input."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.config import ChromaStoreConfig, LocalEmbedderConfig, load_crawl, parse_crawl
from ingest.errors import ConfigError

MINIMAL = {"name": "docs", "source": {"start_urls": ["https://example.org/docs/"]}}


def test_defaults_match_the_documented_yaml() -> None:
    cfg = parse_crawl(MINIMAL)
    assert cfg.source.max_depth == 3 and cfg.source.max_pages == 1000
    assert cfg.source.obey_robots and not cfg.source.allow_private_networks
    assert cfg.source.concurrency == 2 and cfg.source.domains == ["example.org"]
    assert cfg.chunk.max_tokens == 256 and cfg.chunk.overlap_tokens == 32
    assert isinstance(cfg.embedder, LocalEmbedderConfig) and cfg.embedder.model == "all-MiniLM-L6-v2"
    assert isinstance(cfg.store, ChromaStoreConfig) and cfg.store.path is None
    assert cfg.sync.delete_after == timedelta(days=7) and cfg.sync.min_coverage == 0.5


def test_durations_and_kinds() -> None:
    cfg = parse_crawl(
        {
            **MINIMAL,
            "sync": {"delete_after": "36h"},
            "embedder": {"kind": "openai", "model": "text-embedding-3-large", "dimensions": 256},
            "store": {"kind": "pinecone", "index": "docs-index", "namespace": "prod"},
        }
    )
    assert cfg.sync.delete_after == timedelta(hours=36)
    assert cfg.embedder.kind == "openai" and cfg.embedder.dimensions == 256
    assert cfg.store.kind == "pinecone" and cfg.store.namespace == "prod"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({**MINIMAL, "sourec": {}}, "sourec: unknown key"),
        (
            {"name": "docs", "source": {"start_urls": ["https://x.org/"], "max_dept": 2}},
            "source.max_dept: unknown key",
        ),
        (
            {"name": "docs", "source": {"start_urls": ["ftp://x.org/"]}},
            "source.start_urls.0: not an http(s) URL",
        ),
        (
            {"name": "docs", "source": {"start_urls": ["https://x.org/"], "include": ["(a"]}},
            "source.include.0: invalid regex",
        ),
        ({"name": "docs", "source": {"start_urls": []}}, "source.start_urls:"),
        ({"name": "d", "source": {"start_urls": ["https://x.org/"]}}, "name: invalid name 'd'"),
        ({"name": "docs"}, "source: required key is missing"),
        (
            {**MINIMAL, "chunk": {"max_tokens": 100, "overlap_tokens": 60}},
            "overlap_tokens must be less than half",
        ),
        ({**MINIMAL, "embedder": {"kind": "magic"}}, "embedder"),
        ({**MINIMAL, "store": {"kind": "chroma", "collection": "a"}}, "invalid Chroma collection name"),
        ({**MINIMAL, "schedule": "every day"}, "schedule: cron expression needs 5 fields"),
        ({**MINIMAL, "state": {"url": "postgresql://u:secret@h/db"}}, "state.url: has a password"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_crawl(data, "crawls/x.yaml")
    message = str(info.value)
    assert message.startswith("crawls/x.yaml: ")
    assert expected in message
    assert "\n" not in message
    assert "secret" not in message


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: docs\nsource:\n  start_urls: [http://x.org/\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ column \d+: invalid YAML") as info:
        load_crawl(path)
    assert "\n" not in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_crawl(path)


def test_load_by_name_from_crawls_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site.yaml").write_text("name: site\nsource:\n  start_urls: [https://example.org/]\n")
    monkeypatch.setenv("WEBVEC_CRAWLS_DIR", str(tmp_path))
    assert load_crawl("site").name == "site"
    with pytest.raises(ConfigError, match="no crawl definition of that name"):
        load_crawl("nothere")


def test_repo_crawl_definitions_are_valid() -> None:
    files = sorted((Path(__file__).resolve().parents[2] / "crawls").glob("*.yaml"))
    assert files, "crawls/ ships at least one definition"
    for path in files:
        assert load_crawl(path).name
