"""Crawl definitions (``crawls/<name>.yaml``): pydantic models that reject unknown keys at load time.

``load_crawl`` is the one entry point; every problem becomes a one-line :class:`ConfigError` that
names the field, e.g. ``crawls/docs.yaml: source.include.0: invalid regex 'a(': missing ), ...``.
Secrets never live here: configs name the environment variable that holds a key.

Every number has a minimum and a maximum (the reason is beside each bound) and must be finite: a
setting that would make a run hang (``download_delay: .inf``), never fetch, or overflow a date is
refused at load time. Checks that need the network or the environment (private start URLs, locations
outside ``$WEBVEC_HOME``) live in :mod:`ingest.preflight`; everything here is pure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from datetime import timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ingest.errors import ConfigError
from ingest.redos import backtracking_problem
from ingest.urls import is_http_url

DEFAULT_HOME = ".webvec"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
# Chroma: 3-512 chars of [a-zA-Z0-9._-], starting and ending with a letter or digit, no "..".
_CHROMA_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]$")
# The sign is accepted here so that "-7d" gets the range message below, not a parse error.
_DURATION_RE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\.?$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# POSIX names of environment variables; anything else in an *_env key is most likely the secret itself.
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
# Ten years: "never" in practice, and far from timedelta's limit (now - delta must stay a valid date).
_LONGEST_DURATION = timedelta(days=3650)
SCHEMA_FILE = "webvec-crawl.schema.json"  # written next to crawl definitions by `webvec init`


def webvec_home() -> Path:
    """Where all local state lives: ``$WEBVEC_HOME`` or ``./.webvec``."""
    return Path(os.environ.get("WEBVEC_HOME", DEFAULT_HOME)).expanduser().resolve()


def crawls_dir() -> Path:
    """Folder of crawl definitions: ``$WEBVEC_CRAWLS_DIR`` or ``./crawls``."""
    return Path(os.environ.get("WEBVEC_CRAWLS_DIR", "crawls")).expanduser().resolve()


def under_home(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute: ``~`` expanded, a relative path taken from ``$WEBVEC_HOME``.

    Relative locations in a crawl definition (``store.path``, a ``sqlite:///`` state URL) mean "inside
    webvec's home", not "inside whatever directory the command happened to run in": a scheduled
    Prefect worker and a shell then find the same files.
    """
    expanded = Path(path).expanduser()
    return expanded if expanded.is_absolute() else webvec_home() / expanded


class _Strict(BaseModel):
    # allow_inf_nan=False: .inf / .nan in YAML are refused for every float (a delay of .inf never ends).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _parse_duration(value: Any) -> Any:
    """Accept '7d', '12h', '30m', '45s', '2w' besides what pydantic accepts for timedelta."""
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            try:
                return timedelta(**{_DURATION_UNITS[m.group(2)]: float(m.group(1))})
            except OverflowError:
                raise ValueError(f"duration {value.strip()!r} is too long") from None
    return value


# A duration in YAML: "7d", "12h", "30m", "45s", "2w", a number of seconds, or ISO 8601 ("P7D").
Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]\s*$"},
                {"type": "string", "format": "duration"},
                {"type": "number", "minimum": 0},
            ],
            "examples": ["7d", "12h", "30m", "45s", "2w"],
        }
    ),
]


def _check_duration(value: timedelta | None, *, least: timedelta = timedelta(0)) -> timedelta | None:
    if value is not None and not least <= value <= _LONGEST_DURATION:
        raise ValueError(f"must be between {_show(least)} and {_show(_LONGEST_DURATION)}, not {_show(value)}")
    return value


def _show(delta: timedelta) -> str:
    """A duration the way YAML spells it: 7d, 36h, -30m, 1.5s."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


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
    if not is_http_url(url):
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    try:
        urlsplit(url).port  # noqa: B018 - raises on a port outside 0-65535 or not a number
    except ValueError:
        raise ValueError(f"invalid port in {url!r}") from None
    return url


def _check_page_url(url: str) -> str:
    """A start URL or sitemap: http(s), and no credentials in it."""
    _check_http_url(url)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # The URL is not repeated: it holds the secret. A start URL is stored as the page's URL in the
        # ledger and in every vector's metadata, and logged.
        raise ValueError(
            "credentials (user:password@) are not allowed in a start URL or sitemap: remove them and "
            "crawl without; secrets never go in a crawl definition (they would be stored with the page)"
        )
    return url


def _check_env_name(name: str | None) -> str | None:
    if name is not None and not _ENV_NAME_RE.match(name):
        # Not echoed: a value that is not a variable name may well be the key itself.
        raise ValueError(
            "must be the NAME of an environment variable (letters, digits, '_'), e.g. OPENAI_API_KEY; "
            "put the secret itself in that variable, never in the crawl definition"
        )
    return name


@lru_cache(maxsize=1)
def _suffix_list() -> Any:
    """tldextract with the Public Suffix List snapshot it ships: no download, no cache directory."""
    import tldextract  # a Scrapy dependency; imported here so config loads fast when not needed

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


def is_public_suffix(domain: str) -> bool:
    """True for ``com``, ``co.uk``, ``github.io``: names under which anyone can register a site.

    Uses the Public Suffix List (with its private section, so ``github.io`` and ``blogspot.com``
    count): allowing such a name would let the crawl wander over every site registered under it.
    """
    parts = _suffix_list()(domain.strip(".").lower())
    return bool(parts.suffix) and not parts.domain


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    problem = backtracking_problem(pattern)
    if problem:
        raise ValueError(f"regex {pattern!r} {problem}")
    return pattern


def _check_domain(domain: str) -> str:
    name = domain.strip().lower()
    if "/" in name or not name:
        raise ValueError(f"a domain name is expected, not {domain!r}")
    if is_public_suffix(name):
        raise ValueError(
            f"{name!r} is a public suffix: it would allow every site registered under it; "
            f"name the site's own domain, e.g. 'example.{name.strip('.')}'"
        )
    return name


# List items are checked one by one, so an error names its index: source.include.0.
PageUrl = Annotated[str, AfterValidator(_check_page_url)]
UrlRegex = Annotated[str, AfterValidator(_check_regex)]
Domain = Annotated[str, AfterValidator(_check_domain)]


class SourceConfig(_Strict):
    """What to crawl and how politely."""

    start_urls: list[PageUrl] = Field(
        min_length=1, description="Pages the crawl starts from (http or https, no user:password@)."
    )
    sitemaps: list[PageUrl] = Field(
        default_factory=list,
        description="Sitemaps to read: a sitemap.xml, a sitemap index, or a robots.txt (its Sitemap: lines).",
    )
    allowed_domains: list[Domain] = Field(
        default_factory=list,
        description="Domains links may lead to (subdomains included); default: the hosts of start_urls. "
        "A public suffix such as 'com' or 'co.uk' is refused.",
    )
    include: list[UrlRegex] = Field(
        default_factory=list,
        description="Regexes (Python syntax, searched in the URL); a followed URL must match one. "
        "Empty: every URL.",
    )
    exclude: list[UrlRegex] = Field(
        default_factory=list, description="Regexes (Python syntax, searched in the URL) that drop a URL."
    )
    # 100 clicks deep is beyond any real site structure; deeper means a crawler trap (calendars, facets).
    max_depth: int = Field(3, ge=0, le=100, description="Clicks from a start URL; 0 = the start URLs only.")
    # 10 million pages is far beyond one SQLite ledger and one machine's crawl; shard bigger sites.
    max_pages: int = Field(1000, ge=1, le=10_000_000, description="Pages stored by one run, at most.")
    obey_robots: bool = Field(True, description="Obey robots.txt (RFC 9309) and its Crawl-delay.")
    # 2 per site by default, as polite crawlers do for sites they do not know (Heritrix and Nutch
    # default to 1-2 per host); 64 is more than any polite crawler sends (Scrapy's default is 8).
    concurrency: int = Field(
        2, ge=1, le=64, description="Requests in flight per domain, at most (AutoThrottle adapts below it)."
    )
    allow_private_networks: bool = Field(
        False,
        description="Allow loopback, private and link-local addresses (127.0.0.1, 10.x, 192.168.x, ...) "
        "and names that resolve to them; needed to crawl a local server.",
    )
    # At least 1 KiB: a smaller cap would skip even short pages and robots.txt files. At most 1 GiB:
    # Scrapy's own DOWNLOAD_MAXSIZE default, and a response is held in memory whole.
    max_page_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Responses larger than this many bytes are skipped (recorded, not stored).",
    )
    # At most 60 s: Nutch skips a site whose robots.txt asks for more than 30 s between requests
    # (fetcher.max.crawl.delay); at 60 s the default 1000 pages already take 17 hours.
    download_delay: float = Field(
        0.0, ge=0, le=60, description="Seconds between two requests to one domain, at least (0-60)."
    )
    # At least 1 s: shorter fails ordinary TLS handshakes on the internet. At most 600 s: a stuck server
    # would otherwise hold a concurrency slot for longer (Scrapy's default is 180 s).
    download_timeout: float = Field(30.0, ge=1, le=600, description="Seconds one request may take (1-600).")
    user_agent: str = Field(
        "webvec/0.1 (+https://pypi.org/project/webvec/)",
        min_length=1,
        max_length=512,  # far beyond any real User-Agent; servers refuse overlong header lines
        description="User-Agent header sent with every request; say who runs the crawl and how to reach you.",
    )

    @field_validator("user_agent")
    @classmethod
    def _user_agent(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):  # a newline would inject a header
            raise ValueError("must be one line of printable characters")
        return value

    @property
    def domains(self) -> list[str]:
        """allowed_domains, defaulting to the hosts of start_urls."""
        if self.allowed_domains:
            return list(self.allowed_domains)
        hosts = [urlsplit(u).hostname or "" for u in self.start_urls]
        return sorted({h.lower() for h in hosts if h})

    # Politeness limits (spiders/robots.py, spiders/retry.py).
    max_crawl_delay: float = Field(
        30.0,
        gt=0,
        le=3600,
        description=(
            "Longest robots.txt Crawl-delay honoured, in seconds; a host asking for more is skipped "
            "(its pages are recorded as skipped). 30 s is the default of Nutch and StormCrawler "
            "(fetcher.max.crawl.delay): at 30 s a host yields 120 pages an hour."
        ),
    )
    max_retry_after: float = Field(
        120.0,
        ge=0,
        le=3600,
        description=(
            "Longest Retry-After (429/503) waited for, in seconds; a server asking for more fails the "
            "page. Two minutes outlasts the usual rate-limit windows (per second, per minute) without "
            "stalling a scheduled run on a server that announces an hour of maintenance."
        ),
    )

    # -- network safety and time budget (issue 8) ----------------------------------------------
    allow_hosts: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description=(
            "Host names, IP addresses or networks (10.0.0.0/8) the crawl may reach although they are "
            "private or cloud-metadata addresses; the only way to reach a metadata address."
        ),
    )
    proxy: str | None = Field(
        None,
        max_length=2048,
        description="http(s)://host:port of a proxy for every request; credentials go in https_proxy "
        "with use_env_proxy instead.",
    )
    use_env_proxy: bool = Field(
        False, description="Honour http_proxy/https_proxy/no_proxy from the environment (ignored otherwise)."
    )
    max_duration: Duration = Field(
        timedelta(hours=6),
        description="Time budget of one crawl (1s-30d: '45s', '30m', '6h'); a crawl cut by it is not "
        "complete.",
        json_schema_extra={"default": "6h"},
    )

    @field_validator("max_duration")
    @classmethod
    def _max_duration(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=30):
            raise ValueError(f"must be between 1s and 30d, not {_show(value)}")
        return value

    @field_validator("allow_hosts")
    @classmethod
    def _allow_hosts(cls, hosts: list[str]) -> list[str]:
        out = []
        for host in hosts:
            entry = host.strip().strip("[]").lower()
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOST_RE.match(entry):
                    raise ValueError(f"not a host name, IP address or network: {host!r}") from None
            out.append(entry)
        return out

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(_check_http_url(url))
        if parts.username or parts.password:
            raise ValueError(
                "has credentials: put the proxy URL in https_proxy/http_proxy and set use_env_proxy: true"
            )
        return url


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
        description="Extraction worker processes; default one per CPU; 0 = in the run's process, no limits.",
    )


class ChunkConfig(_Strict):
    """Token-aware chunking; ``max_tokens`` is further capped by the embedder's own limit."""

    # 16..8191: below 16 tokens a chunk is a fragment; 8191 is the largest input of OpenAI's models.
    max_tokens: int = Field(256, ge=16, le=8191, description="Tokens per chunk, at most (16-8191).")
    # Below half of max_tokens (checked below), so at most 4095.
    overlap_tokens: int = Field(
        32, ge=0, le=4095, description="Tokens repeated from the end of the previous chunk; < max_tokens / 2."
    )

    @model_validator(mode="after")
    def _overlap(self) -> ChunkConfig:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be less than half of max_tokens")
        return self


# The largest input of current embedding models is 32k tokens (e.g. Qwen3-Embedding); more is a typo.
_MAX_INPUT_TOKENS = 32_768
# Pinecone's largest index dimension; no embedding model we know comes close (the largest are 4096).
_MAX_DIMENSION = 20_000


class LocalEmbedderConfig(_Strict):
    """sentence-transformers on this machine; the packaged all-MiniLM-L6-v2 by default."""

    kind: Literal["local"] = Field("local", description="local: sentence-transformers on this machine.")
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model: the packaged all-MiniLM-L6-v2 (offline) or a local folder.",
    )
    device: str | None = Field(
        None, description="cpu, cuda, cuda:1, ...; default: CUDA when available, else the CPU."
    )
    # 4096 texts per forward pass already needs gigabytes of activations on a GPU.
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per forward pass (1-4096).")
    normalize: bool = Field(True, description="L2-normalise vectors (cosine similarity = dot product).")
    max_input_tokens: int | None = Field(
        None,
        ge=8,
        le=_MAX_INPUT_TOKENS,
        description="Input limit of the model in tokens; default: the model's own max_seq_length.",
    )


class OpenAIEmbedderConfig(_Strict):
    """OpenAI, or any server speaking its /v1/embeddings API when ``base_url`` is set."""

    kind: Literal["openai"] = Field(description="openai: OpenAI or an OpenAI-compatible server (base_url).")
    model: str = Field("text-embedding-3-small", description="Embedding model name.")
    dimensions: int | None = Field(
        None,
        ge=1,
        le=_MAX_DIMENSION,
        description="Sent as `dimensions`: shortened vectors (text-embedding-3-* only).",
    )
    output_dimension: int | None = Field(
        None,
        ge=1,
        le=_MAX_DIMENSION,
        description="Vector size of a model OpenAI does not list (OpenAI-compatible servers).",
    )
    base_url: str | None = Field(
        None, description="An OpenAI-compatible server, e.g. http://localhost:11434/v1 (Ollama)."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key (never the key)."
    )
    max_input_tokens: int | None = Field(
        None,
        ge=8,
        le=_MAX_INPUT_TOKENS,
        description="Input limit in tokens; default 8191 for OpenAI's models.",
    )
    tokenizer: str = Field("cl100k_base", description="tiktoken encoding used to count tokens.")
    max_batch_inputs: int = Field(
        2048, ge=1, le=2048, description="Inputs per request, at most (OpenAI's limit: 2048)."
    )
    max_request_tokens: int = Field(
        300_000, ge=1, le=300_000, description="Tokens per request, at most (OpenAI's limit: 300,000)."
    )
    # Upper bounds far above any account's limits (OpenAI's top tier allows about 10k requests and 10M
    # tokens a minute for embeddings): a value beyond them is a typo that switches the limiter off.
    requests_per_minute: int | None = Field(
        3000,
        ge=1,
        le=1_000_000,
        description="Client-side request rate limit; keep it at or under your account's.",
    )
    tokens_per_minute: int | None = Field(
        1_000_000,
        ge=1,
        le=1_000_000_000,
        description="Client-side token rate limit; keep it at or under your account's.",
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Requests in flight, at most (1-64).")
    # 0.1 s is enough for a server on this machine (tests use 0.3 s); 600 s is the OpenAI SDK's default.
    timeout_s: float = Field(60.0, ge=0.1, le=600, description="Seconds one request may take (0.1-600).")
    # At most an hour: past that the provider is down, and the next scheduled run picks up the rest.
    retry_budget_s: float = Field(
        300.0, ge=0.1, le=3600, description="Seconds all retries of one batch may take together (0.1-3600)."
    )

    _env = field_validator("api_key_env")(_check_env_name)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        return None if url is None else _check_http_url(url)


class FakeEmbedderConfig(_Strict):
    """Deterministic hashed bag-of-words vectors, no model: for tests and dry runs (not for search)."""

    kind: Literal["fake"] = Field(description="fake: hashed bag-of-words vectors, for tests (no model).")
    # 20,000: Pinecone's largest dense vector.
    dimension: int = Field(1024, ge=2, le=20_000, description="Vector size (2-20000).")
    max_input_tokens: int = Field(256, ge=8, le=32_768, description="Longest input, in words (8-32768).")
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per internal batch (1-4096).")
    fail_on: str | None = Field(
        None,
        max_length=200,
        description="Texts containing this marker are rejected as invalid input (for fault tests).",
    )


EmbedderConfig = Annotated[
    LocalEmbedderConfig | OpenAIEmbedderConfig | FakeEmbedderConfig,
    Field(
        discriminator="kind", description="How texts become vectors: kind local (default), openai or fake."
    ),
]


class ChromaStoreConfig(_Strict):
    """Chroma: embedded persistent client by default, HTTP client when ``host`` is set."""

    kind: Literal["chroma"] = Field("chroma", description="chroma: embedded, or a `chroma run` server.")
    collection: str | None = Field(None, description="Collection name; default: the crawl's name.")
    path: str | None = Field(
        None,
        description="Folder of the embedded database; default $WEBVEC_HOME/chroma. A relative path is "
        "taken from $WEBVEC_HOME.",
    )
    host: str | None = Field(None, description="Host of a `chroma run` server; unset: embedded Chroma.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the Chroma server.")
    ssl: bool = Field(False, description="Use HTTPS to reach the Chroma server.")

    @field_validator("collection")
    @classmethod
    def _collection(cls, name: str | None) -> str | None:
        if name is not None and (not _CHROMA_RE.match(name) or ".." in name):
            raise ValueError(
                f"invalid Chroma collection name {name!r}: 3-512 characters of letters, digits, '.', "
                "'_' or '-', starting and ending with a letter or digit"
            )
        return name

    @field_validator("path")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        # Resolved here so the spider, the flows and `webvec status` all name the same folder.
        return None if path is None else str(under_home(path))


class PineconeStoreConfig(_Strict):
    """Pinecone serverless; ``host`` points the SDK at another server (e.g. Pinecone Local)."""

    kind: Literal["pinecone"] = Field(description="pinecone: a Pinecone serverless index.")
    index: str | None = Field(None, description="Index name; default: derived from the crawl's name.")
    namespace: str | None = Field(None, description="Namespace in the index; default: the crawl's name.")
    cloud: str = Field("aws", description="Cloud of a new serverless index.")
    region: str = Field("us-east-1", description="Region of a new serverless index.")
    metric: Literal["cosine", "dotproduct", "euclidean"] = Field(
        "cosine", description="Similarity metric of a new index."
    )
    host: str | None = Field(
        None,
        description="Another server speaking Pinecone's API, e.g. http://localhost:5080 (Pinecone Local).",
    )
    api_key_env: str = Field(
        "PINECONE_API_KEY",
        description="Name of the environment variable holding the API key (never the key).",
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Upserts in flight, at most (1-64).")
    # Same bounds as the OpenAI embedder's: a request hung for 10 minutes, or retries for an hour, are
    # outages to report, not to wait out.
    timeout_s: float = Field(
        30.0, ge=0.1, le=600, description="Seconds one request may take before it is retried (0.1-600)."
    )
    retry_budget_s: float = Field(
        120.0,
        ge=0.1,
        le=3600,
        description="One budget, in seconds, for all retries of one store operation (0.1-3600).",
    )

    _env = field_validator("api_key_env")(_check_env_name)

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

    kind: Literal["memory"] = Field(description="memory: vectors in this process only, for tests.")
    collection: str | None = Field(None, description="Collection name; default: the crawl's name.")


StoreConfig = Annotated[
    ChromaStoreConfig | PineconeStoreConfig | MemoryStoreConfig,
    Field(
        discriminator="kind", description="Where the vectors go: kind chroma (default), pinecone or memory."
    ),
]


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


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid name {name!r}: 3-63 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit"
        )
    return name


class CrawlConfig(_Strict):
    """One crawl definition: a site, how to chunk and embed it, and where the vectors go."""

    name: str = Field(
        description="3-63 lowercase letters, digits, '-' or '_'; the default collection/namespace name."
    )
    description: str | None = Field(None, description="What this crawl is; shown in Prefect.")
    schedule: str | None = Field(None, description="Cron (UTC) of the scheduled Prefect ingest deployment.")
    source: SourceConfig = Field(description="The site: start URLs, limits, politeness, network safety.")
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

    _cron = field_validator("schedule")(_check_cron)
    _name = field_validator("name")(_check_name)

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


# The discriminator tags pydantic inserts into union locations ("embedder.openai.model").
_UNION_TAGS = ("local", "openai", "fake", "chroma", "pinecone", "memory")


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        # Drop the discriminator tag pydantic inserts into union locations ("embedder.openai.model").
        loc = ".".join(str(p) for p in err["loc"] if p not in _UNION_TAGS)
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


def crawl_json_schema() -> dict[str, Any]:
    """JSON Schema of a crawl definition, for editors (``webvec schema``).

    Draft-07 with ``definitions``: the YAML language server (VS Code, Neovim, JetBrains' plugin) fully
    supports draft-07 only, and pydantic's output otherwise uses nothing newer than ``$defs``.
    """
    schema = CrawlConfig.model_json_schema(ref_template="#/definitions/{model}")
    definitions = schema.pop("$defs", {})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "webvec crawl definition",
        **{k: v for k, v in schema.items() if k != "title"},
        "definitions": definitions,
    }


def starter_crawl(name: str, url: str, *, allow_private_networks: bool) -> str:
    """The commented crawl definition ``webvec init`` writes; ConfigError naming NAME or --url when bad.

    The text comes from ``ingest/templates/crawl.yaml``; the result is validated before it is returned,
    so what is written always loads.
    """
    for label, check, value in (("NAME", _check_name, name), ("--url", _check_page_url, url)):
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    template = resources.files("ingest").joinpath("templates/crawl.yaml").read_text(encoding="utf-8")
    private = (
        "true  # set by webvec init: the start URL is a private or loopback address"
        if allow_private_networks
        else "false  # true is needed to crawl 127.0.0.1, 10.x, 192.168.x, ..."
    )
    # JSON strings are valid YAML double-quoted scalars: no URL character can break the file.
    text = (
        template.replace("{{schema_file}}", SCHEMA_FILE)
        .replace("{{name}}", name)
        .replace("{{url}}", json.dumps(url))
        .replace("{{allow_private_networks}}", private)
    )
    parse_crawl(yaml.safe_load(text), f"{name}.yaml")
    return text
