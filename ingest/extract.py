"""HTML, PDF, DOCX → Document: main-text extraction to markdown, plus metadata and a content hash.

HTML goes through trafilatura; PDF, DOCX and pages of datasets through the readers of
:mod:`ingest.formats`, chosen by the content type (and the bytes, when the type is opaque).

:func:`extract` never raises for a bad page: whatever the page, it returns a :class:`Document` or a
:class:`Skip` whose ``kind`` says why there is none. It has no time or memory bound of its own; the
pipeline runs it in worker processes that have both (:mod:`ingest.extract_pool`).
"""

from __future__ import annotations

import copy
import re
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, cast

from ingest.formats import BodyKind, DocumentLimits, kind_of
from ingest.formats.text import Encrypted, NoText, ReadText, Refused, TooManyPages
from ingest.ids import content_hash, doc_id
from ingest.model import SkipKind
from ingest.urls import canonicalize_url

if TYPE_CHECKING:
    from trafilatura.settings import Document as TrafilaturaDocument

# Permalink markers that documentation generators (Sphinx: ¶) append to every heading.
_PERMALINK = re.compile(r"[ \t]*[¶§]+[ \t]*$", re.MULTILINE)
_HEADING_LINE = re.compile(r"^(#{1,6} .*?)[ \t]*[¶§]+[ \t]*$", re.MULTILINE)

# A page has main text only if it holds at least this many words in lines of prose: lines of
# MIN_LINE_WORDS words or more with some punctuation, headings aside. Tag clouds, link hubs and
# indexes of short entries yield words, but no prose.
MIN_PROSE_WORDS = 20
MIN_LINE_WORDS = 6
_PUNCTUATION = re.compile(r"[.,;:!?。、，]")

# libxml2 stops reading a document at its nesting limit and drops everything after that point: 256
# levels by default, 2048 with XML_PARSE_HUGE (lxml's huge_tree), which real pages stay well within.
# huge_tree also lifts libxml2's caps on text node and dictionary size; the crawl's page size cap and
# the worker's memory limit bound those instead.
MAX_DEPTH = 2048
# An exception message is shown in run reports: one line, this long at most.
_MAX_ERROR_CHARS = 300


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
    # Offsets in ``markdown`` where each page of a paged document (PDF) begins, page 1 first; empty
    # for HTML. A chunk starting at offset o is on page bisect_right(page_starts, o).
    page_starts: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The page (1-based) on which ``offset`` lies; None for a document without pages."""
        from bisect import bisect_right

        return max(1, bisect_right(self.page_starts, offset)) if self.page_starts else None


@dataclass(frozen=True)
class Skip:
    """A page that yields no document: ``kind`` says why (for decisions), ``reason`` gives the details."""

    url: str
    reason: str
    kind: SkipKind


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


def _parse(html: bytes | str) -> tuple[Any, str | None]:
    """Parse a page as trafilatura's ``load_html`` does, with the depth limit raised to MAX_DEPTH.

    Returns the tree (None when the input is not HTML) and, when libxml2 stopped reading the page at
    one of its limits, its message. ``load_html`` keeps one parser for all calls and threads and
    never reads its error log, so a page cut at the limit looks complete there; a parser per call
    gives this page's errors alone.
    """
    from lxml.etree import ErrorTypes, LxmlError
    from lxml.html import HTMLParser, fromstring
    from trafilatura.utils import decode_file, is_dubious_html, repair_faulty_html

    text = decode_file(html)
    beginning = text[:50].lower()
    dubious = is_dubious_html(beginning)
    text = repair_faulty_html(text, beginning)
    parser = HTMLParser(
        collect_ids=False,
        default_doctype=False,
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
        huge_tree=True,
    )
    tree = None
    # As load_html: the decoded text first, its UTF-8 bytes when lxml refuses a str that declares an
    # encoding (ValueError) or finds nothing in it.
    for data in (text, text.encode("utf8", "surrogatepass")):
        try:
            tree = fromstring(data, parser=parser)
        except (ValueError, LxmlError):  # also "Document is empty"
            tree = None
        if tree is not None and len(tree) >= 1:
            break
    if any(e.type == ErrorTypes.ERR_NO_MEMORY for e in parser.error_log):
        raise MemoryError("libxml2 could not allocate memory")  # lxml reports it as a syntax error
    if tree is None or (dubious and len(tree) < 2):  # load_html's test for "not HTML at all"
        return None, None
    limits = [e.message for e in parser.error_log if e.type == ErrorTypes.ERR_RESOURCE_LIMIT]
    # "Excessive depth in document: 2048, use XML_PARSE_HUGE option": the advice is libxml2's, not ours.
    return tree, (limits[0].split(", use XML_PARSE_HUGE")[0] if limits else None)


def _absolute_canonical(url: str, href: str) -> str | None:
    """The declared canonical URL made absolute and canonical; None when it is no web URL."""
    from urllib.parse import urljoin

    try:
        absolute = urljoin(url, href)
        if not absolute.startswith(("http://", "https://")):
            return None
        return canonicalize_url(absolute)
    except ValueError:  # e.g. an unbalanced "[" in the host: a broken hint, not a broken page
        return None


def _error_text(exc: BaseException) -> str:
    """``Name: message at file:line in function`` on one line: the place tells whose bug it is."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        where = frames[-1]
        parts = PurePath(where.filename).parts
        # The path inside site-packages (lxml/html/__init__.py) names the library.
        inside = parts[parts.index("site-packages") + 1 :] if "site-packages" in parts else parts[-2:]
        text += f" at {'/'.join(inside)}:{where.lineno} in {where.name}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def extract(
    html: bytes | str, url: str, content_type: str | None = None, limits: DocumentLimits | None = None
) -> Document | Skip:
    """Extract the main text of a page as markdown with title, language, date and canonical URL.

    ``url`` is the URL the page was served from; it is canonicalised and becomes the identity.
    ``content_type`` (the response's header) chooses the reader: HTML when it is None or HTML, PDF,
    DOCX or a dataset page by :func:`ingest.formats.kind_of` (read under ``limits``).
    Returns a :class:`Skip` when the page yields no document, never raises for a bad page:

    - ``UNPARSEABLE``: not HTML that lxml can read;
    - ``TRUNCATED``: libxml2 stopped reading at a limit (nesting deeper than MAX_DEPTH), so the text
      after that point is missing. Like Nutch (``parser.skip.truncated``) webvec does not index a page
      it could read only in part; the caller keeps the previous version of the page;
    - ``NO_MAIN_TEXT``: the page has no prose;
    - ``EXTRACT_FAILED``: trafilatura, htmldate or lxml raised (they assert on some odd trees, recurse
      past Python's limit on deep ones), or a malformed document made its reader raise; the reason
      names the error;
    - documents: ``ENCRYPTED`` (a password is needed), ``TOO_LARGE`` (over ``max_pages``),
      ``NO_MAIN_TEXT`` (no text layer).

    A ``MemoryError`` is raised, not turned into a Skip: in-process it means the process itself is out
    of memory; in a worker process of :mod:`ingest.extract_pool` it means the page needed more than
    the worker's limit, and the pool records that.
    """
    url = canonicalize_url(url)
    try:
        if content_type is not None:
            body = html.encode("utf-8") if isinstance(html, str) else html
            kind = kind_of(content_type, body)
            if kind is not None and kind != BodyKind.HTML:
                return _extract_document(kind, body, url, limits or DocumentLimits())
        return _extract(html, url)
    except MemoryError:
        raise
    except Exception as exc:  # whatever the libraries raise on one page must not stop a run
        return Skip(url, f"extraction failed: {_error_text(exc)}", SkipKind.EXTRACT_FAILED)


_REFUSALS: dict[type[Refused], SkipKind] = {
    Encrypted: SkipKind.ENCRYPTED,
    TooManyPages: SkipKind.TOO_LARGE,
    NoText: SkipKind.NO_MAIN_TEXT,
}


def _extract_document(kind: BodyKind, body: bytes, url: str, limits: DocumentLimits) -> Document | Skip:
    """A PDF, DOCX or dataset page through its reader (imported here: workers load them on first use)."""
    read: ReadText
    try:
        if kind == BodyKind.PDF:
            from ingest.formats.pdf import read_pdf

            read = read_pdf(body, limits)
        elif kind == BodyKind.DOCX:
            from ingest.formats.docx import read_docx

            read = read_docx(body)
        else:
            from ingest.formats.dataset import read_dataset_page

            read = read_dataset_page(body)
    except Refused as refused:
        return Skip(url, str(refused), _REFUSALS.get(type(refused), SkipKind.EXTRACT_FAILED))
    except RecursionError:  # deep object nesting in a crafted file
        return Skip(url, f"extraction failed: {kind} nested too deeply", SkipKind.EXTRACT_FAILED)
    return Document(
        url=url,
        doc_id=doc_id(url),
        markdown=read.markdown,
        title=read.title,
        lang=read.lang,
        date=read.date,
        content_hash=content_hash(read.markdown),
        page_starts=read.page_starts,
    )


def _extract(html: bytes | str, url: str) -> Document | Skip:
    from trafilatura import bare_extraction
    from trafilatura.core import determine_returnstring

    tree, limit = _parse(html)
    if tree is None:
        return Skip(url, "unparseable HTML", SkipKind.UNPARSEABLE)
    if limit is not None:
        return Skip(url, f"page could not be read fully: {limit}", SkipKind.TRUNCATED)
    # Read <head> facts first: trafilatura prunes the tree in place.
    lang = _head_value(tree, "/html/@lang")
    canonical = _head_value(tree, "//head/link[@rel='canonical']/@href")
    with_meta, body_only = _options()
    # A dict only with as_dict=True.
    result = cast("TrafilaturaDocument | None", bare_extraction(tree, url=url, options=with_meta))
    if result is None:
        return Skip(url, "no main text", SkipKind.NO_MAIN_TEXT)
    markdown = _HEADING_LINE.sub(r"\1", (determine_returnstring(result, body_only) or "")).strip()
    if not has_prose(markdown):
        return Skip(url, "no main text", SkipKind.NO_MAIN_TEXT)
    if canonical:
        canonical = _absolute_canonical(url, canonical)
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
