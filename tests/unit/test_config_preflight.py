"""ingest.preflight: private start URLs without the flag are errors; outside-home locations and unset
environment variables are warnings (issue 7 item 5, issue 8 item 11)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.config import parse_crawl
from ingest.errors import ConfigError
from ingest.preflight import Problem, check, preflight
from ingest.urls import _resolve


@pytest.fixture(autouse=True)
def fresh_dns_cache() -> Iterator[None]:
    _resolve.cache_clear()  # names are resolved once per process
    yield
    _resolve.cache_clear()


def cfg(**sections: Any) -> Any:
    source = {"start_urls": ["http://93.184.216.34/"], **sections.pop("source", {})}
    return parse_crawl({"name": "docs", "source": source, **sections})


def test_loopback_start_url_and_sitemap_need_the_flag() -> None:
    problems = preflight(
        cfg(
            source={
                "start_urls": ["http://127.0.0.1:8765/"],
                "sitemaps": ["http://localhost:8765/robots.txt"],
            }
        )
    )
    assert [(p.level, p.field) for p in problems] == [
        ("error", "source.start_urls.0"),
        ("error", "source.sitemaps.0"),
    ]
    assert "127.0.0.1 is a private or loopback address" in problems[0].message
    assert "allow_private_networks: true" in problems[0].message
    with pytest.raises(ConfigError) as info:
        check(cfg(source={"start_urls": ["http://[::1]/", "http://10.1.2.3/"]}), "crawls/x.yaml")
    message = str(info.value)
    assert message.startswith("crawls/x.yaml: source.start_urls.0: ::1 is a private")
    assert "; source.start_urls.1: 10.1.2.3 is a private" in message and "\n" not in message


def test_names_that_resolve_to_private_addresses_count(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "intranet.example.org":  # the classic DNS-rebinding shape: a public name, a private IP
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.20", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    problems = preflight(cfg(source={"start_urls": ["https://intranet.example.org/wiki/"]}))
    assert [p.field for p in problems if p.level == "error"] == ["source.start_urls.0"]
    assert "intranet.example.org resolves to a private or loopback address" in problems[0].message


def test_the_flag_and_public_addresses_pass() -> None:
    assert (
        preflight(cfg(source={"start_urls": ["http://127.0.0.1:8765/"], "allow_private_networks": True}))
        == []
    )
    assert check(cfg(), "crawls/x.yaml") == []  # a literal public address: no DNS needed


def test_locations_outside_home_are_warnings(tmp_path: Path, webvec_home: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    problems = check(
        cfg(
            store={"kind": "chroma", "path": str(elsewhere)}, state={"url": f"sqlite:///{elsewhere}/state.db"}
        ),
        "crawls/x.yaml",
    )
    assert [(p.level, p.field) for p in problems] == [("warning", "store.path"), ("warning", "state.url")]
    assert problems[0].line("crawls/x.yaml") == (
        f"crawls/x.yaml: store.path: {elsewhere} is outside $WEBVEC_HOME ({webvec_home.resolve()}): fine if "
        "intended, but it is not moved, backed up or removed with the rest of webvec's state"
    )
    inside = cfg(store={"kind": "chroma", "path": "vectors"}, state={"url": "sqlite:///ledger.db"})
    assert preflight(inside) == []
    server = cfg(store={"kind": "chroma", "path": str(elsewhere), "host": "localhost"})
    assert preflight(server) == []  # a Chroma server does not use the path


def test_unset_environment_variables_are_warnings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "PINECONE_API_KEY", "WEBVEC_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    problems = preflight(
        cfg(embedder={"kind": "openai"}, store={"kind": "pinecone"}, state={"url_env": "WEBVEC_STATE_URL"})
    )
    assert {p.field: p.level for p in problems} == {
        "state.url_env": "warning",
        "embedder.api_key_env": "warning",
        "store.api_key_env": "warning",
    }
    assert all("is not set" in p.message for p in problems)
    # An OpenAI-compatible server needs no key; a set variable is fine; its SQLite file is checked too.
    monkeypatch.setenv("PINECONE_API_KEY", "pk-x")
    monkeypatch.setenv("WEBVEC_STATE_URL", f"sqlite:///{tmp_path}/other.db")
    problems = preflight(
        cfg(
            embedder={"kind": "openai", "base_url": "http://127.0.0.1:1/v1"},
            store={"kind": "pinecone"},
            state={"url_env": "WEBVEC_STATE_URL"},
        )
    )
    assert problems == [Problem("warning", "state.url_env", problems[0].message)]
    assert "other.db is outside $WEBVEC_HOME" in problems[0].message


def test_an_unset_pgvector_url_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBVEC_PGVECTOR_URL", raising=False)
    [problem] = preflight(cfg(store={"kind": "pgvector"}))
    assert problem.field == "store.url_env" and "WEBVEC_PGVECTOR_URL is not set" in problem.message
    monkeypatch.setenv("WEBVEC_PGVECTOR_URL", "postgresql://u:pw@db/vectors")
    assert preflight(cfg(store={"kind": "pgvector"})) == []
