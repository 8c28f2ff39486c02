"""Crawl definitions (``crawls/<name>.yaml``): pydantic models that reject unknown keys at load time.

``load_crawl`` is the one entry point; every problem becomes a one-line :class:`ConfigError` that
names the field, e.g. ``crawls/docs.yaml: source.include.0: invalid regex 'a(': missing ), ...``.
Secrets never live here: configs name the environment variable that holds a key.

Every number has a minimum and a maximum (the reason is beside each bound) and must be finite: a
setting that would make a run hang (``download_delay: .inf``), never fetch, or overflow a date is
refused at load time. Checks that need the network or the environment (private start URLs, locations
outside ``$WEBVEC_HOME``) live in :mod:`ingest.preflight`; everything here is pure.

The package, one module per part of a definition; import from ``ingest.config`` itself:

- :mod:`~ingest.config._base`: the strict base model, ``$WEBVEC_HOME`` and ``crawls/``, durations, and
  the validators of URLs, regexes, domains and environment variable names;
- :mod:`~ingest.config.source`: ``source:``, what to crawl and how politely;
- :mod:`~ingest.config.embedder` and :mod:`~ingest.config.store`: ``embedder:`` and ``store:``;
- :mod:`~ingest.config.crawl`: :class:`CrawlConfig` and its smaller sections (extract, chunk, state,
  sync, dedup, reembed, search);
- :mod:`~ingest.config.load`: reading a definition, one-line errors, the JSON Schema, ``webvec init``.
"""

from __future__ import annotations

from ingest.config._base import (
    DEFAULT_HOME,
    Domain,
    Duration,
    PageUrl,
    UrlRegex,
    crawls_dir,
    is_public_suffix,
    under_home,
    webvec_home,
)
from ingest.config.crawl import (
    ChunkConfig,
    CrawlConfig,
    DedupConfig,
    ExtractConfig,
    ReembedConfig,
    ScaleConfig,
    SearchConfig,
    StateConfig,
    SyncConfig,
    sqlite_file,
)
from ingest.config.embedder import (
    EmbedderConfig,
    FakeEmbedderConfig,
    LocalEmbedderConfig,
    OpenAIEmbedderConfig,
    ReduceConfig,
    StaticEmbedderConfig,
)
from ingest.config.load import (
    SCHEMA_FILE,
    crawl_json_schema,
    list_crawls,
    load_crawl,
    parse_crawl,
    resolve_crawl_path,
    starter_crawl,
)
from ingest.config.source import ApifyDatasetSourceConfig, SourceConfig
from ingest.config.store import (
    ChromaStoreConfig,
    MemoryStoreConfig,
    MilvusStoreConfig,
    PgvectorStoreConfig,
    PineconeStoreConfig,
    QdrantStoreConfig,
    StoreConfig,
)

__all__ = [
    "DEFAULT_HOME",
    "SCHEMA_FILE",
    "ApifyDatasetSourceConfig",
    "ChromaStoreConfig",
    "ChunkConfig",
    "CrawlConfig",
    "DedupConfig",
    "Domain",
    "Duration",
    "EmbedderConfig",
    "ExtractConfig",
    "FakeEmbedderConfig",
    "LocalEmbedderConfig",
    "MemoryStoreConfig",
    "MilvusStoreConfig",
    "OpenAIEmbedderConfig",
    "PageUrl",
    "PgvectorStoreConfig",
    "PineconeStoreConfig",
    "QdrantStoreConfig",
    "ReduceConfig",
    "ReembedConfig",
    "ScaleConfig",
    "SearchConfig",
    "SourceConfig",
    "StateConfig",
    "StaticEmbedderConfig",
    "StoreConfig",
    "SyncConfig",
    "UrlRegex",
    "crawl_json_schema",
    "crawls_dir",
    "is_public_suffix",
    "list_crawls",
    "load_crawl",
    "parse_crawl",
    "resolve_crawl_path",
    "sqlite_file",
    "starter_crawl",
    "under_home",
    "webvec_home",
]
