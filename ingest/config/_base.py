"""The shared pieces of crawl definitions: the strict base model, webvec's folders, durations, and the
validators of URLs, regexes, domains, names and environment variable names.

Every section model (:mod:`ingest.config.source`, :mod:`~ingest.config.embedder`,
:mod:`~ingest.config.store`, :mod:`~ingest.config.crawl`) builds on these; nothing here imports them.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from ingest.redos import backtracking_problem
from ingest.urls import is_http_url

DEFAULT_HOME = ".webvec"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
# The sign is accepted here so that "-7d" gets the range message below, not a parse error.
_DURATION_RE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# POSIX names of environment variables; anything else in an *_env key is most likely the secret itself.
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
# Ten years: "never" in practice, and far from timedelta's limit (now - delta must stay a valid date).
_LONGEST_DURATION = timedelta(days=3650)


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


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid name {name!r}: 3-63 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit"
        )
    return name
