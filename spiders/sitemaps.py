"""Streaming sitemap reading: one ``<loc>`` at a time, in flat memory, whatever the sitemap's size.

A sitemap may list 50,000 URLs in 50 MB (sitemaps.org), and real ones exceed both. Building the whole
tree and list (Scrapy's ``Sitemap``) costs hundreds of megabytes for a large file and is wasted when
the crawl's ``max_pages`` needs ten of them; :func:`iter_sitemap` walks the document with lxml's
``iterparse`` and frees each entry once read, and :func:`open_sitemap_body` gunzips on the fly with a
size cap (a gzip bomb stops at the cap). :func:`parse_lastmod` reads an entry's ``<lastmod>``, for
crawls that select pages by date (a backfill's ``since``).
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import IO, Any

from lxml import etree  # no stubs: pyproject.toml lets mypy skip lxml

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"


class SitemapTooLarge(Exception):
    """The uncompressed sitemap is larger than the cap."""


class _CappedReader(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes were read from ``raw``."""

    def __init__(self, raw: IO[bytes] | gzip.GzipFile, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise SitemapTooLarge(f"larger than {self.limit} bytes uncompressed")
        buffer[: len(data)] = data
        return len(data)


def open_sitemap_body(body: bytes, max_size: int) -> IO[bytes] | None:
    """A stream over the sitemap XML in ``body`` (gunzipped if gzipped), or None if it is not XML."""
    if body[:2] == GZIP_MAGIC:
        gunzipped = gzip.GzipFile(fileobj=io.BytesIO(body))
        return io.BufferedReader(_CappedReader(gunzipped, max_size))
    if body.lstrip()[:1] != b"<":
        return None
    return io.BytesIO(body)


@dataclass(frozen=True)
class SitemapEntry:
    """One ``<url>`` of a urlset or ``<sitemap>`` of a sitemap index."""

    loc: str
    lastmod: str | None = None


def parse_lastmod(value: str | None) -> date | None:
    """The day of a ``<lastmod>`` W3C datetime, in UTC; None for a missing or unreadable value.

    ``2026-11-01``, ``2026-11``, ``2026`` (a year-month or a year is a valid W3C datetime too; the first
    day is taken), ``2026-11-01T10:00:00+02:00``, ``...Z``; a date-only or zone-less value is taken as
    written.
    """
    if not value:
        return None
    text = value.strip()
    try:
        if len(text) <= 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%Y-%m", "%Y"):
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                pass
        return None
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


def modified_before(value: str | None, moment: datetime) -> bool:
    """Whether a ``<lastmod>`` lies wholly before ``moment`` (aware): a full datetime before it, a day
    (or month, year) that ended before its day. False for a missing or unreadable value."""
    if not value:
        return False
    text = value.strip()
    if len(text) > 10:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return False
        return (when if when.tzinfo else when.replace(tzinfo=UTC)) < moment
    day = parse_lastmod(text)
    if day is None:
        return False
    # A day (a month, a year) may mean any time within it: only a period that ended before the
    # moment's day is surely before it.
    today = moment.astimezone(UTC).date()
    if len(text) == 4:
        return day.year < today.year
    if len(text) == 7:
        return (day.year, day.month) < (today.year, today.month)
    return day < today


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def iter_sitemap(
    stream: IO[bytes], on_error: Callable[[str], None] | None = None
) -> tuple[str | None, Iterator[SitemapEntry]]:
    """The sitemap's type (``"urlset"``, ``"sitemapindex"``, or None if neither) and its entries.

    Entries are read lazily: the second value is a generator that parses as it is consumed. Entities
    are not resolved and nothing is fetched from the network (no XXE); broken XML is read as far as
    lxml's recovery gets (logged). A body cut short (the size cap, a broken gzip stream) ends the entries
    early: it is logged and passed to ``on_error``, since the entries after it are missed.
    """
    events = etree.iterparse(
        stream,
        events=("start", "end"),
        recover=True,
        resolve_entities=False,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
        huge_tree=False,
    )
    try:
        _, root = next(events)
    except (StopIteration, etree.XMLSyntaxError, SitemapTooLarge, OSError, EOFError):
        return None, iter(())
    kind = _local(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        return None, iter(())
    entry_tag = "url" if kind == "urlset" else "sitemap"
    return kind, _entries(events, root, entry_tag, on_error)


def _entries(
    events: Any, root: Any, entry_tag: str, on_error: Callable[[str], None] | None
) -> Iterator[SitemapEntry]:
    try:
        for event, element in events:
            if event != "end" or _local(element.tag) != entry_tag or element.getparent() is not root:
                continue
            loc = lastmod = None
            for child in element:
                name = _local(child.tag)
                if name == "loc" and child.text:
                    loc = child.text.strip()
                elif name == "lastmod" and child.text:
                    lastmod = child.text.strip()
            # Free what was read: the entry and the already-read siblings the root still holds.
            element.clear()
            while element.getprevious() is not None:
                del root[0]
            if loc:
                yield SitemapEntry(loc, lastmod)
    except (etree.XMLSyntaxError, SitemapTooLarge, OSError, EOFError) as exc:
        logger.warning("sitemap reading stopped: %s: %s", type(exc).__name__, exc)
        # Cut short (the size cap, a broken gzip stream): the entries after this point are missed.
        # Broken XML is not reported: lxml's recovery already read what can be read of it.
        if on_error is not None and not isinstance(exc, etree.XMLSyntaxError):
            on_error(str(exc) if isinstance(exc, SitemapTooLarge) else f"{type(exc).__name__}: {exc}")
