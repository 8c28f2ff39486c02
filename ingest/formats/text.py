"""What a document reader returns, and the refusals it raises (turned into Skips by ingest.extract)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadText:
    """The text of a document as markdown, with what its metadata says.

    ``page_starts``: the offset in ``markdown`` where each page begins (page 1 first, at 0); empty
    for formats without pages. A chunk starting at offset ``o`` lies on page
    ``bisect_right(page_starts, o)``.
    """

    markdown: str
    title: str | None = None
    lang: str | None = None
    date: str | None = None
    page_starts: tuple[int, ...] = ()


class Refused(Exception):
    """A document webvec does not read: the message says why (one line)."""


class Encrypted(Refused):
    """The document needs a password."""


class TooManyPages(Refused):
    """More pages than ``source.max_document_pages``."""


class NoText(Refused):
    """The document holds no text (a scanned PDF without a text layer, an empty file)."""
