"""``CrawlConfig``, one crawl definition, with its smaller sections: extract, chunk, state, sync, dedup,
reembed and search (``source``, ``embedder`` and ``store`` have modules of their own)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ingest.config._base import (
    Duration,
    _check_cron,
    _check_duration,
    _check_env_name,
    _check_name,
    _Strict,
    under_home,
    webvec_home,
)
from ingest.config.embedder import EmbedderConfig, LocalEmbedderConfig
from ingest.config.source import AnySource, ApifyDatasetSourceConfig, SourceConfig
from ingest.config.store import (
    ChromaStoreConfig,
    MemoryStoreConfig,
    MilvusStoreConfig,
    QdrantStoreConfig,
    StoreConfig,
)
from ingest.context import DEFAULT_TEMPLATE, check_template
from ingest.errors import ConfigError


class ExtractConfig(_Strict):
    """Text extraction: worker processes with a time and memory limit per page (ingest.extract_pool)."""

    # A 619 KB page of 30,000 inline spans takes minutes; the largest Python docs pages take ~3 s on a
    # 2-core machine. 30 s leaves room for slow machines and stops what would run for hours.
    timeout_s: float = Field(
        30.0, ge=1, le=3600, description="Seconds one page's extraction may take (1-3600); slower: skipped."
    )
    # lxml and trafilatura on a 10 MB page stay well under 1 GiB; more means a pathological page.
    memory_mb: int = Field(
        1024, ge=64, le=65_536, description="Memory one page's extraction may need, in MB (64-65536)."
    )
    workers: int | None = Field(
        None,
        ge=0,
        le=256,
        description="Extraction worker processes; default one per CPU and one more; "
        "0 = in the run's process, no limits.",
    )


class ChunkConfig(_Strict):
    """Token-aware chunking; ``max_tokens`` is further capped by the embedder's own limit."""

    # 16..8191: below 16 tokens a chunk is a fragment; 8191 is the largest input of OpenAI's models.
    max_tokens: int = Field(256, ge=16, le=8191, description="Tokens per chunk, at most (16-8191).")
    # Below half of max_tokens (checked below), so at most 4095.
    overlap_tokens: int = Field(
        32, ge=0, le=4095, description="Tokens repeated from the end of the previous chunk; < max_tokens / 2."
    )

    context_template: str | None = Field(
        DEFAULT_TEMPLATE,
        max_length=1000,
        description="What the embedder reads for a chunk: {title}, {heading} (path) and {text}; the "
        "stored text stays the chunk. null: the bare chunk. Changing it re-embeds into a new version.",
    )

    @field_validator("context_template")
    @classmethod
    def _template(cls, template: str | None) -> str | None:
        return check_template(template) if template else None

    @model_validator(mode="after")
    def _overlap(self) -> ChunkConfig:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be less than half of max_tokens")
        return self


class StateConfig(_Strict):
    """The state DB (page store + ledger): SQLite under $WEBVEC_HOME unless a URL is named."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the state DB without a password, e.g. postgresql+psycopg://host/db; "
        "a relative sqlite:/// path is taken from $WEBVEC_HOME. Default: $WEBVEC_HOME/state.db.",
    )
    url_env: str | None = Field(
        None, description="Name of an environment variable holding the URL (which may hold a password)."
    )

    _env = field_validator("url_env")(_check_env_name)

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if url is not None and re.match(r"^[\w+.-]+://[^/@:]+:[^/@]+@", url):
            raise ValueError("has a password: put the URL in an environment variable named by state.url_env")
        return url


class SyncConfig(_Strict):
    """Stale-vector deletion rules."""

    # 0 is allowed: "delete as soon as a complete crawl misses the page" (an exact mirror).
    delete_after: Duration = Field(
        timedelta(days=7),
        description="Delete pages a complete crawl has not reached for this long (0s-3650d).",
        json_schema_extra={"default": "7d"},
    )
    min_coverage: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Below this share of known pages reached, delete nothing and mark the run degraded.",
    )
    conditional_requests: bool = Field(
        True, description="Send If-None-Match / If-Modified-Since on re-crawls (304s cost nothing)."
    )

    _dur = field_validator("delete_after")(_check_duration)


class DedupConfig(_Strict):
    """Duplicate handling beyond the embedding cache."""

    # The same bound as source.max_pages: a chunk cannot be on more pages than a crawl stores.
    drop_repeated_chunks: int | None = Field(
        None, ge=1, le=10_000_000, description="Drop chunks whose text appears on more than this many pages."
    )
    near_duplicates: bool = Field(
        True, description="Store near-duplicate pages (SimHash) once; the others become aliases."
    )


class ReembedConfig(_Strict):
    """Re-embedding of old vectors on their own schedule."""

    # 0 is allowed: every re-embed run refreshes every vector.
    max_age: Duration | None = Field(
        None, description="Re-embed vectors older than this on the re-embed schedule, e.g. 90d (0s-3650d)."
    )
    schedule: str | None = Field(None, description="Cron (UTC) of the re-embed Prefect deployment.")

    _dur = field_validator("max_age")(_check_duration)
    _cron = field_validator("schedule")(_check_cron)


class SearchConfig(_Strict):
    """How ``webvec query``, ``webvec eval`` and ``search()`` rank passages."""

    mode: Literal["dense", "lexical", "hybrid"] = Field(
        "hybrid",
        description="dense: vectors; lexical: the ledger's full-text index (BM25); hybrid: both, fused "
        "by reciprocal rank.",
    )
    # 1000: the most results `webvec query -k` returns.
    max_per_page: int = Field(
        1, ge=1, le=1000, description="Results from one page in the top k, at most (distinct passages)."
    )
    # Above 0: Pinecone refuses a query whose dense part is all zeros.
    dense_weight: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Hybrid search in a store with sparse vectors (store.sparse): the dense part's weight, "
        "the sparse part's being 1 minus it (over 0, at most 1).",
    )


class ScaleConfig(_Strict):
    """Where a crawl's work runs: one process (threads, the default) or a Dask cluster through Prefect,
    with N spider processes sharing one Redis frontier, and the workers sharing the embedder's rate
    limits (on Redis, or split N ways: :mod:`ingest.vendor.limits`). The rest of the definition does
    not change."""

    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="threads: batches run in the flow's process; dask: as Prefect tasks on a Dask cluster "
        "(prefect-dask), which needs a shared state DB (state.url_env) and a shared store.",
    )
    dask_address_env: str | None = Field(
        None,
        description="Name of an environment variable holding a Dask scheduler address (tcp://host:8786); "
        "unset with task_runner dask: a local cluster of dask_workers processes.",
    )
    # 64: far more worker processes than one machine's local cluster should start; a real cluster is
    # started by its own tools and named by dask_address_env.
    dask_workers: int = Field(2, ge=1, le=64, description="Workers of a local Dask cluster (1-64).")
    # 64 spider processes already share one politeness budget per domain; more only queue.
    spiders: int = Field(
        1,
        ge=1,
        le=64,
        description="Spider processes for this crawl (1-64); more than 1 needs frontier_url_env.",
    )
    frontier_url_env: str | None = Field(
        None,
        description="Name of an environment variable holding a Redis URL (redis://host:6379/0): the crawl "
        "frontier (request queue and seen fingerprints) the spiders share; with task_runner dask and no "
        "limits_url_env, it also holds the crawl's shared rate-limit buckets.",
    )
    limits_url_env: str | None = Field(
        None,
        description="Name of an environment variable holding a Redis URL where the Dask workers share the "
        "embedder's requests/tokens-per-minute buckets (default: frontier_url_env's Redis; with neither, "
        "each worker keeps 1/N of the caps).",
    )

    _envs = field_validator("dask_address_env", "frontier_url_env", "limits_url_env")(_check_env_name)

    @model_validator(mode="after")
    def _frontier(self) -> ScaleConfig:
        if self.spiders > 1 and self.frontier_url_env is None:
            raise ValueError(
                f"spiders: {self.spiders} needs frontier_url_env (a Redis URL through which the spiders "
                "share their queue)"
            )
        if self.task_runner == "threads" and self.dask_address_env is not None:
            raise ValueError("dask_address_env is set but task_runner is threads: set task_runner: dask")
        if self.task_runner == "threads" and self.limits_url_env is not None:
            raise ValueError("limits_url_env is set but task_runner is threads: set task_runner: dask")
        return self

    @property
    def limits_redis_env(self) -> str | None:
        """The variable naming the Redis of the shared rate-limit buckets: ``limits_url_env``, else
        ``frontier_url_env``; None for threads (one process keeps its own limits, as always)."""
        if self.task_runner != "dask":
            return None
        return self.limits_url_env or self.frontier_url_env


class CrawlConfig(_Strict):
    """One crawl definition: a site, how to chunk and embed it, and where the vectors go."""

    name: str = Field(
        description="3-63 lowercase letters, digits, '-' or '_'; the default collection/namespace name."
    )
    description: str | None = Field(None, description="What this crawl is; shown in Prefect.")
    schedule: str | None = Field(None, description="Cron (UTC) of the scheduled Prefect ingest deployment.")
    source: AnySource = Field(
        description="The site (start URLs, limits, politeness, network safety), or kind: apify_dataset."
    )
    extract: ExtractConfig = Field(
        ExtractConfig(), description="How pages are read: worker processes, time and memory limits."
    )
    chunk: ChunkConfig = Field(ChunkConfig(), description="How pages are cut into chunks.")
    embedder: EmbedderConfig = LocalEmbedderConfig()
    store: StoreConfig = ChromaStoreConfig()
    state: StateConfig = Field(StateConfig(), description="Where the ledger and page store live.")
    sync: SyncConfig = Field(SyncConfig(), description="When vectors of vanished pages are deleted.")
    dedup: DedupConfig = Field(DedupConfig(), description="Duplicate text and near-duplicate pages.")
    reembed: ReembedConfig = Field(ReembedConfig(), description="Refreshing old vectors on a schedule.")
    search: SearchConfig = Field(SearchConfig(), description="How queries rank passages.")
    scale: ScaleConfig = Field(
        ScaleConfig(), description="Where the work runs: one process, or a Dask cluster and shared frontier."
    )

    _cron = field_validator("schedule")(_check_cron)
    _name = field_validator("name")(_check_name)

    @model_validator(mode="after")
    def _shared_for_dask(self) -> CrawlConfig:
        # Dask workers are other processes, possibly on other hosts: each opens the ledger and the store
        # itself, so both must be servers every worker reaches, not files of the flow's machine.
        if self.scale.task_runner != "dask":
            return self
        if self.state.url_env is None and (self.state.url is None or self.state.url.startswith("sqlite")):
            raise ValueError(
                "scale.task_runner dask needs a shared state DB: set state.url_env to a PostgreSQL URL's "
                "variable (SQLite is one machine's file)"
            )
        store = self.store
        local = (
            (isinstance(store, ChromaStoreConfig) and store.host is None)
            or (isinstance(store, QdrantStoreConfig) and store.url is None)
            or (
                isinstance(store, MilvusStoreConfig)
                and not (store.uri or "").startswith(("http://", "https://"))
            )
            or isinstance(store, MemoryStoreConfig)
        )
        if local:
            raise ValueError(
                f"scale.task_runner dask needs a shared store: store kind {store.kind} here is one process's "
                "files (set store.host / url / uri to a server, or use pinecone or pgvector)"
            )
        return self

    @property
    def web(self) -> SourceConfig:
        """The web source; ConfigError for a crawl of another kind (what needs a site cannot run)."""
        if isinstance(self.source, SourceConfig):
            return self.source
        raise ConfigError(f"{self.name}: source.kind is {self.source.kind}, not a web site")

    @property
    def dataset(self) -> ApifyDatasetSourceConfig | None:
        """The dataset source, when the crawl reads one."""
        return self.source if isinstance(self.source, ApifyDatasetSourceConfig) else None

    @property
    def origins(self) -> list[str]:
        """Where the pages come from, for listings: the start URLs, or the dataset's file or id."""
        if isinstance(self.source, SourceConfig):
            return list(self.source.start_urls)
        return [self.source.path or f"apify:{self.source.dataset_id}"]

    def describe_source(self) -> str:
        """``2 start URL(s)`` or ``Apify dataset FILE``: one phrase for command output."""
        if isinstance(self.source, SourceConfig):
            return f"{len(self.source.start_urls)} start URL(s)"
        return f"Apify dataset {self.origins[0]}"

    def state_url(self) -> str:
        """SQLAlchemy URL of the state DB; a relative SQLite path is taken from ``$WEBVEC_HOME``."""
        if self.state.url_env:
            url = os.environ.get(self.state.url_env)
            if not url:
                raise ConfigError(f"state.url_env: environment variable {self.state.url_env} is not set")
            return _sqlite_under_home(url)
        if self.state.url:
            return _sqlite_under_home(self.state.url)
        return f"sqlite:///{webvec_home() / 'state.db'}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite`` URL, made absolute with :func:`under_home`; else None."""
    from sqlalchemy.engine import make_url  # only here: config must load without SQLAlchemy's import cost
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # SQLite URI filenames are left as they are
        return None
    return under_home(database)


def _sqlite_under_home(url: str) -> str:
    path = sqlite_file(url)
    if path is None:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=str(path)).render_as_string(hide_password=False)
