"""Issue 8 item 11, settings that hang or misbehave: every number bounded and finite, durations in range,
no credentials in URLs, no public suffix in allowed_domains, relative locations under $WEBVEC_HOME."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.config import ChromaStoreConfig, is_public_suffix, parse_crawl
from ingest.errors import ConfigError

URL = "https://example.org/docs/"


def crawl(**sections: dict[str, Any]) -> dict[str, Any]:
    """A minimal definition with ``sections`` merged in (``source`` merged into the minimal source)."""
    source = {"start_urls": [URL], **sections.pop("source", {})}
    return {"name": "docs", "source": source, **sections}


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_crawl(data, "crawls/x.yaml")
    message = str(info.value)
    assert message.startswith("crawls/x.yaml: ") and "\n" not in message
    return message.removeprefix("crawls/x.yaml: ")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # .inf / .nan never reach a float field: a delay of .inf is a run that never ends.
        (crawl(source={"download_delay": float("inf")}), "source.download_delay: Input should be a finite"),
        (crawl(source={"download_delay": float("nan")}), "source.download_delay: Input should be a finite"),
        (
            crawl(source={"download_timeout": float("inf")}),
            "source.download_timeout: Input should be a finite",
        ),
        (crawl(sync={"min_coverage": float("nan")}), "sync.min_coverage: Input should be a finite"),
        (
            crawl(embedder={"kind": "openai", "timeout_s": float("inf")}),
            "embedder.timeout_s: Input should be",
        ),
        (crawl(sync={"delete_after": float("inf")}), "sync.delete_after:"),
        # Upper bounds on numbers that had none.
        (
            crawl(source={"download_delay": 3600}),
            "source.download_delay: Input should be less than or equal to 60",
        ),
        (
            crawl(source={"download_timeout": 0.001}),
            "source.download_timeout: Input should be greater than or",
        ),
        (crawl(source={"download_timeout": 86400}), "source.download_timeout: Input should be less than or"),
        (
            crawl(source={"max_page_bytes": 10**13}),
            "source.max_page_bytes: Input should be less than or equal",
        ),
        (
            crawl(chunk={"max_tokens": 256, "overlap_tokens": 10**6}),
            "chunk.overlap_tokens: Input should be less",
        ),
        (
            crawl(embedder={"kind": "local", "max_input_tokens": 10**9}),
            "embedder.max_input_tokens: Input should",
        ),
        (
            crawl(embedder={"kind": "openai", "dimensions": 10**6}),
            "embedder.dimensions: Input should be less",
        ),
        (crawl(embedder={"kind": "openai", "requests_per_minute": 10**12}), "embedder.requests_per_minute:"),
        (crawl(embedder={"kind": "openai", "tokens_per_minute": 10**15}), "embedder.tokens_per_minute:"),
        (crawl(embedder={"kind": "openai", "timeout_s": 0}), "embedder.timeout_s: Input should be greater"),
        (
            crawl(embedder={"kind": "openai", "retry_budget_s": 10**7}),
            "embedder.retry_budget_s: Input should",
        ),
        (crawl(dedup={"drop_repeated_chunks": 10**12}), "dedup.drop_repeated_chunks: Input should be less"),
        # Durations: not negative, not absurd, and never a crash (OverflowError) instead of a message.
        (crawl(sync={"delete_after": "-7d"}), "sync.delete_after: must be between 0s and 3650d, not -7d"),
        (
            crawl(sync={"delete_after": "99999999999d"}),
            "sync.delete_after: duration '99999999999d' is too long",
        ),
        (crawl(sync={"delete_after": "5000d"}), "sync.delete_after: must be between 0s and 3650d, not 5000d"),
        (crawl(sync={"delete_after": -60}), "sync.delete_after: must be between 0s and 3650d, not -1m"),
        (crawl(reembed={"max_age": "-1.5s"}), "reembed.max_age: must be between 0s and 3650d, not -1.5s"),
        # Credentials in URLs, which would be logged and stored with every page.
        (
            crawl(source={"start_urls": ["https://user:hunter2@example.org/"]}),
            "source.start_urls.0: credentials",
        ),
        (
            crawl(source={"start_urls": [URL, "https://hunter2@example.org/"]}),
            "source.start_urls.1: credentials",
        ),
        (
            crawl(source={"sitemaps": ["https://u:hunter2@example.org/sitemap.xml"]}),
            "source.sitemaps.0: credentials",
        ),
        (
            crawl(embedder={"kind": "openai", "base_url": "http://localhost:99999/v1"}),
            "embedder.base_url: invalid port",
        ),
        (crawl(source={"start_urls": ["https://example.org:99999/"]}), "source.start_urls.0: invalid port"),
        # Public suffixes: allowing one lets the crawl wander over every site registered under it.
        (crawl(source={"allowed_domains": ["com"]}), "source.allowed_domains.0: 'com' is a public suffix"),
        (
            crawl(source={"allowed_domains": ["example.org", "co.uk"]}),
            "allowed_domains.1: 'co.uk' is a public",
        ),
        (crawl(source={"allowed_domains": ["github.io"]}), "'github.io' is a public suffix"),
        # A secret pasted where the NAME of its environment variable belongs.
        (
            crawl(embedder={"kind": "openai", "api_key_env": "sk-proj-0123456789"}),
            "embedder.api_key_env: must",
        ),
        (crawl(store={"kind": "pinecone", "api_key_env": "pcsk_1 2"}), "store.api_key_env: must be the NAME"),
        (crawl(state={"url_env": "postgresql://u:pw@h/db"}), "state.url_env: must be the NAME"),
        # A header value with a newline would inject a header.
        (crawl(source={"user_agent": "bot\r\nX-Injected: 1"}), "source.user_agent: must be one line"),
        (crawl(source={"user_agent": "x" * 600}), "source.user_agent: String should have at most 512"),
    ],
)
def test_settings_that_would_hang_or_misbehave_are_refused(data: dict[str, Any], expected: str) -> None:
    message = error_of(data)
    assert expected in message
    for secret in ("hunter2", "sk-proj", "pcsk_1", ":pw@"):
        assert secret not in message  # a credential is never repeated in the message


def test_boundary_values_are_accepted() -> None:
    cfg = parse_crawl(
        crawl(
            source={"download_delay": 60, "download_timeout": 1, "max_page_bytes": 1024**3},
            sync={"delete_after": "0s"},  # "delete as soon as a complete crawl misses the page"
            reembed={"max_age": "3650d"},
            embedder={"kind": "openai", "timeout_s": 0.1, "retry_budget_s": 3600, "api_key_env": "MY_KEY_2"},
        )
    )
    assert cfg.source.download_delay == 60 and cfg.sync.delete_after == timedelta(0)
    assert cfg.reembed.max_age == timedelta(days=3650)


@pytest.mark.parametrize(
    ("domain", "public"),
    [
        ("com", True),
        ("co.uk", True),
        (".co.uk", True),
        ("github.io", True),
        ("example.org", False),
        ("docs.example.co.uk", False),
        ("example.github.io", False),
        ("localhost", False),
        ("127.0.0.1", False),
    ],
)
def test_public_suffixes_come_from_the_bundled_list(domain: str, public: bool) -> None:
    assert is_public_suffix(domain) is public


def test_allowed_domains_are_normalised() -> None:
    cfg = parse_crawl(crawl(source={"allowed_domains": [" Docs.Example.ORG "]}))
    assert cfg.source.allowed_domains == ["docs.example.org"]


def test_relative_locations_are_under_webvec_home(webvec_home: Path) -> None:
    cfg = parse_crawl(
        crawl(store={"kind": "chroma", "path": "vectors/docs"}, state={"url": "sqlite:///ledgers/docs.db"})
    )
    assert isinstance(cfg.store, ChromaStoreConfig)
    assert cfg.store.path == str(webvec_home.resolve() / "vectors" / "docs")
    assert cfg.state_url() == f"sqlite:///{webvec_home.resolve() / 'ledgers' / 'docs.db'}"


def test_absolute_and_non_file_locations_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    cfg = parse_crawl(
        crawl(store={"kind": "chroma", "path": str(elsewhere)}, state={"url": f"sqlite:///{elsewhere}/s.db"})
    )
    assert isinstance(cfg.store, ChromaStoreConfig) and cfg.store.path == str(elsewhere)
    assert cfg.state_url() == f"sqlite:///{elsewhere}/s.db"
    assert parse_crawl(crawl(state={"url": "sqlite://"})).state_url() == "sqlite://"
    pg = "postgresql+psycopg://webvec@db:5432/webvec"
    assert parse_crawl(crawl(state={"url": pg})).state_url() == pg
    monkeypatch.setenv("WEBVEC_STATE_URL", "postgresql+psycopg://webvec:secret@db/webvec")
    assert "secret" in parse_crawl(crawl(state={"url_env": "WEBVEC_STATE_URL"})).state_url()
