"""Crawl definitions (``crawls/<name>.yaml``): pydantic models that reject unknown keys at load time.

``load_crawl`` is the one entry point; every problem becomes a one-line :class:`ConfigError` that
names the field, e.g. ``crawls/docs.yaml: source.include.0: invalid regex 'a(': missing ), ...``.
Secrets never live here: configs name the environment variable that holds a key.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingest.errors import ConfigError

DEFAULT_HOME = ".webvec"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
# Chroma: 3-512 chars of [a-zA-Z0-9._-], starting and ending with a letter or digit, no "..".
_CHROMA_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def webvec_home() -> Path:
    """Where all local state lives: ``$WEBVEC_HOME`` or ``./.webvec``."""
    return Path(os.environ.get("WEBVEC_HOME", DEFAULT_HOME)).expanduser().resolve()


def crawls_dir() -> Path:
    """Folder of crawl definitions: ``$WEBVEC_CRAWLS_DIR`` or ``./crawls``."""
    return Path(os.environ.get("WEBVEC_CRAWLS_DIR", "crawls")).expanduser().resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_duration(value: Any) -> Any:
    """Accept '7d', '12h', '30m', '45s', '2w' besides what pydantic accepts for timedelta."""
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return timedelta(**{_DURATION_UNITS[m.group(2)]: float(m.group(1))})
    return value


def _check_cron(value: str | None) -> str | None:
    if value is None:
        return None
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"cron expression needs 5 fields (minute hour day month weekday), got {value!r}")
    try:  # cronsim ships with Prefect; without it the field count above is the check.
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, datetime(2026, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
    except ImportError:
        pass
    return value


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    return url


class SourceConfig(_Strict):
    """What to crawl and how politely."""

    start_urls: list[str] = Field(min_length=1)
    sitemaps: list[str] = Field(default_factory=list)
    allowed_domains: list[str] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    max_depth: int = Field(3, ge=0, le=100)
    max_pages: int = Field(1000, ge=1, le=10_000_000)
    obey_robots: bool = True
    concurrency: int = Field(8, ge=1, le=64)
    allow_private_networks: bool = False
    max_page_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    download_delay: float = Field(0.0, ge=0)
    download_timeout: float = Field(30.0, gt=0)
    user_agent: str = "webvec/0.1 (+https://pypi.org/project/webvec/)"

    @field_validator("start_urls", "sitemaps")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        return [_check_http_url(u) for u in urls]

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid regex {p!r}: {exc}") from None
        return patterns

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        for d in domains:
            if "/" in d or not d.strip():
                raise ValueError(f"a domain name is expected, not {d!r}")
        return [d.strip().lower() for d in domains]

    @property
    def domains(self) -> list[str]:
        """allowed_domains, defaulting to the hosts of start_urls."""
        if self.allowed_domains:
            return list(self.allowed_domains)
        hosts = [urlsplit(u).hostname or "" for u in self.start_urls]
        return sorted({h.lower() for h in hosts if h})


class ChunkConfig(_Strict):
    """Token-aware chunking; ``max_tokens`` is further capped by the embedder's own limit."""

    max_tokens: int = Field(256, ge=16, le=8191)
    overlap_tokens: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> ChunkConfig:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be less than half of max_tokens")
        return self


class LocalEmbedderConfig(_Strict):
    """sentence-transformers on this machine; the packaged all-MiniLM-L6-v2 by default."""

    kind: Literal["local"] = "local"
    model: str = "all-MiniLM-L6-v2"
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None = CUDA when available
    batch_size: int = Field(32, ge=1, le=4096)
    normalize: bool = True
    max_input_tokens: int | None = Field(None, ge=8)


class OpenAIEmbedderConfig(_Strict):
    """OpenAI, or any server speaking its /v1/embeddings API when ``base_url`` is set."""

    kind: Literal["openai"]
    model: str = "text-embedding-3-small"
    dimensions: int | None = Field(None, ge=1)  # sent as `dimensions` (text-embedding-3-* only)
    output_dimension: int | None = Field(None, ge=1)  # vector size of a model OpenAI does not list
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_input_tokens: int | None = Field(None, ge=8)  # default 8191 for OpenAI's models
    tokenizer: str = "cl100k_base"
    max_batch_inputs: int = Field(2048, ge=1, le=2048)  # OpenAI: 2048 inputs per request
    max_request_tokens: int = Field(300_000, ge=1, le=300_000)  # OpenAI: 300k tokens per request
    requests_per_minute: int | None = Field(3000, ge=1)
    tokens_per_minute: int | None = Field(1_000_000, ge=1)
    max_concurrency: int = Field(4, ge=1, le=64)
    timeout_s: float = Field(60.0, gt=0)
    retry_budget_s: float = Field(300.0, gt=0)  # one budget for all retries of a run's request

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        return None if url is None else _check_http_url(url)


class FakeEmbedderConfig(_Strict):
    """Deterministic hashed bag-of-words vectors, no model: for tests and dry runs (not for search)."""

    kind: Literal["fake"]
    dimension: int = Field(1024, ge=2, le=20_000)  # 20,000: Pinecone's largest dense vector
    max_input_tokens: int = Field(256, ge=8)
    batch_size: int = Field(32, ge=1, le=4096)


EmbedderConfig = Annotated[
    LocalEmbedderConfig | OpenAIEmbedderConfig | FakeEmbedderConfig, Field(discriminator="kind")
]


class ChromaStoreConfig(_Strict):
    """Chroma: embedded persistent client by default, HTTP client when ``host`` is set."""

    kind: Literal["chroma"] = "chroma"
    collection: str | None = None  # default: the crawl's name
    path: str | None = None  # default: $WEBVEC_HOME/chroma
    host: str | None = None
    port: int = Field(8000, ge=1, le=65535)
    ssl: bool = False

    @field_validator("collection")
    @classmethod
    def _collection(cls, name: str | None) -> str | None:
        if name is not None and (not _CHROMA_RE.match(name) or ".." in name):
            raise ValueError(
                f"invalid Chroma collection name {name!r}: 3-512 characters of letters, digits, '.', "
                "'_' or '-', starting and ending with a letter or digit"
            )
        return name


class PineconeStoreConfig(_Strict):
    """Pinecone serverless; ``host`` points the SDK at another server (e.g. Pinecone Local)."""

    kind: Literal["pinecone"]
    index: str | None = None  # default: the crawl's name
    namespace: str | None = None  # default: the crawl's name
    cloud: str = "aws"
    region: str = "us-east-1"
    metric: Literal["cosine", "dotproduct", "euclidean"] = "cosine"
    host: str | None = None
    api_key_env: str = "PINECONE_API_KEY"
    max_concurrency: int = Field(4, ge=1, le=64)

    @field_validator("index")
    @classmethod
    def _index(cls, name: str | None) -> str | None:
        if name is not None and not re.match(r"^[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?$", name):
            raise ValueError(f"invalid Pinecone index name {name!r}: lowercase letters, digits, '-', ≤45")
        return name

    @field_validator("host")
    @classmethod
    def _host(cls, url: str | None) -> str | None:
        return None if url is None else _check_http_url(url)


class MemoryStoreConfig(_Strict):
    """Vectors in this process's memory, gone when it exits: for tests (see ingest.stores.memory)."""

    kind: Literal["memory"]
    collection: str | None = None  # default: the crawl's name


StoreConfig = Annotated[
    ChromaStoreConfig | PineconeStoreConfig | MemoryStoreConfig, Field(discriminator="kind")
]


class StateConfig(_Strict):
    """The state DB (page store + ledger): SQLite under $WEBVEC_HOME unless a URL is named."""

    url: str | None = None  # SQLAlchemy URL without a password, e.g. postgresql+psycopg://host/db
    url_env: str | None = None  # name of an environment variable holding the URL (may hold a password)

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if url is not None and re.match(r"^[\w+.-]+://[^/@:]+:[^/@]+@", url):
            raise ValueError("has a password: put the URL in an environment variable named by state.url_env")
        return url


class SyncConfig(_Strict):
    """Stale-vector deletion rules."""

    delete_after: timedelta = timedelta(days=7)
    min_coverage: float = Field(0.5, ge=0, le=1)
    conditional_requests: bool = True

    _dur = field_validator("delete_after", mode="before")(_parse_duration)


class DedupConfig(_Strict):
    """Duplicate handling beyond the embedding cache."""

    drop_repeated_chunks: int | None = Field(None, ge=1)
    near_duplicates: bool = True


class ReembedConfig(_Strict):
    """Re-embedding of old vectors on their own schedule."""

    max_age: timedelta | None = None
    schedule: str | None = None

    _dur = field_validator("max_age", mode="before")(_parse_duration)
    _cron = field_validator("schedule")(_check_cron)


class CrawlConfig(_Strict):
    """One crawl definition: a site, how to chunk and embed it, and where the vectors go."""

    name: str
    description: str | None = None
    schedule: str | None = None  # cron for the scheduled Prefect deployment
    source: SourceConfig
    chunk: ChunkConfig = ChunkConfig()
    embedder: EmbedderConfig = LocalEmbedderConfig()
    store: StoreConfig = ChromaStoreConfig()
    state: StateConfig = StateConfig()
    sync: SyncConfig = SyncConfig()
    dedup: DedupConfig = DedupConfig()
    reembed: ReembedConfig = ReembedConfig()

    _cron = field_validator("schedule")(_check_cron)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME_RE.match(name):
            raise ValueError(
                f"invalid name {name!r}: 3-63 lowercase letters, digits, '-' or '_', "
                "starting and ending with a letter or digit"
            )
        return name

    def state_url(self) -> str:
        """SQLAlchemy URL of the state DB."""
        if self.state.url_env:
            url = os.environ.get(self.state.url_env)
            if not url:
                raise ConfigError(f"state.url_env: environment variable {self.state.url_env} is not set")
            return url
        if self.state.url:
            return self.state.url
        return f"sqlite:///{webvec_home() / 'state.db'}"


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        # Drop the discriminator tag pydantic inserts into union locations ("embedder.openai.model").
        loc = ".".join(str(p) for p in err["loc"] if p not in ("local", "openai", "chroma", "pinecone"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{loc or '(top level)'}: {msg}")
    return "; ".join(parts)


def parse_crawl(data: Any, source: str = "<crawl>") -> CrawlConfig:
    """Validate already-loaded YAML data; raises ConfigError naming ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a mapping of keys (name, source, ...) is expected at the top level")
    try:
        return CrawlConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_validation_error(exc)}") from None


def resolve_crawl_path(crawl: str | os.PathLike[str]) -> Path:
    """A path to a YAML file, or the name of one under crawls/."""
    path = Path(crawl)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{crawl}: no such crawl definition file")
        return path
    for suffix in (".yaml", ".yml"):
        candidate = crawls_dir() / f"{crawl}{suffix}"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{crawl}: no crawl definition of that name in {crawls_dir()} (and no such file)")


def load_crawl(crawl: str | os.PathLike[str]) -> CrawlConfig:
    """Load and validate a crawl definition by name or path; one-line ConfigError on any problem."""
    path = resolve_crawl_path(crawl)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_crawl(data, str(path))


def list_crawls() -> list[Path]:
    """Crawl definition files under crawls/."""
    folder = crawls_dir()
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
