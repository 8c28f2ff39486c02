"""Checks of a crawl definition against the world around it, before a run and in ``webvec validate``.

:mod:`ingest.config` validates what a crawl definition says and stays pure (no DNS, no files). This
module checks what it means here and now:

- **errors** (a run must not start): a start URL or sitemap whose host is, or resolves to, a loopback,
  private, link-local or reserved address while ``source.allow_private_networks`` is false. The spider
  would refuse every request and the run would end with nothing fetched; better to say so before. A
  name counts by what it resolves to (:func:`ingest.urls.is_private_host`), as the spider decides.
  Likewise ``source.render`` without its browser or the render extra (every page would fail):
  :func:`ingest.render.renderer_problem`.
- **warnings** (legitimate, but worth a line): ``store.path`` (``store.uri`` of Milvus Lite) or a
  SQLite state DB outside ``$WEBVEC_HOME`` (relative paths are already taken from it, so only an
  absolute path lands here: that data is not moved, backed up or cleaned up with the rest of webvec's
  state); an environment variable the definition names (``state.url_env``, ``api_key_env``,
  ``token_env``) that is not set in this shell.

Use :func:`check` in a command: it raises one :class:`~ingest.errors.ConfigError` line for all errors
and returns the warnings to print.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ingest.config import (
    ChromaStoreConfig,
    CrawlConfig,
    MilvusStoreConfig,
    OpenAIEmbedderConfig,
    PgvectorStoreConfig,
    PineconeStoreConfig,
    QdrantStoreConfig,
    SourceConfig,
    sqlite_file,
    webvec_home,
)
from ingest.errors import ConfigError
from ingest.render import renderer_problem
from ingest.urls import is_private_host


@dataclass(frozen=True)
class Problem:
    """One finding: the field it is about (``source.start_urls.0``) and what to do."""

    level: Literal["error", "warning"]
    field: str
    message: str

    def line(self, source: str) -> str:
        """One line in the style of config errors: ``crawls/x.yaml: source.start_urls.0: ...``."""
        return f"{source}: {self.field}: {self.message}"


def preflight(cfg: CrawlConfig) -> list[Problem]:
    """Errors first, then warnings, for a crawl definition that already passed validation.

    May resolve host names (the start URLs' and sitemaps'); reads the environment; writes nothing.
    """
    problems = [*_private_hosts(cfg), *_renderer(cfg), *_locations(cfg), *_environment(cfg)]
    return sorted(problems, key=lambda p: p.level != "error")


def check(cfg: CrawlConfig, source: str) -> list[Problem]:
    """:func:`preflight`, raising one ConfigError line that names every error; returns the warnings."""
    problems = preflight(cfg)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(f"{p.field}: {p.message}" for p in errors))
    return problems


def _private_hosts(cfg: CrawlConfig) -> list[Problem]:
    web = cfg.source
    if not isinstance(web, SourceConfig) or web.allow_private_networks:
        return []  # a dataset source makes no requests
    problems = []
    for key, urls in (("start_urls", web.start_urls), ("sitemaps", web.sitemaps)):
        for i, url in enumerate(urls):
            host = (urlsplit(url).hostname or "").lower()
            if is_private_host(host):
                what = (
                    "is a private or loopback address"
                    if _is_literal(host)
                    else ("resolves to a private or loopback address")
                )
                problems.append(
                    Problem(
                        "error",
                        f"source.{key}.{i}",
                        f"{host} {what}: set source.allow_private_networks: true to crawl it "
                        "(without it every request to it is refused)",
                    )
                )
    return problems


def _renderer(cfg: CrawlConfig) -> list[Problem]:
    # source.render needs a browser and the render extra; without them every page would fail.
    web = cfg.source
    if not isinstance(web, SourceConfig):
        return []
    problem = renderer_problem(web)
    return [Problem("error", "source.render", problem)] if problem else []


def _is_literal(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _locations(cfg: CrawlConfig) -> list[Problem]:
    home = webvec_home()
    found: list[tuple[str, Path]] = []
    if isinstance(cfg.store, ChromaStoreConfig) and cfg.store.host is None and cfg.store.path:
        found.append(("store.path", Path(cfg.store.path)))
    if isinstance(cfg.store, QdrantStoreConfig) and cfg.store.url is None and cfg.store.path:
        found.append(("store.path", Path(cfg.store.path)))
    if isinstance(cfg.store, MilvusStoreConfig) and cfg.store.uri and cfg.store.uri.endswith(".db"):
        found.append(("store.uri", Path(cfg.store.uri)))
    if cfg.state.url_env:
        url = os.environ.get(cfg.state.url_env)
        where = sqlite_file(url) if url else None
        if where is not None:
            found.append(("state.url_env", where))
    elif cfg.state.url:
        where = sqlite_file(cfg.state.url)
        if where is not None:
            found.append(("state.url", where))
    return [
        Problem(
            "warning",
            field,
            f"{path} is outside $WEBVEC_HOME ({home}): fine if intended, but it is not moved, backed up "
            "or removed with the rest of webvec's state",
        )
        for field, path in found
        if not path.resolve().is_relative_to(home)
    ]


def _environment(cfg: CrawlConfig) -> list[Problem]:
    needed: list[tuple[str, str, str]] = []
    if cfg.state.url_env:
        needed.append(("state.url_env", cfg.state.url_env, "the state DB URL"))
    if isinstance(cfg.embedder, OpenAIEmbedderConfig) and cfg.embedder.base_url is None:
        needed.append(("embedder.api_key_env", cfg.embedder.api_key_env, "the OpenAI API key"))
    if isinstance(cfg.store, PineconeStoreConfig):
        needed.append(("store.api_key_env", cfg.store.api_key_env, "the Pinecone API key"))
    if isinstance(cfg.store, PgvectorStoreConfig):
        needed.append(("store.url_env", cfg.store.url_env, "the PostgreSQL URL of the pgvector store"))
    if isinstance(cfg.store, QdrantStoreConfig) and cfg.store.api_key_env:
        needed.append(("store.api_key_env", cfg.store.api_key_env, "the Qdrant API key"))
    if isinstance(cfg.store, MilvusStoreConfig) and cfg.store.token_env:
        needed.append(("store.token_env", cfg.store.token_env, "the Milvus token"))
    return [
        Problem("warning", field, f"environment variable {name} is not set; a run needs {what} in it")
        for field, name, what in needed
        if not os.environ.get(name, "").strip()
    ]
