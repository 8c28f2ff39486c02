"""``source:`` of a crawl definition: what to crawl, how politely, and within which network limits.

Two kinds, told apart by ``kind``: the web (:class:`SourceConfig`, the default: a definition without
``kind`` is a web crawl, as every definition written before kinds existed) and an Apify dataset
export (:class:`ApifyDatasetSourceConfig`, ``kind: apify_dataset``).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ingest.config._base import (
    Domain,
    Duration,
    PageUrl,
    UrlRegex,
    _check_env_name,
    _check_http_url,
    _show,
    _Strict,
)

DocumentType = Literal["pdf", "docx"]


def _every_document_type() -> list[DocumentType]:
    return ["pdf", "docx"]


_HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\.?$")


class SourceConfig(_Strict):
    """What to crawl and how politely (a web site; the default ``kind``)."""

    kind: Literal["web"] = Field("web", description="web (the default): crawl a site with the spider.")
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
    follow_links: bool = Field(
        True,
        description="Follow links of fetched pages. false: fetch exactly the URLs the sitemaps list (the "
        "start URLs' robots.txt when no sitemaps are given), skipping pages whose <lastmod> is older than "
        "their last fetch.",
    )
    documents: list[DocumentType] = Field(
        default_factory=_every_document_type,
        description="Document types indexed besides HTML (pdf, docx); others are skipped as not html.",
    )
    # 50 MiB: manuals and papers run to tens of MB; at most 1 GiB, as max_page_bytes (held in memory).
    max_document_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="PDF/DOCX responses larger than this many bytes are skipped (recorded, not stored).",
    )
    # 1000 pages: a thick manual; a PDF that declares more is skipped before its page tree is read.
    max_document_pages: int = Field(
        1000, ge=1, le=100_000, description="PDFs with more pages than this are skipped (1-100000)."
    )
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

    # -- JavaScript rendering (issue 13) --------------------------------------------------------
    render: Literal["never", "auto", "always"] = Field(
        "never",
        description="Render pages in a headless Chromium (scrapy-playwright, the render extra): never; "
        "auto = only pages whose HTML is an app shell (near-empty body with scripts); always = every page.",
    )
    # A rendering browser page costs ~50-150 MB and a CPU core while its scripts run: 2 keeps a laptop
    # usable; 16 is as many pages as one machine renders usefully (concurrency caps plain requests).
    render_concurrency: int = Field(
        2, ge=1, le=16, description="Pages rendered at once, at most (1-16); requests count as usual."
    )
    browser_path: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Chromium binary used for rendering; default: $WEBVEC_CHROMIUM, else /usr/bin/chromium "
        "(Debian's chromium package).",
    )
    # At least 1 s; at most 300 s: a page whose scripts take longer is broken or hostile, and it holds one
    # of the few render slots meanwhile.
    render_timeout_s: float = Field(
        30.0,
        ge=1,
        le=300,
        description="Seconds one page may take to load and render in the browser (1-300); longer fails it.",
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


class ApifyDatasetSourceConfig(_Strict):
    """Pages an Apify Website Content Crawler run already fetched: a dataset export, or the dataset."""

    kind: Literal["apify_dataset"] = Field(description="apify_dataset: ingest an Apify dataset.")
    path: str | None = Field(
        None,
        description="A dataset export: JSON array, JSONL or CSV with url, text and/or markdown, "
        "metadata.title, crawl.loadedTime (relative paths are taken from the crawl file's folder).",
    )
    dataset_id: str | None = Field(
        None,
        max_length=200,
        description="Read the dataset from Apify instead (needs the apify extra and network access).",
    )
    token_env: str = Field(
        "APIFY_TOKEN", description="Environment variable holding the Apify API token (with dataset_id)."
    )
    max_pages: int = Field(
        100_000, ge=1, le=10_000_000, description="Dataset items stored by one run, at most."
    )

    _env = field_validator("token_env")(_check_env_name)

    @model_validator(mode="after")
    def _one_place(self) -> ApifyDatasetSourceConfig:
        if (self.path is None) == (self.dataset_id is None):
            raise ValueError("give either path (an export file) or dataset_id")
        return self


def _source_kind(value: Any) -> str:
    # No kind means the web: every crawl definition written before kinds existed.
    if isinstance(value, dict):
        return str(value.get("kind") or "web")
    return str(getattr(value, "kind", "web"))


AnySource = Annotated[
    Annotated[SourceConfig, Tag("web")] | Annotated[ApifyDatasetSourceConfig, Tag("apify_dataset")],
    Discriminator(_source_kind),
]
