"""HTML → Document: trafilatura main-text extraction to markdown, plus metadata and a content hash."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ingest.ids import content_hash, doc_id
from ingest.model import SkipKind
from ingest.urls import canonicalize_url

# Permalink markers that documentation generators (Sphinx: ¶) append to every heading.
_PERMALINK = re.compile(r"[ \t]*[¶§]+[ \t]*$", re.MULTILINE)
_HEADING_LINE = re.compile(r"^(#{1,6} .*?)[ \t]*[¶§]+[ \t]*$", re.MULTILINE)

# A page has main text only if it holds at least this many words in lines of prose: lines of
# MIN_LINE_WORDS words or more with some punctuation, headings aside. Tag clouds, link hubs and
# indexes of short entries yield words, but no prose.
MIN_PROSE_WORDS = 20
MIN_LINE_WORDS = 6
_PUNCTUATION = re.compile(r"[.,;:!?。、，]")


def has_prose(markdown: str) -> bool:
    """True when the markdown holds at least MIN_PROSE_WORDS words in lines of prose."""
    words = 0
    for line in markdown.splitlines():
        if line.lstrip().startswith("#"):
            continue
        n = len(line.split())
        if n >= MIN_LINE_WORDS and _PUNCTUATION.search(line):
            words += n
            if words >= MIN_PROSE_WORDS:
                return True
    return False


@dataclass(frozen=True)
class Document:
    """The readable content of one page."""

    url: str  # canonical URL: the page's identity
    doc_id: str
    markdown: str
    title: str | None = None
    lang: str | None = None
    date: str | None = None
    canonical: str | None = None  # <link rel="canonical"> as the page declares it
    content_hash: str = ""


@dataclass(frozen=True)
class Skip:
    """A page that yields no document, and why."""

    url: str
    reason: str
    kind: SkipKind = SkipKind.NO_MAIN_TEXT


@lru_cache(maxsize=1)
def _options() -> tuple[Any, Any]:
    # Built once (trafilatura's Extractor); a copy without metadata renders the body alone.
    from trafilatura.settings import Extractor

    with_meta = Extractor(output_format="markdown", with_metadata=True, formatting=True, comments=False)
    body_only = copy.copy(with_meta)
    body_only.with_metadata = False
    return with_meta, body_only


def _head_value(tree: Any, xpath: str) -> str | None:
    found = tree.xpath(xpath)
    if found:
        value = str(found[0]).strip()
        return value or None
    return None


def extract(html: bytes | str, url: str) -> Document | Skip:
    """Extract the main text of a page as markdown with title, language, date and canonical URL.

    ``url`` is the URL the page was served from; it is canonicalised and becomes the identity.
    Returns :class:`Skip` when the page has no main text.
    """
    from trafilatura import bare_extraction
    from trafilatura.core import determine_returnstring
    from trafilatura.utils import load_html

    url = canonicalize_url(url)
    tree = load_html(html)
    if tree is None:
        return Skip(url, "unparseable HTML", SkipKind.UNPARSEABLE)
    # Read <head> facts first: trafilatura prunes the tree in place.
    lang = _head_value(tree, "/html/@lang")
    canonical = _head_value(tree, "//head/link[@rel='canonical']/@href")
    with_meta, body_only = _options()
    try:
        result = bare_extraction(tree, url=url, options=with_meta)
    except (ValueError, TypeError) as exc:  # trafilatura raises these on pathological trees
        return Skip(url, f"extraction failed: {exc}", SkipKind.EXTRACT_FAILED)
    if result is None:
        return Skip(url, "no main text")
    markdown = _HEADING_LINE.sub(r"\1", (determine_returnstring(result, body_only) or "")).strip()
    if not has_prose(markdown):
        return Skip(url, "no main text")
    if canonical:
        from urllib.parse import urljoin

        absolute = urljoin(url, canonical)
        canonical = canonicalize_url(absolute) if absolute.startswith(("http://", "https://")) else None
    title = _PERMALINK.sub("", result.title).strip() if result.title else None
    return Document(
        url=url,
        doc_id=doc_id(url),
        markdown=markdown,
        title=title or None,
        lang=(lang or result.language or None),
        date=result.date or None,
        canonical=canonical,
        content_hash=content_hash(markdown),
    )
